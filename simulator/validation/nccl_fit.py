"""Fit the correction of NCCL's estimate (:class:`~simulator.network.efficiency.NetworkEfficiency`)
on measured nccl-tests results.

NCCL's choice (algorithm x protocol x channels) does not depend on the correction, so every
row is parsed and chosen once (:func:`simulator.validation.collectives.prepare`); the fit then
re-times the choices with :func:`predict` (the formula of
:func:`simulator.network.nccl.correction.corrected_time_s`, vectorised).

Method: :func:`scipy.optimize.least_squares` on ``e = log(predicted / measured busbw)`` with a
soft-L1 loss of scale :data:`LOSS_SCALE` (errors well beyond ~10 % count linearly, so a few odd
systems do not dominate), each row weighted ``1 / sqrt(rows of its source)``
(:data:`SOURCE_WEIGHT_POWER`): a source of N rows weighs sqrt(N). This is a compromise between
row weighting (one source is 60 % of the calibration rows and would set every one-node
parameter) and equal source weighting (1/N), under which a 3-row source counts as much as a
320-row one: with 1/N the three NVLink-bridge rows of NVIDIA/nccl#1161 pulled
node_drop_all_reduce to 0.96 and put H100 2-GPU NVSwitch all-reduce 30 % too slow. Start: the given
efficiency (the packaged priors, ``nccl-model.md`` §9); bounds: the fields' own bounds.
Fitted: :data:`BASE_PARAMETERS` plus ``step_latency_<transport>_s`` for each transport the
rows use across nodes; the rest keep their start values.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from simulator.core.errors import InputError
from simulator.core.provenance import input_files
from simulator.network.efficiency import MAX_LATENCY_S, MAX_RAMP_BYTES, MAX_RAMP_POWER, NOMINAL, NetworkEfficiency
from simulator.network.nccl.correction import FAMILY
from simulator.network.nccl.system import TRANSPORTS
from simulator.validation.collectives import (
    Prepared,
    compare_prepared,
    is_nccl_table,
    mape_pct,
    prepare,
    read_nccl_csv,
)
from simulator.validation.nccl_rows import bus_factor

MiB = 1 << 20

LOSS_SCALE = 0.1
"""Soft-L1 scale of the log error (0.1 ~ 10 %)."""

BASE_PARAMETERS = ("node_efficiency", "node_drop_all_reduce", "node_drop_gather", "node_drop_all_to_all",
                   "inter_efficiency", "inter_ramp_bytes", "inter_ramp_power", "node_latency_s", "inter_latency_s")
"""Parameters always fitted (the per-transport step latencies are added where rows exist)."""

_LOWER_OPEN = 1e-3
"""Stand-in for an open lower bound at 0 (efficiencies, ramp exponent)."""

# name -> (lower, upper, scale of the optimiser's variable: value = x * scale)
_BOUNDS: dict[str, tuple[float, float, float]] = {
    "node_efficiency": (_LOWER_OPEN, 1.0, 1.0),
    "node_drop_all_reduce": (0.0, 1.0, 1.0),
    "node_drop_gather": (0.0, 1.0, 1.0),
    "node_drop_all_to_all": (0.0, 1.0, 1.0),
    "inter_efficiency": (_LOWER_OPEN, 1.0, 1.0),
    "inter_ramp_bytes": (0.0, MAX_RAMP_BYTES, 1e3),
    "inter_ramp_power": (_LOWER_OPEN, MAX_RAMP_POWER, 1.0),
}
_FAMILIES = ("all_reduce", "gather", "all_to_all")


def _bounds(name: str) -> tuple[float, float, float]:
    if name in _BOUNDS:
        return _BOUNDS[name]
    if name.endswith("_s") and "latency" in name:
        return 0.0, MAX_LATENCY_S, 1e-6
    raise KeyError(name)


# --------------------------------------------------------------------------- reading


def nccl_files(paths: Sequence[str | Path]) -> list[bool]:
    """Per file: is it an nccl-tests file (by its header)? InputError if a file cannot be read."""
    flags = []
    for p in paths:
        try:
            header = pd.read_csv(p, nrows=0).columns
        except (OSError, ValueError) as err:
            raise InputError(f"cannot read the CSV header: {err}", file=p) from None
        flags.append(is_nccl_table(header))
    return flags


def read_nccl_files(paths: Sequence[str | Path]) -> pd.DataFrame:
    """The rows of nccl-tests files, with a ``file`` column (the file's name)."""
    frames = []
    for p in paths:
        df = read_nccl_csv(p)
        df["file"] = Path(p).name
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- the model, vectorised


@dataclass
class Points:
    """The prepared rows as arrays (one entry per evaluation point) for fast re-timing."""

    row: np.ndarray           # index of the comparable row each point belongs to
    n_rows: int
    latency_s: np.ndarray     # NCCL's latency
    bandwidth_Bps: np.ndarray  # NCCL's algorithm bandwidth
    n_inter: np.ndarray
    multi: np.ndarray         # bool: across nodes
    n_ranks: np.ndarray
    family: np.ndarray        # index into _FAMILIES
    transport: np.ndarray     # transport name per point (object)
    transport_index: np.ndarray  # index into TRANSPORTS per point
    nbytes: np.ndarray
    factor: np.ndarray        # nccl-tests bus factor
    measured: np.ndarray      # per row, GB/s
    source: np.ndarray        # per row
    big: np.ndarray           # per row: message >= 1 MiB
    transports: tuple[str, ...] = field(default=())  # transports used across nodes


def points(prepared: Sequence[Prepared]) -> Points:
    """Arrays of the comparable prepared rows (in order)."""
    cols: dict[str, list] = {k: [] for k in ("row", "lat", "bw", "ni", "multi", "n", "fam", "tr", "s", "f")}
    measured, source, big = [], [], []
    for i, p in enumerate(prepared):
        measured.append(p.row.measured_busbw_GBps)
        source.append(p.row.source)
        big.append(p.row.nbytes >= MiB)
        for (system, nbytes), choice in zip(p.row.points, p.choices):
            cols["row"].append(i)
            cols["lat"].append(choice.latency_us * 1e-6)
            cols["bw"].append(choice.bandwidth_GBps * 1e9)
            cols["ni"].append(choice.n_inter)
            cols["multi"].append(system.n_nodes > 1)
            cols["n"].append(system.n_ranks)
            cols["fam"].append(_FAMILIES.index(FAMILY[p.row.kind]))
            cols["tr"].append(system.transport)
            cols["s"].append(nbytes)
            cols["f"].append(bus_factor(p.row.kind, system.n_ranks))
    multi = np.array(cols["multi"], dtype=bool)
    tr = np.array(cols["tr"], dtype=object)
    return Points(row=np.array(cols["row"], dtype=int), n_rows=len(prepared), latency_s=np.array(cols["lat"]),
                  bandwidth_Bps=np.array(cols["bw"]), n_inter=np.array(cols["ni"], dtype=float), multi=multi,
                  n_ranks=np.array(cols["n"], dtype=float), family=np.array(cols["fam"], dtype=int), transport=tr,
                  transport_index=np.array([TRANSPORTS.index(t) for t in tr], dtype=int),
                  nbytes=np.array(cols["s"], dtype=float), factor=np.array(cols["f"]),
                  measured=np.array(measured), source=np.array(source, dtype=object), big=np.array(big),
                  transports=tuple(sorted(set(tr[multi]))))


def predict(pts: Points, eff: NetworkEfficiency) -> np.ndarray:
    """Predicted busbw per comparable row, GB/s (the correction formula, as
    :func:`~simulator.network.nccl.correction.corrected_time_s`)."""
    drops = np.array([eff.node_drop_all_reduce, eff.node_drop_gather, eff.node_drop_all_to_all])
    eta = np.where(pts.multi, eff.inter_efficiency, eff.node_efficiency * (1.0 - drops[pts.family] / pts.n_ranks))
    if eff.inter_ramp_bytes > 0:
        ramp = 1.0 / (1.0 + (eff.inter_ramp_bytes / (pts.nbytes / pts.n_ranks)) ** eff.inter_ramp_power)
        ramp = np.where(pts.multi, ramp, 1.0)
    else:
        ramp = 1.0
    step = np.array([eff.step_latency_s(t) for t in TRANSPORTS])[pts.transport_index]
    added = np.where(pts.multi, eff.inter_latency_s + pts.n_inter * step, eff.node_latency_s)
    t = pts.latency_s + added + pts.nbytes / (pts.bandwidth_Bps * eta * ramp)
    busbw = pts.nbytes / t * pts.factor / 1e9
    total = np.bincount(pts.row, weights=busbw, minlength=pts.n_rows)
    count = np.bincount(pts.row, minlength=pts.n_rows)
    return total / count


# --------------------------------------------------------------------------- the fit


def fitted_names(pts: Points, rows: np.ndarray | None = None) -> list[str]:
    """The parameters a fit on the rows ``rows`` (boolean mask; all by default) of ``pts``
    adjusts: :data:`BASE_PARAMETERS` without the one-node drop of a family no one-node row has,
    plus the step latency of each transport used across nodes."""
    mask = (np.ones(pts.n_rows, dtype=bool) if rows is None else rows)[pts.row]
    families = {_FAMILIES[f] for f in pts.family[mask & ~pts.multi]}
    names = [n for n in BASE_PARAMETERS if not n.startswith("node_drop_") or n[len("node_drop_"):] in families]
    return names + [f"step_latency_{t}_s" for t in sorted(set(pts.transport[mask & pts.multi]))]


SOURCE_WEIGHT_POWER = 0.5
"""Each row weighs 1 / (rows of its source) ** this (module docstring)."""


def source_weights(sources: np.ndarray) -> np.ndarray:
    """1 / (rows of the row's source) ** :data:`SOURCE_WEIGHT_POWER`, scaled to sum to the
    number of rows."""
    names, inverse, counts = np.unique(sources, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse] ** SOURCE_WEIGHT_POWER
    return w * len(w) / w.sum()


def fit(pts: Points, start: NetworkEfficiency, rows: np.ndarray | None = None) -> NetworkEfficiency:
    """The efficiency minimising the source-weighted soft-L1 of log(predicted/measured) over the
    rows selected by the boolean mask ``rows`` (all by default), starting at ``start``."""
    mask = np.ones(pts.n_rows, dtype=bool) if rows is None else rows
    names = fitted_names(pts, mask)
    lo, hi, sc = (np.array(v) for v in zip(*(_bounds(n) for n in names)))
    x0 = np.clip(np.array([getattr(start, n) for n in names]), lo, hi) / sc
    w = np.sqrt(source_weights(pts.source[mask]))
    measured = pts.measured[mask]

    def residuals(x: np.ndarray) -> np.ndarray:
        eff = start.model_copy(update=dict(zip(names, (float(v) for v in x * sc))))
        e = np.log(predict(pts, eff)[mask] / measured) / LOSS_SCALE
        # weighted soft-L1 as a least-squares residual: sum r^2 = sum w * 2 (sqrt(1 + e^2) - 1)
        return w * np.sign(e) * np.sqrt(2.0 * (np.sqrt(1.0 + e * e) - 1.0))

    res = least_squares(residuals, x0, bounds=(lo / sc, hi / sc), x_scale="jac", ftol=1e-6, xtol=1e-6, tr_solver="lsmr",
                        max_nfev=300)
    return start.model_copy(update={n: _rounded(n, float(v)) for n, v in zip(names, res.x * sc)})


def _rounded(name: str, v: float) -> float:
    """A fitted value at the precision worth stating: latencies to 0.01 µs, the ramp to 1 byte,
    fractions and the exponent to 4 decimals."""
    if name.endswith("_s"):
        return round(v * 1e8) / 1e8
    if name == "inter_ramp_bytes":
        return float(round(v))
    return round(v, 4)


@dataclass
class NcclFit:
    """A fit and its errors."""

    efficiency: NetworkEfficiency
    names: list[str]
    in_sample: pd.DataFrame      # compare's table with the fitted efficiency (+ file column)
    loso: pd.DataFrame | None    # held-out predictions per source (same columns), if run
    rows_per_source: dict[str, int]
    table: pd.DataFrame          # the rows read (with a ``file`` column)
    prepared: list               # :func:`prepare`'s result on ``table``


def calibrate(paths: Sequence[str | Path], start: NetworkEfficiency, *, loso: bool = False,
              log: Callable[[str], None] | None = None) -> NcclFit:
    """Fit on the nccl-tests files ``paths`` from ``start``; optionally leave-one-source-out."""
    say = log or (lambda msg: None)
    table = read_nccl_files(paths)
    prepared = prepare(table)
    ok = [p for p in prepared if not isinstance(p, str)]
    if not ok:
        raise InputError("no row of the files is comparable", file=", ".join(str(p) for p in paths))
    pts = points(ok)
    say(f"{len(ok)} of {len(prepared)} rows comparable, {len(set(pts.source))} sources; fitting "
        f"{', '.join(fitted_names(pts))}")
    eff = fit(pts, start)
    in_sample = compare_prepared(table, prepared, eff)
    in_sample["file"] = table["file"].values
    held = None
    if loso:
        predicted = np.full(pts.n_rows, np.nan)
        for src in sorted(set(pts.source)):
            test = pts.source == src
            say(f"leave out {src} ({int(test.sum())} rows)")
            eff_k = fit(pts, start, rows=~test)
            predicted[test] = predict(pts, eff_k)[test]
        held = in_sample.copy()
        ok_mask = (held["status"] == "ok").to_numpy()
        held.loc[ok_mask, "predicted"] = predicted
        held.loc[ok_mask, "error_pct"] = 100.0 * (predicted - pts.measured) / pts.measured
    counts = pd.Series(pts.source).value_counts()
    return NcclFit(eff, fitted_names(pts), in_sample, held, {str(k): int(v) for k, v in counts.items()}, table, prepared)


def provenance(paths: Sequence[str | Path], result: NcclFit, start: NetworkEfficiency, *,
               command: str) -> dict[str, Any]:
    """The ``network_fit`` record of an efficiency file: the files (SHA-256), command, date,
    rows per source, method, fitted values and the errors."""

    def errors(tab: pd.DataFrame) -> dict[str, float]:
        return {"MAPE_pct_ge_1MiB": round(mape_pct(tab, MiB), 2), "MAPE_pct_all": round(mape_pct(tab), 2)}

    eff = result.efficiency
    values = {n: (round(getattr(eff, n) * 1e6, 3) if n.endswith("_s") else round(getattr(eff, n), 4))
              for n in result.names}
    record: dict[str, Any] = {
        "fitted_on": {"files": input_files(paths), "rows": int(len(result.in_sample)),
                      "comparable": int((result.in_sample["status"] == "ok").sum()),
                      "rows_per_source": result.rows_per_source},
        "date": _dt.date.today().isoformat(),
        "command": command,
        "method": "soft-L1 least squares on log(predicted/measured busbw), each row weighted "
                  f"1/(rows of its source)^{SOURCE_WEIGHT_POWER:g}, loss scale {LOSS_SCALE}; start: the previous network section; bounds: the "
                  "fields' bounds (simulator/validation/nccl_fit.py)",
        "parameters": {(n[:-2] + "_us" if n.endswith("_s") else n): v for n, v in values.items()},
        "not_fitted": sorted((n[:-2] + "_us" if n.endswith("_s") else n)
                             for n in NetworkEfficiency.model_fields if n not in result.names and n != "nccl_version"),
        "nccl_uncorrected": {"all": errors(compare_prepared(result.table, result.prepared, NOMINAL))},
        "in_sample": {"all": errors(result.in_sample),
                      **{f: errors(g) for f, g in result.in_sample.groupby("file", sort=False)}},
    }
    if result.loso is not None:
        record["leave_one_source_out"] = {"all": errors(result.loso)}
    return record
