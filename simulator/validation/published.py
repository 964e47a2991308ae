"""Re-simulate published training measurements and report the error (``trainsim validate``).

:func:`validate` simulates every row of a validation table (:mod:`simulator.validation.cases`
turns a row into a model, a fleet and a plan, with the rules for empty cells) once per
distinct run, and turns the step into the row's metric:
``step_time_s``; ``tflops_per_gpu`` by the Megatron-LM formula (Narayanan et al. 2021, eq. 3)
with or without its recomputation term as the source did (``source_conventions.yaml``) — the
``formula`` column says which; ``mfu`` and ``hfu`` as
:class:`~simulator.results.step.StepResult` defines them; ``tokens_per_s_per_gpu``.
A row that cannot be simulated keeps its line with the reason in ``status``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from pydantic import ValidationError

from simulator.core.atomic import write_text_atomically
from simulator.core.errors import TrainsimError, from_validation_error
from simulator.hardware.catalog import Catalog, load_catalog
from simulator.inputs.efficiency_file import default_efficiency
from simulator.inputs.resolve import Setup
from simulator.results.assemble import simulate_setup
from simulator.system.efficiency import Efficiency
from simulator.validation.cases import (
    METRICS,
    blank,
    case_setup,
    number,
    recompute_term,
)
from simulator.workload.counting import model_flops_per_step
from simulator.workload.megatron import options_in_text

RESULT_COLUMNS = ("case_id", "metric", "published", "predicted", "error_pct", "status")


def predicted_metric(metric: str, setup: Setup, result, *, with_recompute_term: bool = False) -> tuple[float, str]:
    """(predicted value of ``metric``, the formula used)."""
    if metric == "step_time_s":
        return result.step_time_s, "simulated step time"
    if metric == "tflops_per_gpu":
        term = with_recompute_term
        flops = model_flops_per_step(setup.model, setup.plan.global_batch, recompute_term=term)
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
            if published is None or not published > 0:
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
        if error is None and not result.fits_in_memory:
            error = f"does not fit in memory: {result.memory.total / 1e9:.1f} GB > {result.memory.capacity / 1e9:.1f} GB"
        if error is None:
            try:
                value, formula = predicted_metric(str(row["metric"]), setup, result,
                                                  with_recompute_term=recompute_term(row))
            except ValueError as err:
                error = str(err)
        if error is not None:
            rec["status"] = error
        else:
            rec.update(predicted=value, error_pct=(value - published) / published * 100, formula=formula)
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
    return df[list(RESULT_COLUMNS) + [c for c in df.columns if c not in RESULT_COLUMNS]]


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
