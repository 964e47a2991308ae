"""NCCL's tuner: algorithm x protocol bandwidth and latency tables and the choice per call.

Implements ``nccl-model.md`` §5-§7 (``ncclTopoTuneModel``, ``ncclTopoGetAlgoTime``,
``topoGetAlgoInfo``) from the search results of :mod:`.search` and the constants of
``tables.yaml``. For a call of S bytes (the nccl-tests size, §1) NCCL estimates

    t = L + S / (1000 B')   [µs, with L in µs and B' in GB/s]

for every enabled (algorithm, protocol) pair and runs the fastest; it then shrinks the channel
and thread counts for small S (§7.2), which its estimate does not see. all_to_all and
send_recv are not tuned by NCCL and go to :mod:`.p2p`.

Assumptions beyond the spec:
- The plain TREE pattern (x 0.85) is taken for cc >= 90 (Hopper falls back to it), the
  BALANCED_TREE for older GPUs; this reproduces §8.
- Ring broadcast/reduce: every channel is taken to have the same GPU order, so one step's
  latency is added: the intra-node hwLat on one node, the inter-node latency across nodes.
- LL128 is on when the ring's intra-node hops are NVLink (or, with one GPU per node, when the
  node is not PCIe-only), on sm70 and newer.
- PAT needs a host network: off for GPUDirect-TCPX/TCPXO (device-offload "unpack" NICs).
- CollNet uses the ring's graph (see :mod:`.search`).
- ``n_inter`` for patterns §9 does not name: ring broadcast/reduce m-1, NVLS/CollNet 1, PAT
  floor(log2 m).
- A communicator of one rank costs nothing (time 0, infinite bandwidth).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from simulator.core.errors import InputError
from simulator.network.nccl import p2p
from simulator.network.nccl.choice import ALGORITHMS, KINDS, PROTOCOLS, Choice
from simulator.network.nccl.search import (
    Graph,
    intra_uses_nvlink,
    nvls_channels,
    runtime_channels,
    search,
)
from simulator.network.nccl.system import NcclSystem
from simulator.network.nccl.tables import Tables, for_version

P2P_KINDS = ("all_to_all", "send_recv")

_GRAPH = {
    "tree": "tree",
    "ring": "ring",
    "collnet_direct": "collnet",
    "collnet_chain": "collnet",
    "nvls": "nvls",
    "nvls_tree": "nvls",
    "pat": "ring",
}
_BY_KIND = {
    "all_reduce": ("tree", "ring", "collnet_direct", "collnet_chain", "nvls", "nvls_tree"),
    "all_gather": ("ring", "pat", "nvls", "collnet_direct"),
    "reduce_scatter": ("ring", "pat", "nvls", "collnet_direct"),
    "broadcast": ("ring",),
    "reduce": ("ring",),
}
_SIMPLE_ONLY = ("collnet_direct", "collnet_chain", "nvls", "nvls_tree", "pat")
_DEVICE_OFFLOAD = ("tcpx", "tcpxo")


@dataclass(frozen=True)
class Entry:
    """One cell of NCCL's per-communicator tables for a collective.

    Attributes:
        algorithm, protocol: the pair.
        latency_us: L[c][a][p], µs (k = 1, before the size-dependent ring plateau).
        bandwidth_GBps: B[c][a][p], algorithm bandwidth, GB/s (before the tree correction).
        n_inter: inter-node steps (see :class:`Choice`).
    """

    algorithm: str
    protocol: str
    latency_us: float
    bandwidth_GBps: float
    n_inter: int


def nsteps(kind: str, n: int) -> int:
    """NCCL's step count: 2(n-1) all-reduce, n-1 all-gather / reduce-scatter, n otherwise."""
    if kind == "all_reduce":
        return 2 * (n - 1)
    if kind in ("all_gather", "reduce_scatter"):
        return n - 1
    return n


def _log2_nodes(m: int) -> int:
    return int(math.floor(math.log2(m))) if m >= 1 else 0


