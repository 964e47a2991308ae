"""Re-simulate published training measurements and report the error (``trainsim validate``).

:func:`validate` simulates every row of a validation table (:mod:`simulator.validation.cases`
turns a row into a model, a fleet and a plan, with the rules for empty cells) once per
distinct run, and turns the step into the row's metric:
``step_time_s``; ``tflops_per_gpu`` by the FLOP formula of the plan's framework (Megatron-LM's,
Narayanan et al. 2021, eq. 3, with or without its recomputation term as the source did,
``source_conventions.yaml``; or torchtitan's and llm-foundry's ``6N + 12 L h s``) — the
``formula`` column says which; ``mfu`` and ``hfu`` as
:class:`~simulator.results.step.StepResult` defines them; ``tokens_per_s_per_gpu``; ``peak_memory_gib`` and ``fits`` from the plan's memory
(:func:`predicted_memory_metric`: the statistic and rank the row names, a plan that does not
fit is a prediction ``fits = 0``, not a failure).
A row that cannot be simulated keeps its line with the reason in ``status``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from simulator.core.atomic import write_text_atomically
from simulator.core.errors import TrainsimError, from_validation_error
from simulator.core.units import GiB
from simulator.hardware.catalog import Catalog, load_catalog
from simulator.inputs.efficiency_file import default_efficiency
from simulator.inputs.resolve import Setup
from simulator.results.assemble import simulate_setup
from simulator.results.band import with_bands
from simulator.system.efficiency import Efficiency
from simulator.validation.cases import (
    METRICS,
    blank,
    case_setup,
    number,
    recompute_term,
)
from simulator.workload.counting import framework_flops_per_step
from simulator.workload.framework import get_framework
from simulator.workload.megatron import options_in_text
from simulator.workload.memory import MemoryBreakdown, memory_per_gpu

RESULT_COLUMNS = ("case_id", "metric", "published", "predicted", "error_pct", "status")


MEMORY_METRICS = ("peak_memory_gib", "fits")
"""Metrics read from the plan's memory, not from the simulated step: a plan that does not fit
still gets a prediction for them."""

UNKNOWN_STATISTIC = "reserved"
"""The statistic compared with a ``peak_memory_gib`` row whose ``memory_statistic`` is
``unknown`` or empty: reserved memory is what PyTorch-based frameworks log as their peak (the
Megatron fork of the Zero Bubble source prints both max allocated and max reserved), and it
lies between the allocated and device figures a source could also mean."""


def memory_statistic(row_value: Any) -> str:
    """The statistic a ``memory_statistic`` cell names: allocated, reserved or device (unknown or
    empty: :data:`UNKNOWN_STATISTIC`); ``ValueError`` naming the column otherwise."""
    name = "" if blank(row_value) else str(row_value).strip().lower()
    if name in ("", "unknown"):
        return UNKNOWN_STATISTIC
    if name not in ("allocated", "reserved", "device"):
        raise ValueError(f"column memory_statistic: {row_value!r} is not allocated, reserved, device or unknown")
    return name


def memory_stage(setup: Setup, row_value: Any) -> int | None:
    """The pipeline stage a ``memory_rank`` cell names: a global rank's stage by the plan's
    placement (rank 0 is on the first stage); ``last`` (the last global rank, on the last stage in
    Megatron's rank order, pipeline outermost); empty: the stage that needs the most (``None``)."""
    if blank(row_value):
        return None
    text = str(row_value).strip().lower()
    try:
        rank = setup.plan.n_gpus - 1 if text == "last" else int(float(text))
    except ValueError:
        raise ValueError(f"column memory_rank: {row_value!r} is not a rank number or 'last'") from None
    if not 0 <= rank < setup.plan.n_gpus:
        raise ValueError(f"column memory_rank: {row_value!r} is not a rank of the {setup.plan.n_gpus} GPUs")
    return int(np.argwhere(setup.plan.gpu_grid == rank)[0][2])  # the pipeline coordinate of that GPU


def memory_of(setup: Setup, stage: int | None) -> MemoryBreakdown:
    """The memory breakdown of ``stage`` (``None``: the peak stage)."""
    if stage is None:
        return setup.memory
    return memory_per_gpu(setup.model, setup.plan, capacity_bytes=setup.device.hbm_bytes, stage=stage)


def predicted_memory_metric(metric: str, setup: Setup, *, statistic: str = UNKNOWN_STATISTIC,
                            stage: int | None = None) -> tuple[float, str]:
    """(predicted value, formula) of a memory metric:

    * ``peak_memory_gib``: the named statistic of the named stage's memory (allocated, reserved or
      device; :class:`~simulator.workload.memory.MemoryBreakdown`), in GiB (2^30 bytes);
    * ``fits``: 1 if the plan's peak stage fits (:attr:`~simulator.workload.memory.MemoryBreakdown.required`,
      allocated plus CUDA context and NCCL buffers, within the GPU's capacity), else 0.
      Its error (``validate``) is 0 % when the verdict is right and 100 % when it is wrong."""
    if metric == "fits":
        mb = setup.memory
        return float(mb.fits), (f"fits: allocated + CUDA context + NCCL buffers {mb.required / GiB:.1f} GiB <= "
                                f"capacity {mb.capacity / GiB:.1f} GiB")
    mb = memory_of(setup, stage)
    where = "peak stage" if stage is None else f"stage {mb.stage}"
    return mb.statistic(statistic) / GiB, f"{statistic} memory, {where} (GiB)"


def predicted_metric(metric: str, setup: Setup, result, *, with_recompute_term: bool = False,
                     statistic: str = UNKNOWN_STATISTIC, stage: int | None = None) -> tuple[float, str]:
    """(predicted value of ``metric``, the formula used). ``tflops_per_gpu`` counts FLOPs by the
    formula the plan's framework prints (:attr:`~simulator.workload.framework.Framework.flop_formula`;
    Megatron's eq. 3 with or without its recomputation term as ``with_recompute_term`` says).
    ``statistic`` and ``stage``: those of a memory metric (:func:`predicted_memory_metric`)."""
    if metric in MEMORY_METRICS:
        return predicted_memory_metric(metric, setup, statistic=statistic, stage=stage)
    if metric == "step_time_s":
        return result.step_time_s, "simulated step time"
    if metric == "tflops_per_gpu":
        formula = get_framework(setup.plan.framework).flop_formula
        term = with_recompute_term and formula == "megatron_eq3"
        flops = framework_flops_per_step(setup.model, setup.plan.global_batch, formula, recompute_term=term)
        if formula == "megatron_eq3":
            formula = "Megatron eq. 3 " + ("with" if term else "without") + " recomputation term"
        return flops / result.step_time_s / setup.plan.n_gpus / 1e12, formula
    if metric == "mfu":
        return result.mfu, "MFU: (6 N + 12 L h s) per token / peak"
    if metric == "hfu":
        return result.hfu, "HFU: (model FLOPs + recomputed FLOPs, non-causal attention) / peak"
    if metric == "tokens_per_s_per_gpu":
        return result.tokens_per_s / setup.plan.n_gpus, "tokens per second per GPU"
    raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")


# --------------------------------------------------------------------------- running

NOT_CONFIGURATION = ("case_id", "metric", "value", "notes", "source_locator")


def config_key(row: pd.Series) -> tuple:
    """What identifies a row's run: every column but the case, its metric, value and notes,
    plus the Megatron-LM switches its notes quote (they set plan options).
    Rows with the same key are one run reported several ways (e.g. step time and TFLOP/s)."""
    columns = tuple("" if blank(row[c]) else str(row[c]) for c in row.index if c not in NOT_CONFIGURATION)
    notes = row.get("notes")
    return columns + tuple(options_in_text("" if blank(notes) else str(notes))[1])



def validate(cases: pd.DataFrame, *, catalog: Catalog | None = None, efficiency: Efficiency | None = None,
             progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """One row per case: ``RESULT_COLUMNS`` first, then step time, breakdown, memory and defaults.

    Rows sharing a configuration are simulated once."""
    catalog = catalog or load_catalog()
    efficiency = efficiency or default_efficiency()
    cache: dict[tuple, Any] = {}
    out = []
    for n, (_, row) in enumerate(cases.iterrows()):
        key = config_key(row)
        if key not in cache:
            try:
                setup, used = case_setup(row, catalog, efficiency)
                result = simulate_setup(setup, record_timeline=False)
                cache[key] = (setup, used, result, None)
            except ValidationError as err:
                cache[key] = (None, [], None, str(from_validation_error(err)))
            except (TrainsimError, ValueError, ArithmeticError) as err:
                cache[key] = (None, [], None, str(err))
        setup, used, result, error = cache[key]
        published = np.nan
        try:
            published = number(row, "value")
            if str(row["metric"]) == "fits":
                if published not in (0.0, 1.0):
                    raise ValueError(f"column value: {row['value']!r} is not 1 (ran) or 0 (out of memory), as fits is")
            elif published is None or not published > 0:
                raise ValueError(f"column value: {row['value']!r} is not a published number > 0")
            if str(row["metric"]) not in METRICS:
                raise ValueError(f"column metric: {row['metric']!r} is not one of {', '.join(METRICS)}")
            if str(row["metric"]) in ("mfu", "hfu") and published > 1:
                raise ValueError(f"column value: {row['value']!r} is not a fraction <= 1, as {row['metric']} is "
                                 f"given in this format (a percentage? {published:g} % is {published / 100:g})")
        except ValueError as err:
            error = error or str(err)
            published = np.nan if published is None else published
        rec: dict[str, Any] = {"case_id": row["case_id"], "metric": str(row["metric"]), "published": published,
                               "predicted": np.nan, "error_pct": np.nan, "status": "ok"}
        memory_metric = str(row["metric"]) in MEMORY_METRICS  # a plan that does not fit is a prediction
        if error is None and not memory_metric and not result.fits_in_memory:
            error = (f"does not fit in memory: {result.memory.required / 1e9:.1f} GB needed on the device > "
                     f"{result.memory.capacity / 1e9:.1f} GB")
        if error is None:
            try:
                value, formula = predicted_metric(
                    str(row["metric"]), setup, result, with_recompute_term=recompute_term(row),
                    **(_memory_columns(row, setup) if memory_metric else {}))
            except ValueError as err:
                error = str(err)
        if error is not None:
            rec["status"] = error
        else:
            rec.update(predicted=value, error_pct=metric_error_pct(str(row["metric"]), value, published),
                       formula=formula)
        if result is not None:
            rec.update(
                step_time_s=result.step_time_s,
                **{f"{k}_s": v for k, v in result.breakdown_s.items()},
                memory_GB=result.memory.total / 1e9, capacity_GB=result.memory.capacity / 1e9,
                tp=setup.plan.tp, cp=setup.plan.cp, pp=setup.plan.pp, dp=setup.plan.dp,
                recompute=setup.plan.recompute,
            )
        rec["source_id"] = row["source_id"]
        rec["defaults_used"] = "; ".join(used)
        out.append(rec)
        if progress:
            progress(n + 1, len(cases))
    df = pd.DataFrame(out)
    # each row's regime and P10-P90 band (docs/bands.md)
    return with_bands(df[list(RESULT_COLUMNS) + [c for c in df.columns if c not in RESULT_COLUMNS]],
                      [cache[config_key(row)][0] for _, row in cases.iterrows()])


def _memory_columns(row: pd.Series, setup: Setup) -> dict[str, Any]:
    """The statistic and stage a memory row names (``memory_statistic``, ``memory_rank``; optional columns)."""
    return {"statistic": memory_statistic(row.get("memory_statistic")),
            "stage": memory_stage(setup, row.get("memory_rank"))}


def metric_error_pct(metric: str, predicted: float, published: float) -> float:
    """The error of a prediction, in %: ``100 (predicted - published) / published``; for ``fits``
    (a verdict, 1 or 0) 0 when the verdict is right and 100 when it is wrong, so that a source's
    MAPE over ``fits`` rows is the share of wrong verdicts."""
    if metric == "fits":
        return 0.0 if predicted == published else 100.0
    return (predicted - published) / published * 100


def summary(results: pd.DataFrame) -> pd.DataFrame:
    """Per source and overall: rows, failures, MAPE, median and max absolute error (%)."""
    def stats(df: pd.DataFrame) -> dict[str, float]:
        ok = df[df.status == "ok"]
        err = ok.error_pct.abs()
        return {"rows": len(df), "failed": int((df.status != "ok").sum()),
                "MAPE_pct": err.mean() if len(ok) else np.nan,
                "median_abs_pct": err.median() if len(ok) else np.nan,
                "max_abs_pct": err.max() if len(ok) else np.nan}

    rows = {src: stats(g) for src, g in results.groupby(results.source_id.fillna("(none)"), sort=True)}
    rows["ALL"] = stats(results)
    return pd.DataFrame.from_dict(rows, orient="index")


def write_csv_atomically(df: pd.DataFrame, path: str | Path) -> None:
    """Write ``df`` as CSV to ``path`` atomically (:mod:`simulator.core.atomic`)."""
    write_text_atomically(df.to_csv(index=False), path)
