"""The error band of a prediction: a P10-P90 interval from the residuals of its regime.

A *residual* is ``log(published / predicted)`` of one published run re-simulated by
``trainsim validate`` (for step time; a throughput metric is converted to step time first:
its residual is ``log(predicted / published)``, as rate = work / step time), or of one
published peak memory. :mod:`simulator.validation.bands` collects them, leave-one-source-out
by default, and writes their P10 and P90 per regime to ``error_bands.yaml`` beside this
module; this module reads that file and turns a prediction into its band:

* step time ``T``: ``[T exp(p10), T exp(p90)]`` (seconds);
* throughput ``W / T``: ``[W / (T exp(p90)), W / (T exp(p10))]`` (tokens/s, or the rate's unit);
* peak memory per GPU ``M``: ``[M exp(p10m), M exp(p90m)]`` (bytes, or the metric's unit).

The *regime* of a prediction (:class:`Regime`) is framework x GPU generation x parallelism
family. The family (:func:`parallelism_family`) names the model-parallel dimensions the plan
uses, since they decide which communication is on the critical path: ``cp`` (context
parallel, whatever else), ``tp+pp``, ``pp``, ``tp``; a plan with none of them is ``fsdp`` with
ZeRO stage 3 (parameters gathered per layer) and ``dp`` otherwise (ZeRO 0-2 and one GPU).

A regime with fewer than ``min_rows`` runs or ``min_sources`` sources (the file's;
:data:`MIN_ROWS`, :data:`MIN_SOURCES` by default) falls back to the coarser levels of
:data:`LEVELS`: generation x family, generation, all rows; the band says which level it used and
over how many runs. The quantiles are of what a run of a *new* source could show (source offset
plus within-source deviation, :func:`simulator.validation.bands.predictive_sample`). A prediction
outside what the calibration covers (a framework, generation or family with no step-time run, or
more GPUs than the largest run) gets ``calibrated: false`` and a ``warning`` saying why. With no memory residuals in the file
the memory band is the stated prior :data:`MEMORY_PRIOR`.

A band always holds its prediction: where the residuals of a regime are all of one sign (the
model is biased there: every run slower than predicted, say), the quantile on the other side is
taken as 0, so the band runs from the prediction to the P90 (or from the P10 to it). The band
then still says which way the model errs, and a number is never outside its own interval.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from simulator.core.errors import InputError
from simulator.core.yamlfile import read_yaml_file
from simulator.hardware.catalog import GPUSpec
from simulator.workload.plan import ParallelPlan

if TYPE_CHECKING:
    import pandas as pd  # with_bands takes and returns a DataFrame; pandas is not needed to build a band

BANDS_FILE = Path(__file__).with_name("error_bands.yaml")
QUANTILES = (0.1, 0.9)
MIN_ROWS = 8
"""Runs a level needs before its quantiles are used: with fewer, an empirical P10/P90 is mostly
the two extreme runs, so the coarser level (more runs) is the better estimate."""
MIN_SOURCES = 4
"""Sources a level needs: the spread between sources is most of the error for a new one
(:mod:`simulator.validation.bands`), and a few sources do not measure it. Judging each source by a
band built without it (in-sample residuals of the calibration files, December 2026), 2, 3 and 4
sources gave 69, 75 and 89 % coverage, 5 no more than 4."""
LEVELS = ("regime", "generation_family", "generation", "all")
FAMILIES = ("dp", "fsdp", "tp", "pp", "tp+pp", "cp")
KINDS = ("step_time", "memory")

STEP_METRICS = ("step_time_s",)
RATE_METRICS = ("tflops_per_gpu", "mfu", "hfu", "tokens_per_s_per_gpu")
MEMORY_METRICS = ("peak_memory_gib",)

MEMORY_PRIOR = {
    "p10": math.log(0.95), "p90": math.log(1.25),
    "source": "stated prior, no memory residuals yet: the model counts allocated tensors (Korthikanti terms, "
              "ZeRO sharding) to within about 1 % on runs whose plan is known (issue 13: 0.3 GB on a 405B run), "
              "but not allocator slack or the CUDA/NCCL context, which make a measured reserved or device peak "
              "larger; P10 = 0.95x and P90 = 1.25x the prediction",
}
STEP_PRIOR = {
    "p10": math.log(0.8), "p90": math.log(1.25),
    "source": "stated prior, used only when the band file has no step-time residuals: +-25 %, the size of the "
              "leave-one-source-out errors before issue 13",
}


def parallelism_family(plan: ParallelPlan) -> str:
    """The plan's parallelism family (module docstring): one of :data:`FAMILIES`."""
    if plan.cp > 1:
        return "cp"
    if plan.tp > 1 and plan.pp > 1:
        return "tp+pp"
    if plan.pp > 1:
        return "pp"
    if plan.tp > 1:
        return "tp"
    return "fsdp" if plan.zero_stage == 3 else "dp"


