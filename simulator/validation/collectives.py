"""Compare predicted collective bus bandwidth with measured nccl-tests figures.

:func:`compare` takes a table in the format of the reference set's ``nccl.csv``
(columns ``case_id, collective, gpu, n_gpus, n_nodes, gpus_per_node, interconnect,
message_bytes, algbw_gbs, busbw_gbs, time_us, source, notes``; a DataFrame or a path,
the package never looks for the file itself) and returns one row per input row:
measured and predicted bus bandwidth, the error and the algorithm the model chose, or
the reason the row cannot be compared. :func:`summary` aggregates the comparable rows
per collective and message-size range.

How a row is predicted
----------------------
1. Parse. ``message_bytes`` and ``n_gpus`` are a whole number or a range ``lo-hi``;
   anything else (``large (>256M)``, ``<=134217728``, blank) is not comparable. The
   measured busbw is recomputed from ``time_us`` when the row has one (nccl-tests'
   definition: algbw = bytes / time, busbw = algbw x 2(n-1)/n for all-reduce, x (n-1)/n
   for all-gather / reduce-scatter), because the printed busbw is rounded to 0.01 GB/s
   and reads 0.00 for tiny messages; otherwise the printed ``busbw_gbs`` is used,
   ``~480`` as 480 and ``365-370`` as its midpoint (both flagged in ``notes``). A value
   such as ``96 (peak); 84.8 (avg)`` is a summary of a sweep: not comparable.
2. Algorithm. ``NCCL_ALGO=RING`` / ``Tree`` in ``interconnect`` force the model's
   ``ring`` / ``tree``; an algorithm the model lacks (``NVLS``, in-switch reduction) makes
   the row not comparable; otherwise the model's ``auto`` choice (least time) is used,
   which is what NCCL's tuner does. Rows that ran NCCL's default on H100 NVSwitch use
   NVLS at large sizes; they stay comparable (that is the prediction a user would get)
   and their error shows the missing algorithm.
3. Topology (``TOPOLOGY_RULES`` of :mod:`simulator.validation.nccl_topologies`, first
   match): one-node A100 NVSwitch rows -> bundled ``dgx-a100-superpod``; one-node H100 SXM rows -> ``dgx-h100-superpod``;
   rows no bundled file describes get a topology built here from the reference
   figures (``EXTRA_TOPOLOGIES`` there, each figure citing its row of ``systems.csv`` /
   ``gpus.csv``). The group is all ``n`` ranks in node-major order (nccl-tests' rank
   order), one group.
4. Predict. ``time = plan.standalone_time_s(efficiency)`` with
   ``efficiency = default_efficiency().network`` unless one is passed;
   ``predicted busbw = bus_bandwidth_Bps(kind, n, bytes, time)``. For a range (of sizes
   or of group sizes) the model is evaluated at every corner; the row is comparable
   only when the corner predictions agree within :data:`RANGE_SPREAD_MAX` (then the
   prediction is their mean); otherwise the range hides a size dependence the single
   measured figure does not resolve.

``error_pct = 100 x (predicted - measured) / measured``: positive = the model is too
optimistic (too fast).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator.inputs.efficiency_file import default_efficiency
from simulator.network.collectives import (
    KINDS,
    bus_bandwidth_Bps,
    bus_factor,
    plan_collective,
)
from simulator.network.efficiency import NetworkEfficiency
from simulator.network.topology import Topology
from simulator.validation.nccl_topologies import comparison_topology, topology_for

MiB = 1 << 20

SIZE_RANGES: tuple[tuple[str, float, float], ...] = (
    ("< 1 MiB", 0.0, 1 * MiB),
    ("1 MiB - 64 MiB", 1 * MiB, 64 * MiB),
    (">= 64 MiB", 64 * MiB, math.inf),
)
"""Message-size buckets of :func:`summary`: (label, lower bound incl., upper bound excl.), bytes."""

RANGE_SPREAD_MAX = 0.02
"""A row given as a range is comparable when the model's busbw at the range's corners
differs by at most this fraction of their mean."""

COLUMNS = (
    "case_id", "collective", "n_gpus", "n_nodes", "message_bytes", "measured_busbw_GBps",
    "predicted_busbw_GBps", "error_pct", "algorithm", "topology", "status", "notes",
)
"""Columns of :func:`compare`'s result, in order."""

