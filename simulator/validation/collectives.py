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
3. Topology (:data:`TOPOLOGY_RULES`, first match): one-node A100 NVSwitch rows ->
   bundled ``dgx-a100-superpod``; one-node H100 SXM rows -> ``dgx-h100-superpod``;
   rows no bundled file describes get a topology built here from the reference
   figures (:data:`EXTRA_TOPOLOGIES`, each figure citing its row of ``systems.csv`` /
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from simulator.inputs.efficiency_file import default_efficiency
from simulator.network.collectives import (
    KINDS,
    NetworkEfficiency,
    bus_bandwidth_Bps,
    plan_collective,
)
from simulator.network.topology import (
    Topology,
    TopologyFile,
    load_topology,
    parse_topology_file,
)

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


# --------------------------------------------------------------------------- topologies built here




EXTRA_TOPOLOGIES: dict[str, dict] = {
    # GCP A3 Mega: 8x H100 per VM, NVLink 4 through NVSwitch, 8 GPUDirect-TCPXO NICs.
    "gcp-a3-mega": {
        "name": "GCP A3 Mega (8x H100, 8x 200 Gb/s GPUDirect-TCPXO)",
        "source": "systems.csv gcp_a3mega (stas00/ml-engineering@744d01e1 network/README.md, citing GCP "
        "GPUDirect-TCPX docs); gpus.csv H100-SXM5-80GB. Fabric and latencies: estimates.",
        "gpu": "h100-sxm",
        "node": {
            "gpus": 8,  # systems.csv gcp_a3mega: gpus = 8
            "scale_up": {
                "kind": "nvswitch",
                # systems.csv gcp_a3mega: nvlink_per_gpu_gbs_bidir 900 -> 450 GB/s one direction
                # (gpus.csv H100-SXM5-80GB notes: '18 links, 450 GB/s per direction').
                "bandwidth_GBps": 450,
                # Estimate, the same prior as topologies/dgx-h100-superpod.yaml (NVSwitch hop).
                "latency_us": 1.0,
            },
            "nics": 8,  # systems.csv gcp_a3mega: compute_nics '8x GPUDirect-TCPXO NICs'
            "nic_bandwidth_Gbps": 200,  # systems.csv gcp_a3mega: compute_nic_gbps 200
            # Estimate, not fitted to nccl.csv: TCPXO is a TCP transport with a receive-side
            # data path offload, not RDMA; taken as 5 us per NIC traversal (vs 1.5 us for the
            # InfiniBand NICs of the bundled DGX files). No figure in the reference set.
            "nic_latency_us": 5.0,
            # gpus.csv H100-SXM5-80GB: PCIe Gen5 x16, 128 GB/s both directions -> 64 per direction.
            "pcie_bandwidth_GBps": 64,
            "power_W": 0,
            "power_source": "estimate: not used by the nccl validation (bandwidth only)",
        },
        "fabric": {
            # Estimate: GCP does not describe its fabric in the reference set; two VMs are
            # modelled as one non-blocking switch (the busbw of 2 nodes does not depend on it).
            "kind": "fat_tree", "tiers": 1, "nodes_per_unit": 2, "max_nodes": 2, "grow": False,
            "switch_latency_us": 1.0,  # estimate (data-centre Ethernet, possibly several hops)
            "switch_ports": 16, "switch_power_W": 0,
            "switch_power_source": "estimate: not used by the nccl validation",
        },
    },
    # One H100 per node with 4 RoCE NICs (nccl.csv iss232_*: '4 NICs per node (RoCE, GID 3)').
    "h100-1gpu-4nic-roce": {
        "name": "1x H100 per node, 4x 400 Gb/s RoCE NICs",
        "source": "nccl.csv iss232 rows (1 GPU per node, 4 NICs); gpus.csv H100-SXM5-80GB; "
        "systems.csv sys_dgx_h100 (NIC rate). Fabric and latencies: estimates.",
        "gpu": "h100-sxm",
        "node": {
            "gpus": 1,  # nccl.csv iss232_*: gpus_per_node 1
            "scale_up": {
                "kind": "nvswitch",
                # gpus.csv H100-SXM5-80GB: 450 GB/s per direction (unused: one GPU per node).
                "bandwidth_GBps": 450,
                "latency_us": 1.0,  # estimate (unused: one GPU per node)
            },
            # 4 NICs for 1 GPU, described as one NIC of 4x the rate (topology.py: nics must
            # divide gpus). Rate per NIC 400 Gb/s: ConnectX-7 class, systems.csv sys_dgx_h100
            # compute_nic_gbps 400 (the row's note 'user expected 200' GB/s = 4 x 400 Gb/s agrees).
            "nics": 1,
            "nic_bandwidth_Gbps": 1600,
            "nic_latency_us": 1.5,  # estimate, the prior of the bundled DGX files (RDMA NIC)
            # gpus.csv H100-SXM5-80GB: PCIe Gen5 x16, 128 GB/s both directions -> 64 per direction;
            # the GPU's one x16 link carries its traffic to all four NICs.
            "pcie_bandwidth_GBps": 64,
            "power_W": 0,
            "power_source": "estimate: not used by the nccl validation (bandwidth only)",
        },
        "fabric": {
            "kind": "fat_tree", "tiers": 1, "nodes_per_unit": 2, "max_nodes": 2, "grow": False,
            "switch_latency_us": 0.6,  # estimate: cut-through Ethernet switch
            "switch_ports": 64, "switch_power_W": 0,
            "switch_power_source": "estimate: not used by the nccl validation",
        },
    },
    # Two H100 PCIe cards joined by NVLink bridges (nccl.csv iss1161_*: 'NVLink bridge').
    "h100-pcie-nvlink-bridge": {
        "name": "2x H100 PCIe with NVLink bridge",
        "source": "gpus.csv H100-PCIe-80GB (nvlink_gbps_bidir_per_gpu '600 (NVLink bridge)'); "
        "nccl.csv iss1161 rows (2 GPUs, one node). Latencies: estimates.",
        "gpu": "h100-pcie",
        "node": {
            "gpus": 2,  # nccl.csv iss1161_*: n_gpus 2, gpus_per_node 2
            "scale_up": {
                # A bridge is a point-to-point NVLink; with two GPUs a 'switch' whose per-GPU
                # edges have the bridge bandwidth gives the same GPU-to-GPU path bandwidth.
                "kind": "nvswitch",
                # gpus.csv H100-PCIe-80GB: NVLink bridge 600 GB/s both directions -> 300 per direction.
                "bandwidth_GBps": 300,
                "latency_us": 1.0,  # estimate, the H100 NVLink prior of dgx-h100-superpod.yaml
            },
            "nics": 1,
            "nic_bandwidth_Gbps": 200,  # estimate (unused: one node)
            "nic_latency_us": 1.5,  # estimate (unused: one node)
            # gpus.csv H100-PCIe-80GB: PCIe Gen5 x16, 128 GB/s -> 64 per direction (unused: one node).
            "pcie_bandwidth_GBps": 64,
            "power_W": 0,
            "power_source": "estimate: not used by the nccl validation (bandwidth only)",
        },
        "fabric": {
            "kind": "fat_tree", "tiers": 1, "nodes_per_unit": 1, "max_nodes": 1, "grow": False,
            "switch_latency_us": 0.6, "switch_ports": 64, "switch_power_W": 0,
            "switch_power_source": "estimate: not used by the nccl validation",
        },
    },
    # DGX-A100-like node with only 2 compute NICs (nccl.csv iss837_*: '2x IB 200 Gb/s per node').
    "a100-2nic-hdr": {
        "name": "8x A100 NVSwitch, 2x HDR 200 Gb/s per node",
        "source": "systems.csv sys_dgx_a100 (node); nccl.csv iss837 rows (2 NICs per node); "
        "systems.csv ib_gen_rates (HDR 200 Gb/s); gpus.csv A100-SXM4-80GB. Latencies: estimates.",
        "gpu": "a100-80gb",
        "node": {
            "gpus": 8,  # systems.csv sys_dgx_a100: gpus 8
            "scale_up": {
                "kind": "nvswitch",
                # systems.csv sys_dgx_a100: nvlink_per_gpu_gbs_bidir 600 -> 300 per direction.
                "bandwidth_GBps": 300,
                "latency_us": 2.0,  # estimate, the prior of dgx-a100-superpod.yaml
            },
            "nics": 2,  # nccl.csv iss837_*: '2x IB 200 Gb/s per node'
            "nic_bandwidth_Gbps": 200,  # same; HDR 4x port = 200 Gb/s [systems.csv ib_gen_rates]
            "nic_latency_us": 1.5,  # estimate, the prior of the bundled DGX files
            "pcie_bandwidth_GBps": 32,  # gpus.csv A100-SXM4-40GB: PCIe Gen4 x16 (32+32 GB/s)
            "power_W": 0,
            "power_source": "estimate: not used by the nccl validation (bandwidth only)",
        },
        "fabric": {
            "kind": "fat_tree", "tiers": 1, "nodes_per_unit": 4, "max_nodes": 4, "grow": False,
            "switch_latency_us": 0.3,  # estimate, the HDR prior of dgx-a100-superpod.yaml
            "switch_ports": 40, "switch_power_W": 0,
            "switch_power_source": "estimate: not used by the nccl validation",
        },
    },
}
"""Topologies for rows no bundled file describes, as topology-file data (validated by
:func:`simulator.network.topology.parse_topology_file` when built)."""


def topology_spec(key: str) -> TopologyFile:
    """The validated :class:`TopologyFile` of :data:`EXTRA_TOPOLOGIES` ``[key]``.

    Raises :class:`KeyError` for an unknown key and :class:`InputError` if the data
    breaks the topology schema.
    """
    return parse_topology_file(yaml.safe_dump(EXTRA_TOPOLOGIES[key]), f"<nccl_validation:{key}>")


def build_topology(key: str, n_gpus: int) -> Topology:
    """A topology for ``n_gpus`` GPUs: a bundled name (via :func:`load_topology`) or a key
    of :data:`EXTRA_TOPOLOGIES` (whole nodes, or one partial node when ``n_gpus`` is at
    most one node). Raises :class:`InputError` / :class:`ValueError` when the fleet does
    not fit the design."""
    if key not in EXTRA_TOPOLOGIES:
        return load_topology(key, n_gpus)
    spec = topology_spec(key)
    per_node = spec.node.gpus
    if n_gpus <= per_node:
        return Topology(spec, 1, n_gpus, file=f"<nccl_validation:{key}>")
    if n_gpus % per_node or n_gpus // per_node > spec.fabric.max_nodes:
        raise ValueError(f"{n_gpus} GPUs do not fit {spec.name} ({per_node} per node, {spec.fabric.max_nodes} nodes)")
    return Topology(spec, n_gpus // per_node, per_node, file=f"<nccl_validation:{key}>")


def _has(text: str, *words: str) -> bool:
    low = text.lower()
    return all(w.lower() in low for w in words)


TOPOLOGY_RULES: tuple[tuple[str, Callable[[pd.Series], bool]], ...] = (
    ("gcp-a3-mega", lambda r: _has(r["gpu"], "A3 Mega") or _has(r["interconnect"], "TCPXO")),
    ("h100-pcie-nvlink-bridge", lambda r: _has(r["gpu"], "H100", "PCIe") and _has(r["interconnect"], "NVLink bridge")),
    ("h100-1gpu-4nic-roce", lambda r: _has(r["gpu"], "H100") and str(r["gpus_per_node"]).strip() == "1"
     and _has(r["interconnect"], "4 NICs")),
    ("a100-2nic-hdr", lambda r: _has(r["gpu"], "A100") and _has(r["interconnect"], "2x IB 200")),
    ("dgx-a100-superpod", lambda r: _has(r["gpu"], "A100") and str(r["n_nodes"]).strip() == "1"
     and (_has(r["interconnect"], "NVLink3") or _has(r["interconnect"], "NVSwitch"))),
    ("dgx-h100-superpod", lambda r: _has(r["gpu"], "H100") and not _has(r["gpu"], "PCIe")
     and str(r["n_nodes"]).strip() == "1" and _has(r["interconnect"], "NVLink4")),
)
"""(topology, predicate on an nccl.csv row), tried in order; the first match is used."""


def topology_for(row: pd.Series) -> str | None:
    """Topology name (bundled or :data:`EXTRA_TOPOLOGIES` key) for an nccl.csv row, or None."""
    for key, rule in TOPOLOGY_RULES:
        if rule(row):
            return key
    return None


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


def _bus_factor(kind: str, n: int) -> float:
    if kind == "all_reduce":
        return 2 * (n - 1) / n
    if kind in ("all_gather", "reduce_scatter", "all_to_all"):
        return (n - 1) / n
    return 1.0


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
            busbw = size[0] / (t_us * 1e-6) * _bus_factor(kind, n[0]) / 1e9
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
            self.cache[(key, n)] = build_topology(key, n)
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