def _ll128_enabled(system: NcclSystem) -> bool:
    if system.sm < 70:
        return False
    if system.gpus_per_node <= 1:
        return system.scale_up != "pcie"
    return intra_uses_nvlink(system)


def _algorithm_enabled(system: NcclSystem, t: Tables, kind: str, algorithm: str, graphs: dict[str, Graph]) -> bool:
    """§7.1 availability of ``algorithm`` for ``kind`` (hardware, version, graph found)."""
    if algorithm not in _BY_KIND[kind] or _GRAPH[algorithm] not in graphs:
        return False
    m, g = system.n_nodes, system.gpus_per_node
    sel = t.selection
    if algorithm in ("nvls", "nvls_tree"):
        if graphs["nvls"].channels < sel["nvls_min_channels_version"]["value"]:
            return False
        if algorithm == "nvls_tree":
            return m > 1
        if kind != "all_reduce" and g > sel["nvls_local_ranks_max"]["value"]:
            return False
        return m == 1 or system.collnet
    if algorithm == "collnet_direct":
        return system.scale_up == "nvswitch" and g <= sel["collnet_direct_local_ranks_max"]["value"]
    if algorithm == "pat":
        return (
            g == 1
            and m > 1
            and system.sm >= sel["pat_min_cc"]["value"]
            and t.at_least(sel["pat_min_version"]["value"])
            and system.transport not in _DEVICE_OFFLOAD
        )
    return True


def _protocol_enabled(system: NcclSystem, algorithm: str, protocol: str) -> bool:
    if algorithm in _SIMPLE_ONLY:
        return protocol == "Simple"
    return protocol != "LL128" or _ll128_enabled(system)


def _per_channel_bw(system: NcclSystem, t: Tables, kind: str, algorithm: str, graph: Graph) -> float:
    """§6.1 step 1: the bandwidth b of one channel, GB/s."""
    m, g = system.n_nodes, system.gpus_per_node
    c = graph.channels
    intra, inter = graph.bw_intra_GBps, graph.bw_inter_GBps
    eta = t.nvls_efficiency(system.sm)
    new = t.at_least("2.28")
    if algorithm == "nvls" and kind == "all_reduce":
        return min(2 * eta * intra * (c - 1) / c, inter) if new else min(intra, inter)
    if algorithm == "nvls":
        if new:
            return min(eta * intra * (c - 1) / c * (g - 1) / g, inter)
        return min(intra * (g - 1) / g, t.bandwidth["protocol"]["nvls_all_gather_inter"] * inter)
    if algorithm == "nvls_tree":
        if not new:
            return min(intra, inter if m <= 2 else inter / 2)
        b = min(2 * eta * intra * (c - 1) / c, inter * (2 if m <= 2 else 1))
        cap = t.cap("per_ch_max_nvls_tree_GBps", system.sm, m)
        return min(b, cap) if cap > 0 else b
    return intra if (m <= 2 or algorithm.startswith("collnet")) else inter