_ALGO_MAP = {"ring": "ring", "tree": "tree"}
_ALGO_MISSING = {"nvls": "NVLS (in-NVSwitch reduction)", "nvlstree": "NVLS tree", "collnet": "CollNet (SHARP)",
                 "collnetdirect": "CollNet (SHARP)", "collnetchain": "CollNet (SHARP)", "pat": "PAT"}


# --------------------------------------------------------------------------- parsing


class NotComparable(Exception):
    """A row that cannot be compared; the message is the reason."""


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or str(v).strip() == ""


def _int_or_range(v: Any, what: str) -> tuple[int, int]:
    """(lo, hi) of ``123`` or ``lo-hi``; raises NotComparable for anything else."""
    if _blank(v):
        raise NotComparable(f"{what} not given")
    s = str(v).strip()
    m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", s)
    if m:
        return int(m[1]), int(m[2])
    if re.fullmatch(r"\d+(\.0+)?", s):
        return int(float(s)), int(float(s))
    raise NotComparable(f"{what} {s!r} is not a number or a closed range")


def _value(v: Any, what: str) -> tuple[float, str]:
    """(value, note) of ``480``, ``~480`` (approximate) or ``365-370`` (midpoint)."""
    if _blank(v):
        raise NotComparable(f"{what} not given")
    s = str(v).strip()
    if re.fullmatch(r"\d+(\.\d*)?", s):
        return float(s), ""
    m = re.fullmatch(r"~\s*(\d+(?:\.\d*)?)", s)
    if m:
        return float(m[1]), f"{what} approximate ({s})"
    m = re.fullmatch(r"(\d+(?:\.\d*)?)\s*-\s*(\d+(?:\.\d*)?)", s)
    if m:
        return (float(m[1]) + float(m[2])) / 2, f"{what} given as range {s}: midpoint used"
    raise NotComparable(f"{what} {s!r} is not a single figure (a summary of a sweep or several values)")


def _requested_algorithm(interconnect: str) -> str:
    m = re.search(r"NCCL_ALGO\s*=\s*([A-Za-z_]+)", interconnect or "")
    if not m:
        return "auto"
    name = m[1].lower()
    if name in _ALGO_MAP:
        return _ALGO_MAP[name]
    raise NotComparable(f"NCCL_ALGO={m[1]} forced: the model has no {_ALGO_MISSING.get(name, m[1])} algorithm")


def _measured(row: pd.Series, kind: str, n: tuple[int, int], size: tuple[int, int]) -> tuple[float, str, list[str]]:
    """(measured busbw GB/s, where it came from, notes)."""
    notes: list[str] = []
    single = n[0] == n[1] and size[0] == size[1]
    if single and not _blank(row.get("time_us")):
        try:
            t_us = float(str(row["time_us"]).strip())
        except ValueError:
            t_us = float("nan")
        if math.isfinite(t_us) and t_us > 0:
            numerator, denominator = bus_factor(kind, n[0])
            busbw = size[0] / (t_us * 1e-6) * (numerator / denominator) / 1e9
            if not _blank(row.get("busbw_gbs")):
                try:
                    printed = float(str(row["busbw_gbs"]).strip())
                    if abs(printed - busbw) > 0.006 + 0.02 * printed:
                        notes.append(f"busbw from time_us {busbw:.3f} differs from printed {printed}")
                except ValueError:
                    pass
            return busbw, "time_us", notes
    busbw, note = _value(row.get("busbw_gbs"), "busbw")
    if note:
        notes.append(note)
    return busbw, "busbw_gbs", notes


# --------------------------------------------------------------------------- comparison


@dataclass
class _Topos:
    cache: dict

    def get(self, key: str, n: int) -> Topology:
        if (key, n) not in self.cache:
            self.cache[(key, n)] = comparison_topology(key, n)
        return self.cache[(key, n)]

