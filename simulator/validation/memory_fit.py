"""Memory predictions of published rows and the fit of the allocator parameters on them.

:func:`memory_predictions` turns every ``peak_memory_gib`` and ``fits`` row of a memory CSV
(the format of ``../shared/validation/memory.csv``) into the plan's memory breakdown, so that
the allocator's parameters (:mod:`simulator.workload.allocator`) can be varied without
simulating steps again. :func:`fit_allocator` chooses the ``fragmentation`` within its range in
``allocator.yaml`` that minimises the MAPE of the rows whose statistic includes the slack
(reserved and device; ``unknown`` rows count as reserved, as ``trainsim validate`` compares
them); allocated rows do not depend on it. :func:`record_fit` writes the value and where it
came from under ``fitted:`` in ``allocator.yaml``. The CUDA context and NCCL buffers stay at
their priors: no row of the calibration file measures device memory.

Rerun: ``python benchmarks/memory_accuracy.py --fit`` (or call these functions).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from simulator.core.atomic import write_text_atomically
from simulator.core.errors import TrainsimError
from simulator.core.provenance import input_files
from simulator.core.units import GiB
from simulator.hardware.catalog import Catalog, load_catalog
from simulator.inputs.efficiency_file import default_efficiency
from simulator.validation.cases import case_setup
from simulator.validation.published import (
    UNKNOWN_STATISTIC,
    memory_stage,
    memory_statistic,
)
from simulator.workload.allocator import (
    NONE,
    AllocatorModel,
    allocator_file,
    allocator_model,
    communicators,
)
from simulator.workload.memory import MemoryBreakdown, memory_per_gpu


@dataclass(frozen=True)
class MemoryRow:
    """One memory row: what it measured and the plan's memory without allocator terms (bytes)."""

    case_id: str
    source_id: str
    metric: str
    statistic: str
    published: float
    memory: MemoryBreakdown
    """The stage the row names (its peak stage for ``fits``), with no slack or outside terms."""
    communicators: int


def memory_predictions(cases: pd.DataFrame, catalog: Catalog | None = None) -> tuple[list[MemoryRow], list[str]]:
    """The memory rows of ``cases`` that could be resolved, and one line per row that could not."""
    catalog, efficiency = catalog or load_catalog(), default_efficiency()
    rows, failed = [], []
    for _, row in cases.iterrows():
        metric = str(row["metric"])
        if metric not in ("peak_memory_gib", "fits"):
            continue
        try:
            setup, _ = case_setup(row, catalog, efficiency)
            stage = None if metric == "fits" else memory_stage(setup, row.get("memory_rank"))
            mb = memory_per_gpu(setup.model, setup.plan, capacity_bytes=setup.device.hbm_bytes, stage=stage,
                                allocator=NONE)
            statistic = memory_statistic(row.get("memory_statistic")) if metric == "peak_memory_gib" else "device"
        except (TrainsimError, ValueError, ArithmeticError) as err:
            failed.append(f"{row['case_id']}: {err}")
            continue
        plan = setup.plan
        n_comms = communicators(plan.tp, plan.cp, plan.pp, plan.dp_cp)
        rows.append(MemoryRow(str(row["case_id"]), str(row["source_id"]), metric, statistic, float(row["value"]),
                              mb, n_comms))
    return rows, failed


def with_allocator(row: MemoryRow, allocator: AllocatorModel) -> MemoryBreakdown:
    """The row's breakdown with ``allocator``'s slack and outside terms."""
    mb = row.memory
    return replace(mb, allocator_slack=allocator.slack(mb.activations + mb.buffers),
                   outside_allocator=allocator.outside(row.communicators))


def predicted(row: MemoryRow, allocator: AllocatorModel) -> float:
    """The row's predicted value: GiB of its statistic, or 1/0 for ``fits``."""
    mb = with_allocator(row, allocator)
    return float(mb.fits) if row.metric == "fits" else mb.statistic(row.statistic) / GiB


def mape_pct(rows: list[MemoryRow], allocator: AllocatorModel) -> float:
    """Mean absolute % error of the ``peak_memory_gib`` rows among ``rows``."""
    errors = [abs(predicted(r, allocator) - r.published) / r.published * 100 for r in rows
              if r.metric == "peak_memory_gib"]
    return float(np.mean(errors)) if errors else float("nan")


def fit_allocator(rows: list[MemoryRow], *, steps: int = 351) -> dict:
    """The ``fragmentation`` in its ``allocator.yaml`` range (a grid of ``steps`` values) that
    minimises the MAPE of the reserved and device rows, and the record of the fit."""
    data, prior = allocator_file(), allocator_model()
    informative = [r for r in rows if r.metric == "peak_memory_gib" and r.statistic in ("reserved", "device")]
    if not informative:
        raise ValueError("no reserved or device rows to fit the allocator slack on")
    lo, hi = data["fragmentation"]["range"]
    grid = np.linspace(lo, hi, steps)
    errors = [mape_pct(informative, replace(prior, fragmentation=float(f))) for f in grid]
    best = float(grid[int(np.argmin(errors))])
    return {"fragmentation": round(best, 4), "rows": len(informative),
            "sources": sorted({r.source_id for r in informative}),
            "mape_pct_at_prior": round(mape_pct(informative, prior), 2), "mape_pct_fitted": round(min(errors), 2),
            "unknown_statistic_read_as": UNKNOWN_STATISTIC}


def record_fit(fit: dict, csv_path: str | Path, yaml_path: str | Path) -> None:
    """Write ``fit`` under ``fitted:`` in the allocator file at ``yaml_path``, with the fitted
    file's name and sha256 and the date (the rest of the file is kept as it is)."""
    yaml_path = Path(yaml_path)
    source = input_files([csv_path])[0]
    record = {**fit, "provenance": f"{source['file']} sha256 {source['sha256'][:16]}, fitted "
              f"{datetime.date.today().isoformat()} by simulator/validation/memory_fit.py on {fit['rows']} "
              "reserved/device rows"}
    head = yaml_path.read_text().split("\nfitted:")[0].rstrip("\n")
    write_text_atomically(head + "\n" + yaml.safe_dump({"fitted": record}, sort_keys=False), yaml_path)
