"""Compare predicted collective bus bandwidth with measured nccl-tests results.

:func:`compare` takes a table in the format of the reference set's ``nccl.csv`` /
``nccl_calibration.csv`` (columns :data:`NCCL_COLUMNS`; a DataFrame or a path, the package
never looks for the file itself) and returns one row per input row: measured and predicted
bus bandwidth, the error, the algorithm x protocol x channels NCCL's tuner chose, or the reason
the row cannot be compared. :func:`summary` aggregates the comparable rows per collective x
message-size range x scale (one node, two nodes, more).

How a row is predicted
----------------------
1. Parse (:func:`simulator.validation.nccl_rows.parse_row`): the system NCCL saw
   (:class:`~simulator.network.nccl.system.NcclSystem`), the collective, the size S and the
   measured busbw, every assumption in the row's ``notes``.
2. Choose: ``tuner.choose(system, kind, S, algorithm, protocol)``, NCCL's own selection
   (forced where the row set ``NCCL_ALGO`` / ``NCCL_PROTO``).
3. Time: :func:`simulator.network.nccl.correction.corrected_time_s` with the network
   efficiency (default: the packaged one, ``default_efficiency().network``;
   :data:`~simulator.network.efficiency.NOMINAL` gives NCCL's own estimate).
4. ``predicted busbw = S / t x F`` with nccl-tests' factor F (2(n-1)/n all-reduce, (n-1)/n
   all-gather, reduce-scatter and all-to-all, 1 otherwise); for a GPU-count range the mean
   over both ends.

``error_pct = 100 x (predicted - published) / published``: positive = the model is too
optimistic (too fast).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator.core.errors import InputError
from simulator.network.efficiency import NetworkEfficiency
from simulator.network.nccl.correction import corrected_time_s
from simulator.network.nccl.system import NcclSystem
from simulator.validation.nccl_rows import NcclRow, NotComparable, bus_factor, parse_row, source_key

MiB = 1 << 20

NCCL_COLUMNS = ("case_id", "collective", "gpu", "n_gpus", "n_nodes", "gpus_per_node", "interconnect",
                "message_bytes", "algbw_gbs", "busbw_gbs", "time_us", "source", "notes")
"""The columns of an nccl-tests file (the reference set's ``nccl.csv``)."""

METRIC = "busbw_gbs"
"""The compared metric: nccl-tests' bus bandwidth, GB/s."""

SIZE_RANGES: tuple[tuple[str, float, float], ...] = (
    ("< 1 MiB", 0.0, 1 * MiB),
    ("1-64 MiB", 1 * MiB, 64 * MiB),
    (">= 64 MiB", 64 * MiB, math.inf),
)
"""Message-size buckets of :func:`summary`: (label, lower bound incl., upper bound excl.), bytes."""

SCALES = ("one node", "2 nodes", "> 2 nodes")
"""Scale buckets of :func:`summary`, by NCCL's node count (a GB200 NVL72 rack is one node)."""

COLUMNS = ("case_id", "metric", "published", "predicted", "error_pct", "status", "collective", "n_gpus",
           "n_nodes", "message_bytes", "gpu", "transport", "algorithm", "protocol", "channels", "source", "notes")
"""Columns of :func:`compare`'s result, in order. ``n_nodes`` is NCCL's node count."""


def is_nccl_table(columns: Any) -> bool:
    """True if a table with these column names is an nccl-tests file (all of :data:`NCCL_COLUMNS`)."""
    return set(NCCL_COLUMNS) <= {str(c).strip() for c in columns}


def read_nccl_csv(path: str | Path) -> pd.DataFrame:
    """Read an nccl-tests file with every column as text (values like ``~480`` stay intact)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def scale(n_nodes: int) -> str:
    """Label of the :data:`SCALES` bucket of a communicator over ``n_nodes`` nodes."""
    return SCALES[0] if n_nodes <= 1 else SCALES[1] if n_nodes == 2 else SCALES[2]


def size_range(message_bytes: float) -> str:
    """Label of the :data:`SIZE_RANGES` bucket holding ``message_bytes``."""
    for label, lo, hi in SIZE_RANGES:
        if lo <= message_bytes < hi:
            return label
    raise ValueError(f"{message_bytes!r} is not a message size")


@lru_cache(maxsize=None)
def _choose(system: NcclSystem, kind: str, nbytes: float, algorithm: str | None, protocol: str | None):
    from simulator.network.nccl import tuner

    return tuner.choose(system, kind, nbytes, algorithm=algorithm, protocol=protocol)


@dataclass(frozen=True)
class Prepared:
    """A parsed row with NCCL's choice at each of its points (the choice does not depend on the
    correction, so a fit prepares once and re-times many times)."""

    row: NcclRow
    choices: tuple[Any, ...]


def prepare(table: pd.DataFrame | str | Path) -> list[Prepared | str]:
    """Per row of ``table``: a :class:`Prepared` row, or the reason it is not comparable."""
    if not isinstance(table, pd.DataFrame):
        table = read_nccl_csv(table)
    missing = [c for c in ("case_id", "collective", "gpu", "n_gpus", "interconnect", "message_bytes", "busbw_gbs")
               if c not in table.columns]
    if missing:
        raise KeyError(f"nccl table lacks columns {missing}")
    out: list[Prepared | str] = []
    for rec in table.fillna("").to_dict("records"):
        try:
            row = parse_row(rec)
            choices = []
            for system, nbytes in row.points:
                try:
                    choices.append(_choose(system, row.kind, nbytes, row.algorithm, row.protocol))
                except (ValueError, KeyError, InputError) as err:
                    raise NotComparable(f"NCCL's tuner has no choice: {err}") from None
            out.append(Prepared(row, tuple(choices)))
        except NotComparable as exc:
            out.append(str(exc))
    return out


def predicted_busbw_GBps(p: Prepared, eff: NetworkEfficiency) -> float:
    """The predicted bus bandwidth of a prepared row, GB/s (mean over its points)."""
    values = []
    for (system, nbytes), choice in zip(p.row.points, p.choices):
        t = corrected_time_s(system, choice, nbytes, eff)
        values.append(nbytes / t * bus_factor(p.row.kind, system.n_ranks) / 1e9)
    return float(np.mean(values))


def compare_prepared(table: pd.DataFrame, prepared: list[Prepared | str], eff: NetworkEfficiency) -> pd.DataFrame:
    """:func:`compare` on rows already :func:`prepare`-d (``table`` gives the row texts)."""
    rows = []
    for rec, p in zip(table.fillna("").to_dict("records"), prepared):
        out: dict[str, Any] = {c: None for c in COLUMNS}
        out.update(case_id=rec.get("case_id"), metric=METRIC, collective=rec.get("collective"),
                   source=source_key(str(rec.get("source", ""))), gpu=rec.get("gpu"))
        if isinstance(p, str):
            out["status"] = f"not comparable: {p}"
            out["n_gpus"] = rec.get("n_gpus")
            out["n_nodes"] = rec.get("n_nodes")
            try:
                out["published"] = float(rec.get("busbw_gbs"))
            except (TypeError, ValueError):
                pass
            try:
                out["message_bytes"] = float(rec.get("message_bytes"))
            except (TypeError, ValueError):
                pass
        else:
            r, choice = p.row, p.choices[-1]
            predicted = predicted_busbw_GBps(p, eff)
            n_lo = r.points[0][0].n_ranks
            out.update(published=r.measured_busbw_GBps, predicted=predicted,
                       error_pct=100.0 * (predicted - r.measured_busbw_GBps) / r.measured_busbw_GBps,
                       status="ok", n_gpus=r.n_ranks if n_lo == r.n_ranks else f"{n_lo}-{r.n_ranks}",
                       n_nodes=r.system.n_nodes, message_bytes=r.nbytes, gpu=r.gpu, transport=r.system.transport,
                       algorithm=choice.algorithm, protocol=choice.protocol, channels=choice.channels,
                       source=r.source, notes="; ".join(r.notes))
        rows.append(out)
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    for c in ("published", "predicted", "error_pct", "message_bytes"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def compare(table: pd.DataFrame | str | Path, efficiency: NetworkEfficiency | None = None) -> pd.DataFrame:
    """Predicted vs measured bus bandwidth, one row per row of ``table`` (in input order).

    Args:
        table: rows in nccl.csv's format (a DataFrame, or a path read with :func:`read_nccl_csv`).
        efficiency: the correction of NCCL's estimate; default the packaged one
            (``default_efficiency().network``); :data:`~simulator.network.efficiency.NOMINAL`
            for NCCL's own estimate.

    Returns:
        A DataFrame with :data:`COLUMNS`. ``status`` is ``ok`` or ``not comparable: <reason>``;
        ``published`` / ``predicted`` are busbw in GB/s, ``message_bytes`` the size evaluated.

    Raises:
        KeyError: a required column is missing.
    """
    if not isinstance(table, pd.DataFrame):
        table = read_nccl_csv(table)
    if efficiency is None:
        from simulator.inputs.efficiency_file import default_efficiency

        efficiency = default_efficiency().network
    return compare_prepared(table, prepare(table), efficiency)


def summary(compared: pd.DataFrame) -> pd.DataFrame:
    """Error statistics of :func:`compare`'s ``ok`` rows per collective x size range x scale.

    Columns: collective, size_range (:data:`SIZE_RANGES` labels), scale (:data:`SCALES`),
    count, mape_pct (mean |error_pct|), median_abs_err_pct, mean_err_pct (the bias; positive =
    too optimistic). A last row per collective, and one ``all`` row, cover everything.
    """
    ok = compared[compared["status"] == "ok"].copy()
    ok["size_range"] = ok["message_bytes"].map(size_range)
    ok["scale"] = ok["n_nodes"].astype(int).map(scale)
    cols = ["collective", "size_range", "scale", "count", "mape_pct", "median_abs_err_pct", "mean_err_pct"]

    def stats(part: pd.DataFrame, **keys: str) -> dict:
        err = part["error_pct"]
        return {**keys, "count": len(part), "mape_pct": float(err.abs().mean()),
                "median_abs_err_pct": float(err.abs().median()), "mean_err_pct": float(err.mean())}

    rows = []
    for kind, g in ok.groupby("collective", sort=True):
        for label, _, _ in SIZE_RANGES:
            for sc in SCALES:
                part = g[(g["size_range"] == label) & (g["scale"] == sc)]
                if len(part):
                    rows.append(stats(part, collective=kind, size_range=label, scale=sc))
        rows.append(stats(g, collective=kind, size_range="all", scale="all"))
    if len(ok):
        rows.append(stats(ok, collective="all", size_range="all", scale="all"))
    return pd.DataFrame(rows, columns=cols)


def mape_pct(compared: pd.DataFrame, min_bytes: float = 0.0) -> float:
    """Mean |error_pct| of the ``ok`` rows with ``message_bytes >= min_bytes`` (NaN if none)."""
    ok = compared[(compared["status"] == "ok") & (compared["message_bytes"] >= min_bytes)]
    return float(ok["error_pct"].abs().mean()) if len(ok) else float("nan")