def predict_busbw_GBps(
    topology: Topology, kind: str, n: int, message_bytes: float, efficiency: NetworkEfficiency,
    algorithm: str = "auto",
) -> tuple[float, str]:
    """(predicted busbw GB/s, algorithm used) of one collective over GPUs 0..n-1 of ``topology``."""
    plan = plan_collective(topology, kind, [list(range(n))], message_bytes, algorithm=algorithm, efficiency=efficiency)
    t = plan.standalone_time_s(efficiency)
    return bus_bandwidth_Bps(kind, n, message_bytes, t) / 1e9, plan.algorithm


def _compare_row(row: pd.Series, eff: NetworkEfficiency, topos: _Topos) -> dict:
    out: dict[str, Any] = {c: None for c in COLUMNS}
    out["case_id"] = row["case_id"]
    out["collective"] = row["collective"]
    out["n_nodes"] = None if _blank(row.get("n_nodes")) else str(row["n_nodes"]).strip()
    notes: list[str] = []
    try:
        kind = str(row["collective"]).strip()
        if kind not in KINDS:
            raise NotComparable(f"collective {kind!r} unknown to the model")
        row_notes = str(row.get("notes", "")).lower()
        if "expected value" in row_notes and "not a pasted measurement" in row_notes:
            raise NotComparable("an expected value stated by a maintainer, not a measurement")
        try:
            n = _int_or_range(row.get("n_gpus"), "n_gpus")
            out["n_gpus"] = n[0] if n[0] == n[1] else f"{n[0]}-{n[1]}"
            size = _int_or_range(row.get("message_bytes"), "message size")
        except NotComparable:
            if _blank(out["n_gpus"]) and not _blank(row.get("n_gpus")):
                out["n_gpus"] = str(row["n_gpus"])
            raise
        out["message_bytes"] = float(size[0]) if size[0] == size[1] else math.sqrt(size[0] * size[1])
        if size[0] != size[1]:
            notes.append(f"message size range {size[0]}-{size[1]}: geometric midpoint listed")
        algorithm = _requested_algorithm(str(row.get("interconnect", "")))
        measured, origin, more = _measured(row, kind, n, size)
        notes += more
        notes.append(f"measured from {origin}")
        out["measured_busbw_GBps"] = measured
        if not measured > 0:
            raise NotComparable(f"measured busbw {measured} is not positive")
        key = topology_for(row)
        if key is None:
            raise NotComparable("no bundled or built-in topology describes this system")
        out["topology"] = key
        preds, algos = [], set()
        for nn in sorted(set(n)):
            topo = topos.get(key, nn)
            if not _blank(out["n_nodes"]) and str(topo.n_nodes) != out["n_nodes"] and n[0] == n[1]:
                raise NotComparable(f"topology {key} puts {nn} GPUs on {topo.n_nodes} nodes, the row on {out['n_nodes']}")
            for s in sorted(set(size)):
                bw, algo = predict_busbw_GBps(topo, kind, nn, float(s), eff, algorithm)
                preds.append(bw)
                algos.add(algo)
        out["algorithm"] = "/".join(sorted(algos))
        mean = float(np.mean(preds))
        if len(preds) > 1:
            spread = (max(preds) - min(preds)) / mean
            notes.append(f"range: model busbw {min(preds):.1f}-{max(preds):.1f} GB/s at its corners")
            if spread > RANGE_SPREAD_MAX:
                out["predicted_busbw_GBps"] = mean
                raise NotComparable(
                    f"a range whose model busbw varies {100 * spread:.0f}% across it "
                    f"({min(preds):.1f}-{max(preds):.1f} GB/s); one measured figure cannot be placed in it"
                )
        out["predicted_busbw_GBps"] = mean
        out["error_pct"] = 100.0 * (mean - measured) / measured
        if "NVLS" in str(row.get("interconnect", "")) and algorithm == "auto":
            notes.append("measured with NCCL's default, NVLS at large sizes; the model has no NVLS")
        out["status"] = "ok"
    except NotComparable as exc:
        out["status"] = f"not comparable: {exc}"
    out["notes"] = "; ".join(notes)
    return out