@dataclass(frozen=True)
class Regime:
    """Framework x GPU generation x parallelism family of a prediction, and its fleet size."""

    framework: str
    generation: str
    family: str
    n_gpus: int

    def key(self, level: str) -> str:
        """The key of this regime at ``level`` in the band file (parts joined by ``/``)."""
        parts = {"regime": (self.framework, self.generation, self.family),
                 "generation_family": (self.generation, self.family), "generation": (self.generation,),
                 "all": ("all",)}[level]
        return "/".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"framework": self.framework, "gpu_generation": self.generation, "parallelism": self.family,
                "n_gpus": self.n_gpus}


def regime_of(plan: ParallelPlan, device: GPUSpec) -> Regime:
    """The regime of running ``plan`` on ``device`` GPUs."""
    return Regime(plan.framework, device.generation, parallelism_family(plan), plan.n_gpus)


@dataclass(frozen=True)
class Quantiles:
    """The P10 and P90 of log residuals (dimensionless), over ``rows`` runs of ``sources``
    sources, at a level and key."""

    p10: float
    p90: float
    rows: int
    level: str
    key: str
    sources: int = 0


class BandTable:
    """The band file's quantiles per kind, level and key, and what the calibration covers."""

    def __init__(self, document: dict[str, Any], source: str = "error_bands.yaml"):
        self.document = document
        self.source = source
        self.min_rows = int(document.get("min_rows", MIN_ROWS))
        self.min_sources = int(document.get("min_sources", MIN_SOURCES))
        self.covered = document.get("covered") or {}
        self.residuals = {kind: str((document.get(kind) or {}).get("residuals", "none")) for kind in KINDS}

    def quantiles(self, kind: str, regime: Regime) -> Quantiles:
        """The finest level of ``regime`` with at least ``min_rows`` runs from ``min_sources`` sources;
        the ``all`` level with any runs; else the stated prior (level ``prior``, 0 rows). P10 is at
        most 0 and P90 at least 0, so that the band holds the prediction (module docstring)."""
        levels = (self.document.get(kind) or {}).get("levels") or {}
        for level in LEVELS:
            entry = (levels.get(level) or {}).get(regime.key(level))
            enough = entry and entry["rows"] >= self.min_rows and entry.get("sources", 1) >= self.min_sources
            if entry and (enough or (level == "all" and entry["rows"] > 0)):
                return Quantiles(min(0.0, float(entry["p10"])), max(0.0, float(entry["p90"])), int(entry["rows"]),
                                 level, regime.key(level), int(entry.get("sources", 1)))
        prior = MEMORY_PRIOR if kind == "memory" else STEP_PRIOR
        return Quantiles(prior["p10"], prior["p90"], 0, "prior", "prior")

    def warnings(self, regime: Regime) -> list[str]:
        """Why ``regime`` is outside what the calibration files cover (empty: inside)."""
        c = self.covered
        out = []
        for name, value, known in (("framework", regime.framework, c.get("frameworks")),
                                   ("GPU generation", regime.generation, c.get("generations")),
                                   ("parallelism family", regime.family, c.get("families"))):
            if known is not None and value not in known:
                out.append(f"{name} {value} has no step-time run in the calibration files "
                           f"({', '.join(known) or 'none'})")
        largest = c.get("max_gpus")
        if largest and regime.n_gpus > largest:
            out.append(f"{regime.n_gpus:,} GPUs is more than the largest calibration run ({largest:,} GPUs)")
        return out


@functools.lru_cache(maxsize=8)
def _load(path: str) -> BandTable:
    document = read_yaml_file(path, expected="an error band file (simulator/results/error_bands.yaml)")
    if not isinstance(document, dict) or "step_time" not in document:
        raise InputError("not an error band file: it has no step_time section", file=path)
    return BandTable(document, source=path)


def load_bands(path: str | Path | None = None) -> BandTable:
    """The band file at ``path`` (default: the packaged :data:`BANDS_FILE`); read once per process.
    A missing packaged file gives an empty table (every band from the stated priors)."""
    if path is None and not BANDS_FILE.is_file():
        return BandTable({}, source="none")
    return _load(str(Path(path or BANDS_FILE).resolve()))