def _bus_bw(system: NcclSystem, t: Tables, kind: str, algorithm: str, protocol: str, graph: Graph) -> float:
    """§6.1 steps 2-3: busBw of (algorithm, protocol), GB/s."""
    m, g, sm = system.n_nodes, system.gpus_per_node, system.sm
    c = graph.channels
    f = t.bandwidth["protocol"]
    bus = c * _per_channel_bw(system, t, kind, algorithm, graph)
    ll_max = t.ll_max(sm, m, system.cpu)
    if algorithm == "ring" and protocol == "LL":
        bus = min(ll_max, f["ring_ll"] * bus)
    elif algorithm == "ring" and protocol == "LL128":
        bus = min(f["ring_ll128"] * bus, c * t.cap("per_ch_max_ring_ll128_GBps", sm, m))
    elif algorithm == "tree" and kind == "all_reduce":
        bus = min(f["tree_all_reduce"] * bus, c * t.cap("per_ch_max_tree_GBps", sm, m))
        if protocol == "LL":
            bus = min(bus / f["tree_ll_divisor"], ll_max)
        elif protocol == "LL128":
            ratio = f["tree_ll128_one_node"] if m == 1 else f["tree_ll128_multi_node"]
            bus = min(bus * ratio, c * t.cap("per_ch_max_tree_ll128_GBps", sm, m))
    if algorithm == "tree" and sm >= t.bandwidth["tree_pattern_factor"]["from_cc"]:
        bus *= t.bandwidth["tree_pattern_factor"]["value"]
    if algorithm == "pat":
        bus *= t.bandwidth["pat_factor"]["value"]
    if algorithm == "collnet_direct":
        if kind == "all_reduce":
            r = g / c
            bus /= r - (r - 1) / 2
            if sm >= 90:
                bus *= t.bandwidth["collnet_direct_hopper_factor"]["value"]
        else:
            bus = g * min(graph.bw_intra_GBps, f["collnet_direct_inter"] * graph.bw_inter_GBps)
    if kind != "all_reduce" and algorithm in ("nvls", "collnet_direct") and m > 1:
        if not (system.collnet and g <= graph.channels):
            return 0.0
    return bus


def _alg_bw(system: NcclSystem, t: Tables, kind: str, algorithm: str, protocol: str, graph: Graph) -> float:
    """§6.1 step 4: busBw -> algorithm bandwidth B, GB/s."""
    bus = _bus_bw(system, t, kind, algorithm, protocol, graph)
    n = system.n_ranks
    if kind in ("all_gather", "reduce_scatter") and algorithm != "ring":
        return bus
    if algorithm == "ring":
        return bus * n / nsteps(kind, n)
    if algorithm in ("nvls", "nvls_tree"):
        ratio = t.bandwidth["alg_ratio"]["nvls"]
        return bus * (ratio if ratio > 0 else n / nsteps(kind, n))
    return bus * t.bandwidth["alg_ratio"]["tree"]


def _latency(system: NcclSystem, t: Tables, kind: str, algorithm: str, protocol: str) -> tuple[float, int]:
    """§6.2 latency L (µs, k = 1, before the ring plateau) and the inter-node step count."""
    m, g, n = system.n_nodes, system.gpus_per_node, system.n_ranks
    simple = protocol == "Simple"
    intra_hw = "nvlink" if intra_uses_nvlink(system) else "pci"
    intra = t.hw_lat(intra_hw, algorithm, protocol)
    inter = t.hw_lat("net", "tree" if g == 1 else algorithm, protocol) + system.latency_inter_us * (2 if simple else 1)
    lat = t.base_lat(algorithm, protocol)
    logm = _log2_nodes(m)
    if algorithm == "ring" and kind in ("all_reduce", "all_gather", "reduce_scatter"):
        steps = t.latency["ring_overhead_steps"]["value"][2 if simple else 0]
        overhead = 0.0 if m == 1 else t.net_overhead_us(system.cpu) * steps
        n_inter = 0 if m == 1 else (2 * (m - 1) if kind == "all_reduce" else m - 1)
        return lat + (nsteps(kind, n) - n_inter) * max(intra, overhead) + n_inter * inter, n_inter
    if algorithm == "ring":
        return lat + (intra if m == 1 else inter), m - 1
    if algorithm == "tree":
        return lat + 2 * ((g - 1) * intra + logm * inter), 2 * logm
    if algorithm == "collnet_direct":
        per_gpu = t.latency["collnet_direct_per_gpu_us"]["value"]
        return lat + 2 * (min(1, g - 1) * intra + per_gpu * (g - 1)) + inter, 1
    if algorithm == "collnet_chain":
        return lat + 2 * (g - 1) * intra + inter, 1
    if algorithm == "nvls":
        return lat + intra + (inter if m > 1 else 0.0), 1 if m > 1 else 0
    if algorithm == "nvls_tree":
        return lat + intra + 2 * logm * inter, 2 * logm
    pat = t.latency["pat"]
    return lat + logm * inter / pat["inter_divisor"] + pat["per_rank_us"] * n, logm


