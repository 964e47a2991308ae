"""What-if studies: simulate variants of a scenario and get one tidy DataFrame.

::

    from simulator import load_scenario
    from simulator.studies.study import compare, grid

    base = load_scenario("gpt3-175b-1024-a100")
    df = compare(base, grid(tp=[4, 8], pp=[8, 16], vpp=[1]))
    df[["tp", "pp", "step_time_s", "mfu", "fits"]]

A variant is a mapping of fields to change (plan fields directly, e.g. ``tp``; any
other scenario field by name, e.g. ``gpus`` or ``model``). A variant that cannot
run (a plan that does not divide, an unknown GPU) gets its reason in the ``error``
column instead of stopping the study.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from simulator.core.errors import TrainsimError
from simulator.inputs.scenario import Scenario
from simulator.results.assemble import simulate
from simulator.results.step import StepResult


def grid(**axes: Iterable[Any]) -> list[dict[str, Any]]:
    """Every combination of the given values: ``grid(tp=[4, 8], pp=[2, 4])`` gives 4 variants."""
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*(list(v) for v in axes.values()))]


PLAN_COLUMNS = ("n_gpus", "tp", "cp", "pp", "dp", "vpp", "micro_batch", "n_microbatches")
"""The plan a result actually ran, as flat columns (see :func:`plan_row`)."""


def plan_row(result: StepResult) -> dict[str, Any]:
    """The plan one result ran: fleet size, parallel sizes and micro-batches."""
    return {"n_gpus": result.n_gpus, **{k: getattr(result.plan, k) for k in PLAN_COLUMNS[1:]}}


def summary_row(result: StepResult) -> dict[str, Any]:
    """The headline numbers of one result, flat (SI units; ``*_s`` columns are the breakdown)."""
    return {
        "step_time_s": result.step_time_s,
        "tokens_per_s": result.tokens_per_s,
        "mfu": result.mfu,
        "hfu": result.hfu,
        "model_tflops_per_gpu": result.model_flops_per_s_per_gpu / 1e12,
        "memory_GB": result.memory.total / 1e9,
        "capacity_GB": result.memory.capacity / 1e9,
        "fits": result.fits_in_memory,
        "energy_per_token_J": result.energy_per_step_J / result.tokens_per_step,
        "avg_power_per_gpu_W": result.avg_power_per_gpu_W,
        **{f"{k}_s": v for k, v in result.breakdown_s.items()},
        **{f"hidden_{k}_s": v for k, v in result.hidden_comm_s.items()},
    }


def compare(base: Scenario, variants: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Simulate each variant of ``base``; one row per variant: its changed fields, the plan
    actually run (tp, pp, dp, micro-batches), :func:`summary_row` and ``error``."""
    rows = []
    for changes in variants:
        row: dict[str, Any] = dict(changes)
        try:
            result = simulate(base.with_(**changes), record_timeline=False)
        except TrainsimError as err:
            row["error"] = str(err)
        else:
            row.update(**plan_row(result), **summary_row(result), error=None)
        rows.append(row)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return pd.DataFrame(rows, columns=columns)


__all__ = ["PLAN_COLUMNS", "compare", "grid", "plan_row", "summary_row"]