@dataclass(frozen=True)
class Band:
    """The P10-P90 interval of a prediction (SI units: seconds, tokens/s, bytes per GPU) and where
    it comes from. ``level``/``rows``/``sources``: of the step-time quantiles; ``memory_level``/``memory_rows``:
    of the memory ones."""

    step_time_s: tuple[float, float]
    tokens_per_s: tuple[float, float]
    memory_bytes: tuple[float, float]
    level: str
    rows: int
    sources: int
    memory_level: str
    memory_rows: int
    residuals: str
    regime: Regime
    calibrated: bool
    warning: str

    def to_dict(self) -> dict[str, Any]:
        """The ``band`` object of ``trainsim run --json`` (keys documented in docs/bands.md)."""
        return {"step_time_s": list(self.step_time_s), "tokens_per_s": list(self.tokens_per_s),
                "memory_bytes": list(self.memory_bytes), "quantiles": list(QUANTILES), "level": self.level,
                "rows": self.rows, "sources": self.sources, "memory_level": self.memory_level,
                "memory_rows": self.memory_rows,
                "residuals": self.residuals, "regime": self.regime.to_dict(), "calibrated": self.calibrated,
                "warning": self.warning}


def band_for(regime: Regime, step_time_s: float, tokens_per_step: float, memory_bytes: float,
             table: BandTable | None = None) -> Band:
    """The band of a prediction of ``step_time_s`` (s), ``tokens_per_step`` and ``memory_bytes``
    (peak bytes per GPU) in ``regime``."""
    table = table or load_bands()
    q = table.quantiles("step_time", regime)
    m = table.quantiles("memory", regime)
    lo, hi = step_time_s * math.exp(q.p10), step_time_s * math.exp(q.p90)
    warnings = table.warnings(regime)
    residuals = table.residuals["step_time"]
    if residuals == "in-sample":
        residuals += " (narrower than out-of-sample)"
    return Band(step_time_s=(lo, hi), tokens_per_s=(tokens_per_step / hi, tokens_per_step / lo),
                memory_bytes=(memory_bytes * math.exp(m.p10), memory_bytes * math.exp(m.p90)),
                level=q.level, rows=q.rows, sources=q.sources, memory_level=m.level, memory_rows=m.rows,
                residuals=residuals,
                regime=regime, calibrated=not warnings,
                warning="outside the calibrated regimes: " + "; ".join(warnings) if warnings else "")


def metric_kind(metric: str) -> tuple[str | None, int]:
    """(residual kind, sign) of a validation metric: the step-time residual of a row is
    ``sign * log(published / predicted)``; (None, 0) for a metric without a band (``fits``)."""
    if metric in STEP_METRICS:
        return "step_time", 1
    if metric in RATE_METRICS:
        return "step_time", -1
    if metric in MEMORY_METRICS:
        return "memory", 1
    return None, 0


def metric_band(metric: str, predicted: float, regime: Regime, table: BandTable) -> tuple[float, float, str]:
    """(low, high, level) of a predicted validation metric, in the metric's units; NaNs and ""
    for a metric without a band or a prediction that is not a positive number."""
    kind, sign = metric_kind(metric)
    if kind is None or not (isinstance(predicted, (int, float)) and predicted > 0 and math.isfinite(predicted)):
        return math.nan, math.nan, ""
    q = table.quantiles(kind, regime)
    if sign > 0:
        return predicted * math.exp(q.p10), predicted * math.exp(q.p90), q.level
    return predicted * math.exp(-q.p90), predicted * math.exp(-q.p10), q.level


REGIME_COLUMNS = ("regime_framework", "regime_generation", "regime_parallelism", "regime_gpus")
BAND_COLUMNS = ("band_lo", "band_hi", "band_level", "band_warning")


def with_bands(table: pd.DataFrame, setups: Sequence[Any], bands: BandTable | None = None) -> pd.DataFrame:
    """``trainsim validate``'s table with each row's regime (:data:`REGIME_COLUMNS`) and band
    (:data:`BAND_COLUMNS`: ``band_lo``/``band_hi`` in the metric's units) appended; ``setups``:
    each row's resolved setup (anything with ``plan`` and ``device``), None where it failed."""
    bands = bands or load_bands()
    extra: dict[str, list] = {c: [] for c in (*REGIME_COLUMNS, *BAND_COLUMNS)}
    for (_, row), setup in zip(table.iterrows(), setups):
        regime = regime_of(setup.plan, setup.device) if setup is not None else None
        values: tuple = (np.nan,) * 4 + (np.nan, np.nan, "", "")
        if regime is not None:
            lo, hi, level = (metric_band(str(row["metric"]), float(row["predicted"]), regime, bands)
                             if row["status"] == "ok" else (np.nan, np.nan, ""))
            values = (regime.framework, regime.generation, regime.family, regime.n_gpus,
                      lo, hi, level, "; ".join(bands.warnings(regime)))
        for column, value in zip(extra, values):
            extra[column].append(value)
    return table.assign(**extra)