@functools.lru_cache(maxsize=8192)
def entries(system: NcclSystem, kind: str) -> tuple[Entry, ...]:
    """NCCL's B and L rows for a tuned ``kind`` (not all_to_all / send_recv): every enabled
    (algorithm, protocol) with B > 0, size-independent (the tuning log's values)."""
    t = for_version(system.version)
    graphs = search(system)
    rows = []
    for algorithm in ALGORITHMS:
        if not _algorithm_enabled(system, t, kind, algorithm, graphs):
            continue
        graph = graphs[_GRAPH[algorithm]]
        for protocol in PROTOCOLS:
            if not _protocol_enabled(system, algorithm, protocol):
                continue
            bw = _alg_bw(system, t, kind, algorithm, protocol, graph)
            if bw <= 0:
                continue
            lat, n_inter = _latency(system, t, kind, algorithm, protocol)
            rows.append(Entry(algorithm, protocol, lat, bw, n_inter))
    return tuple(rows)


@functools.lru_cache(maxsize=4096)
def _comm(system: NcclSystem) -> tuple[int, int, float]:
    """(comm->nChannels, NVLS channels, C_ring b_intra in GB/s) of the communicator."""
    graphs = search(system)
    ring = graphs["ring"]
    nvls = nvls_channels(system, graphs) if "nvls" in graphs else 0
    return runtime_channels(system, graphs), nvls, ring.channels * ring.bw_intra_GBps


def _max_threads(t: Tables, algorithm: str, protocol: str, ring_bw: float) -> int:
    sel = t.selection["max_threads"]
    if algorithm in ("tree", "pat"):
        return sel["tree_pat"]
    if protocol == "Simple" and ring_bw <= sel["simple_slow_GBps"]:
        return sel["simple_slow"]
    return sel[protocol]


def _launch(system: NcclSystem, t: Tables, algorithm: str, protocol: str, nbytes: float) -> tuple[int, int]:
    """§7.2 channels and threads the kernel runs with for ``nbytes``."""
    n_channels, n_nvls, ring_bw = _comm(system)
    nt = _max_threads(t, algorithm, protocol, ring_bw)
    if algorithm in ("nvls", "nvls_tree"):
        return n_nvls, nt
    nc = n_channels
    if algorithm not in ("ring", "tree"):
        return nc, nt
    threshold = t.selection["thread_threshold_bytes"][protocol]
    if protocol == "LL" and algorithm == "ring":
        threshold *= system.n_ranks
    while nbytes < nc * nt * threshold and nc >= 2:
        nc -= 1
    while nbytes < nc * nt * threshold and nt % 128 == 0:
        nt //= 2
    return nc, nt


def _corrected_bw(system: NcclSystem, t: Tables, kind: str, entry: Entry, nbytes: float) -> float:
    """§6.3 B': B times the tree correction factor where it applies."""
    if kind != "all_reduce":
        return entry.bandwidth_GBps
    if entry.algorithm == "tree":
        return entry.bandwidth_GBps * t.tree_correction(entry.protocol, nbytes)
    blackwell_x86 = system.sm >= 100 and system.cpu in ("intel", "amd")
    if entry.algorithm == "nvls_tree" and blackwell_x86 and t.bandwidth["tree_correction"]["nvls_tree_blackwell_x86"]:
        return entry.bandwidth_GBps * t.tree_correction(entry.protocol, nbytes)
    return entry.bandwidth_GBps


def _plateau(system: NcclSystem, t: Tables, kind: str, entry: Entry, nbytes: float) -> float:
    """§6.3 ring plateau factor on L (Ring Simple all-reduce across nodes, large per-channel sizes)."""
    if not (entry.algorithm == "ring" and entry.protocol == "Simple" and kind == "all_reduce" and system.n_nodes > 1):
        return 1.0
    rule = t.latency["ring_plateau"]
    n_channels = _comm(system)[0]
    if nbytes / (n_channels * system.n_ranks) < rule["min_bytes_per_channel_rank"]:
        return 1.0
    return rule["factor_cc80"] if system.sm >= 80 else rule["factor_below"]