def read_nccl_csv(path: str | Path) -> pd.DataFrame:
    """Read an nccl.csv-format file with every column as text (values like ``~480`` stay intact)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def compare(table: pd.DataFrame | str | Path, efficiency: NetworkEfficiency | None = None) -> pd.DataFrame:
    """Predicted vs measured bus bandwidth, one row per row of ``table`` (in input order).

    Args:
        table: rows in nccl.csv's format (DataFrame, or a path read with :func:`read_nccl_csv`).
        efficiency: network efficiency; default ``default_efficiency().network``.

    Returns:
        A DataFrame with :data:`COLUMNS`. ``status`` is ``ok`` or ``not comparable: <reason>``;
        numeric comparison columns are NaN when not comparable. ``message_bytes`` is the
        geometric midpoint for a size range; ``n_gpus`` is an int or the range text.

    Raises:
        KeyError: a required column (``case_id``, ``collective``, ``n_gpus``,
            ``message_bytes``, ``busbw_gbs``, ``gpu``, ``interconnect``, ``n_nodes``,
            ``gpus_per_node``) is missing.
    """
    if not isinstance(table, pd.DataFrame):
        table = read_nccl_csv(table)
    required = ("case_id", "collective", "n_gpus", "n_nodes", "gpus_per_node", "gpu", "interconnect",
                "message_bytes", "busbw_gbs")
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise KeyError(f"nccl table lacks columns {missing}")
    eff = efficiency or default_efficiency().network
    topos = _Topos({})
    rows = [_compare_row(r, eff, topos) for _, r in table.fillna("").iterrows()]
    out = pd.DataFrame(rows, columns=list(COLUMNS))
    for c in ("message_bytes", "measured_busbw_GBps", "predicted_busbw_GBps", "error_pct"):
        out[c] = pd.to_numeric(out[c], errors="coerce")
    return out


def size_range(message_bytes: float) -> str:
    """Label of the :data:`SIZE_RANGES` bucket holding ``message_bytes``."""
    for label, lo, hi in SIZE_RANGES:
        if lo <= message_bytes < hi:
            return label
    raise ValueError(f"{message_bytes!r} is not a message size")


def summary(compared: pd.DataFrame) -> pd.DataFrame:
    """Error statistics of :func:`compare`'s ``ok`` rows per collective and size range.

    Columns: collective, size_range (the :data:`SIZE_RANGES` labels, plus ``all``),
    count, mape_pct (mean |error_pct|), median_abs_err_pct, max_abs_err_pct. Ranges
    without comparable rows are left out.
    """
    ok = compared[compared["status"] == "ok"].copy()
    ok["abs_err"] = ok["error_pct"].abs()
    ok["size_range"] = ok["message_bytes"].map(size_range)
    rows = []
    for kind, g in ok.groupby("collective", sort=True):
        for label in [lab for lab, _, _ in SIZE_RANGES] + ["all"]:
            part = g if label == "all" else g[g["size_range"] == label]
            if part.empty:
                continue
            rows.append({
                "collective": kind, "size_range": label, "count": len(part),
                "mape_pct": float(part["abs_err"].mean()),
                "median_abs_err_pct": float(part["abs_err"].median()),
                "max_abs_err_pct": float(part["abs_err"].max()),
            })
    return pd.DataFrame(rows, columns=["collective", "size_range", "count", "mape_pct", "median_abs_err_pct",
                                       "max_abs_err_pct"])


def mape_pct(compared: pd.DataFrame, min_bytes: float = 0.0) -> float:
    """Mean |error_pct| of the ``ok`` rows with ``message_bytes >= min_bytes`` (NaN if none)."""
    ok = compared[(compared["status"] == "ok") & (compared["message_bytes"] >= min_bytes)]
    return float(ok["error_pct"].abs().mean()) if len(ok) else float("nan")