def _time_us(system: NcclSystem, t: Tables, kind: str, entry: Entry, nbytes: float) -> float:
    bw = _corrected_bw(system, t, kind, entry, nbytes)
    return entry.latency_us * _plateau(system, t, kind, entry, nbytes) + nbytes / (1000.0 * bw)


def _choice(system: NcclSystem, t: Tables, kind: str, entry: Entry, nbytes: float) -> Choice:
    bw = _corrected_bw(system, t, kind, entry, nbytes)
    lat = entry.latency_us * _plateau(system, t, kind, entry, nbytes)
    channels, threads = _launch(system, t, entry.algorithm, entry.protocol, nbytes)
    return Choice(
        kind=kind,
        algorithm=entry.algorithm,
        protocol=entry.protocol,
        channels=channels,
        threads=threads,
        latency_us=lat,
        bandwidth_GBps=bw,
        time_us=lat + nbytes / (1000.0 * bw),
        n_inter=entry.n_inter if system.n_nodes > 1 else 0,
    )


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InputError(f"unknown collective {kind!r}; use one of {', '.join(KINDS)}", field="kind")


def _single_rank(kind: str) -> Choice:
    algorithm = "p2p" if kind in P2P_KINDS else "ring"
    return Choice(kind, algorithm, "Simple", 1, 0, 0.0, math.inf, 0.0, 0)


def candidates(system: NcclSystem, kind: str, nbytes: float) -> list[Choice]:
    """Every enabled (algorithm, protocol) for a ``kind`` call of ``nbytes`` (S, §1) with NCCL's
    estimate; all_to_all / send_recv come from :mod:`.p2p`. InputError for an unknown kind or
    NCCL version."""
    _check_kind(kind)
    if system.n_ranks <= 1:
        return [_single_rank(kind)]
    if kind in P2P_KINDS:
        return p2p.candidates(system, kind, nbytes)
    t = for_version(system.version)
    return [_choice(system, t, kind, e, nbytes) for e in entries(system, kind)]


def _available(options) -> str:
    return ", ".join(f"{c.algorithm}/{c.protocol}" for c in options) or "none"


def choose(
    system: NcclSystem, kind: str, nbytes: float, algorithm: str | None = None, protocol: str | None = None
) -> Choice:
    """NCCL's pick for a ``kind`` call of ``nbytes``: the least estimated time, or the forced
    ``algorithm`` and/or ``protocol`` (InputError naming the field, listing what is available).
    all_to_all / send_recv follow :func:`.p2p.choose` (a size threshold, not a time argmin)."""
    _check_kind(kind)
    if system.n_ranks <= 1:
        return _single_rank(kind)
    if kind in P2P_KINDS:
        return p2p.choose(system, kind, nbytes, algorithm, protocol)
    t = for_version(system.version)
    rows = forced(entries(system, kind), algorithm, protocol)
    best = min(rows, key=lambda e: _time_us(system, t, kind, e, nbytes))
    return _choice(system, t, kind, best, nbytes)


def forced(options, algorithm: str | None = None, protocol: str | None = None) -> list:
    """``options`` (Choices or Entries) matching the forced algorithm / protocol; InputError
    naming the field and listing what is available if none does."""
    options = list(options)
    if algorithm is not None:
        matching = [c for c in options if c.algorithm == algorithm]
        if not matching:
            raise InputError(f"{algorithm!r} is not available here; available: {_available(options)}", field="algorithm")
        options = matching
    if protocol is not None:
        matching = [c for c in options if c.protocol == protocol]
        if not matching:
            raise InputError(f"{protocol!r} is not available here; available: {_available(options)}", field="protocol")
        options = matching
    return options
