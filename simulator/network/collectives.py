"""Collective algorithms mapped onto topology paths.

A collective (all-reduce, all-gather, ...) over a *class* of identical groups of
ranks is turned into a :class:`CollectivePlan`: a sequence of :class:`Phase` s,
each the bytes it puts on every link (summed over all groups of the class, so
groups that share a link slow each other) and its latency. Phases run one
after another; a phase alone takes::

    phase time = latency_s + max over links L of link_bytes[L] / effective_bandwidth[L]

and a plan alone takes ``overhead_s + sum of its phase times``. Inside a phase the
steps of the algorithm are pipelined (NCCL splits buffers into chunks), so the
bandwidth term uses the total bytes of the phase and the latency term adds one
path latency per algorithm step.

Buffer sizes follow nccl-tests: ``bytes`` (S) is the per-rank buffer: the
all-reduce buffer, the *gathered* (output) buffer of all-gather, the *input*
buffer of reduce-scatter, the whole send buffer of all-to-all (S/n to each
peer), the broadcast buffer, the message of send/recv. ``n`` is the group size.

Algorithms (link loads are exact for the schedule described; "hop" is a topology
path between two GPUs):

``ring``
    Ranks in group order form a ring. When the group spans several nodes, NCCL
    runs several rings (channels) so that inter-node traffic leaves through
    every NIC; we model ``C`` channels, ``C`` = the number of distinct NIC rails
    the group has on each node (1 for one GPU per node, or one NIC per node),
    each carrying S/C. Channel ``c`` rotates each node's run of ranks so that it
    starts at the node's rail-``c`` GPU; the inter-node hop from the run's last
    GPU goes over NVLink to that rail GPU and then out of its NIC to the next
    node's rail-``c`` GPU (PXN-style, as NCCL >= 2.12 does on rail-optimized
    fabrics), so every inter-node hop of a channel stays on one rail. Without
    an NVLink path for the relay (PCIe nodes) the hop leaves through the last
    GPU's own NIC.
    All-reduce: 2(n-1) steps of S/(nC) per hop; all-gather and reduce-scatter:
    n-1 steps; broadcast: a pipelined chain from the first rank of the group,
    n-1 hops of S/C each. On a uniform ring (bandwidth B, latency a per hop, one
    channel) this gives exactly ``2(n-1)/n * S/B + 2(n-1) a`` for all-reduce and
    ``(n-1)/n * S/B + (n-1) a`` for all-gather.
``tree`` (all-reduce, group on > 1 node)
    NCCL's double binary tree over nodes. Per channel (rail) the data is halved
    over two complementary binary trees (NCCL's numbering: tree 2 is tree 1
    mirrored for an even node count, shifted by one for an odd one), so each
    node is a leaf in one of them. Inside a node, the group's GPUs form a chain
    ending at the node's rail GPU. Reduction goes up, broadcast comes down,
    pipelined: each tree edge carries S/(2C) each way. A node is inner (two
    children) in one tree and a leaf in the other, so its NIC sends
    3S/(2C) + S/(2C) = 2S/C per channel, like the ring's 2(n-1)/n S/C; each
    chain link carries S/C each way.
    Latency: 2 x (tree depth x slowest inter-node hop + (g-1) x slowest chain hop),
    depth ~ log2(nodes).
``hierarchical`` (group on > 1 node with the same g > 1 GPUs on every node)
    All-reduce: intra-node ring reduce-scatter (g-1 steps of S/g), then on each
    of the g positions a ring all-reduce of the S/g shard across the m nodes
    (2(m-1) steps of S/(g m); the g rings run in parallel on their own rails),
    then intra-node ring all-gather (g-1 steps of S/g): three phases.
    All-gather: inter-node all-gather (m-1 steps of S/n), then intra-node
    (g-1 steps of S/g). Reduce-scatter: the reverse order.
``direct``
    Every rank sends straight to its peers in one step: all-to-all (S/n to each
    peer, the only algorithm for it), and, inside one node only (NVSwitch),
    one-shot all-reduce (S to each peer), all-gather and reduce-scatter (S/n to
    each peer) and broadcast (S from the root to each peer).
``p2p`` (send_recv)
    Each (src, dst) pair sends S over its path in one phase.
``auto``
    The valid algorithm with the least standalone time under the given
    efficiency (as NCCL's tuner picks by size); the plan records which. Direct
    all-gather, reduce-scatter and broadcast are left out (NCCL has none; with
    the same bytes per link as the ring and one latency step they would always
    win on NVSwitch here); ask for them by name.

Limitations: no in-network reduction (SHARP/NVLS), no per-chunk protocol
(LL/LL128/Simple) differences, and the small-message regime is only as good as
the latency figures of the topology plus ``overhead_s``. Direct all-to-all
across nodes follows the topology's routes (no PXN relay), so cross-rail
traffic climbs to the spine/core. All pipelined steps of a phase are one flow:
the model does not stall a ring on its slowest member. A group of one rank
moves nothing: its plan has no phases and takes 0 s.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulator.core.errors import InputError
from simulator.network.topology import LINK_KINDS

KINDS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "send_recv")
"""Collective kinds :func:`plan_collective` knows."""

ALGORITHMS = ("ring", "tree", "hierarchical", "direct", "p2p")
"""Algorithm names (plus ``"auto"``)."""

_VALID_ALGORITHMS = {
    "all_reduce": ("ring", "tree", "hierarchical", "direct"),
    "all_gather": ("ring", "hierarchical", "direct"),
    "reduce_scatter": ("ring", "hierarchical", "direct"),
    "all_to_all": ("direct",),
    "broadcast": ("ring", "direct"),
    "send_recv": ("p2p",),
}

_AUTO_SKIPS = {("all_reduce", "direct"), ("all_gather", "direct"), ("reduce_scatter", "direct"), ("broadcast", "direct")}
# NCCL's tuner picks among ring and tree (and NVLS/CollNet, not modelled) and has no
# direct (one-shot) variants of these; on NVSwitch this model would otherwise prefer
# them for small messages (same or fewer bytes, one latency step).


# --------------------------------------------------------------------------- efficiency


@dataclass(frozen=True)
class NetworkEfficiency:
    """Achieved fraction of nominal link bandwidth, by link kind, and a launch overhead.

    These are the only free parameters of the network model; a calibration fits
    them against nccl-tests measurements. The simulator's values come from
    :mod:`simulator.inputs.efficiency_file`; this class's defaults (every fraction 1.0, no
    overhead) give the ideal, nominal-bandwidth time (:data:`NOMINAL`).

    Attributes:
        nvlink, pcie, nic, fabric: fraction in (0, 1] of the nominal bandwidth a
            collective achieves on links of that kind (protocol headers, chunking,
            kernel limits).
        overhead_s: fixed time added once per collective (kernel launch and
            synchronisation), seconds, >= 0.

    Raises:
        InputError: a fraction outside (0, 1] or a negative overhead.
    """

    nvlink: float = 1.0
    pcie: float = 1.0
    nic: float = 1.0
    fabric: float = 1.0
    overhead_s: float = 0.0

    def __post_init__(self) -> None:
        for kind in LINK_KINDS:
            value = getattr(self, kind)
            if not (isinstance(value, (int, float)) and 0.0 < value <= 1.0):
                raise InputError(
                    f"{value!r} is not a bandwidth fraction; use a number in (0, 1]", field=f"efficiency.{kind}"
                )
        if not (isinstance(self.overhead_s, (int, float)) and math.isfinite(self.overhead_s) and self.overhead_s >= 0):
            raise InputError(f"{self.overhead_s!r} is not a time; use seconds >= 0", field="efficiency.overhead_s")

    def factor(self, kind: str) -> float:
        """Bandwidth fraction of one link kind; raises :class:`InputError` for an unknown kind."""
        if kind not in LINK_KINDS:
            raise InputError(f"unknown link kind {kind!r}; use one of {', '.join(LINK_KINDS)}", field="kind")
        return float(getattr(self, kind))

    def link_factors(self, topology: Any) -> np.ndarray:
        """Bandwidth fraction of every link of ``topology``, by edge id (cached per topology)."""
        return _planner_for(topology).link_factors(self)

    def effective_bandwidth(self, topology: Any) -> np.ndarray:
        """Achieved bandwidth of every link of ``topology``, bytes/s, by edge id (cached; do not modify)."""
        return _planner_for(topology).effective_bandwidth(self)


NOMINAL = NetworkEfficiency()
"""Nominal bandwidth everywhere, no overhead: the ideal time (used when no efficiency is given)."""


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True, eq=False)
class Phase:
    """One step-group of a collective whose transfers run at the same time.

    Attributes:
        link_ids: edge ids the phase uses (distinct, int array).
        link_bytes: bytes over each of those links in this phase, summed over all
            groups of the class (float array, same length).
        latency_s: sum of the per-step latencies on the slowest path, seconds.
    """

    link_ids: np.ndarray
    link_bytes: np.ndarray
    latency_s: float

    def __post_init__(self) -> None:
        # Plans are cached and shared: their arrays must not change under other users.
        self.link_ids.flags.writeable = False
        self.link_bytes.flags.writeable = False

    def time_s(self, effective_bandwidth_Bps: np.ndarray) -> float:
        """Standalone time: ``latency_s + max(link_bytes / effective_bandwidth[link_ids])``, seconds."""
        if self.link_ids.size == 0:
            return self.latency_s
        return self.latency_s + float(np.max(self.link_bytes / effective_bandwidth_Bps[self.link_ids]))


@dataclass(frozen=True, eq=False)
class CollectivePlan:
    """A collective over a class of identical groups, as phases on topology links.

    Attributes:
        kind: one of :data:`KINDS`.
        algorithm: the algorithm used (never ``"auto"``).
        bytes: per-rank buffer size S, bytes (nccl-tests convention, see module doc).
        group_size: ranks per group (2 for send_recv).
        phases: run one after another.
        n_groups: how many groups the link loads cover.
        topology: the topology the link ids refer to.
    """

    kind: str
    algorithm: str
    bytes: float
    group_size: int
    phases: tuple[Phase, ...]
    n_groups: int = 1
    topology: Any = field(default=None, repr=False, compare=False)
    _times: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def standalone_time_s(self, efficiency: NetworkEfficiency | None = None) -> float:
        """Time of the collective alone on the network, seconds.

        ``efficiency.overhead_s + sum(phase.time_s)``; 0 for a plan without
        phases (a group of one rank). Cached per efficiency.
        """
        eff = efficiency or NOMINAL
        cached = self._times.get(eff)
        if cached is not None:
            return cached
        if not self.phases:
            total = 0.0
        else:
            bw = eff.effective_bandwidth(self.topology)
            total = eff.overhead_s + sum(p.time_s(bw) for p in self.phases)
        self._times[eff] = total
        return total

    @property
    def total_link_bytes(self) -> float:
        """Bytes summed over all links and phases (a link-hop count of traffic)."""
        return float(sum(p.link_bytes.sum() for p in self.phases))


def bus_bandwidth_Bps(kind: str, n: int, bytes: float, time_s: float) -> float:
    """nccl-tests bus bandwidth, bytes/s.

    ``algbw = bytes / time_s``; busbw = algbw x 2(n-1)/n for all-reduce,
    x (n-1)/n for all-gather, reduce-scatter and all-to-all, x 1 for broadcast
    and send/recv.

    Raises:
        InputError: unknown kind, n < 1, or time_s <= 0.
    """
    if kind not in KINDS:
        raise InputError(f"unknown collective {kind!r}; use one of {', '.join(KINDS)}", field="kind")
    if n < 1:
        raise InputError(f"group size {n} must be >= 1", field="n")
    if not time_s > 0:
        raise InputError(f"time {time_s!r} must be > 0 seconds", field="time_s")
    algbw = bytes / time_s
    if kind == "all_reduce":
        return algbw * 2 * (n - 1) / n
    if kind in ("all_gather", "reduce_scatter", "all_to_all"):
        return algbw * (n - 1) / n
    return algbw


# --------------------------------------------------------------------------- planner


def _btree_parent(rank: int, n: int) -> int:
    """Parent of ``rank`` in NCCL's binary tree over ranks 0..n-1 (-1 for the root 0).

    The parent clears the lowest set bit of ``rank`` and sets the next one up,
    falling back to just clearing it when that parent would not exist.
    """
    if rank == 0:
        return -1
    bit = rank & -rank
    up = (rank ^ bit) | (bit << 1)
    return up if up < n else rank ^ bit


def double_tree_parents(n: int) -> tuple[list[int], list[int]]:
    """Parents (-1 = root) of each of n ranks in NCCL's two complementary binary trees.

    Tree 2 is tree 1 mirrored (rank -> n-1-rank) when n is even and shifted by one
    when n is odd, so that the inner ranks of one tree are leaves of the other.
    """
    t1 = [_btree_parent(r, n) for r in range(n)]
    t2 = []
    for r in range(n):
        if n % 2 == 0:
            p = _btree_parent(n - 1 - r, n)
            t2.append(-1 if p < 0 else n - 1 - p)
        else:
            p = _btree_parent((r - 1) % n, n)
            t2.append(-1 if p < 0 else (p + 1) % n)
    return t1, t2


def _depth(parents: list[int]) -> int:
    depth = 0
    for r in range(len(parents)):
        d, p = 0, parents[r]
        while p >= 0:
            d, p = d + 1, parents[p]
        depth = max(depth, d)
    return depth


class _Hops:
    """Collects the hops of a phase (src -> dst, optionally relayed through ``via``) and turns
    them into link loads in one vectorised pass over the topology's routes."""

    __slots__ = ("planner", "src", "dst", "via", "_resolved")

    def __init__(self, planner: "CollectivePlanner"):
        self.planner = planner
        self.src: list[int] = []
        self.dst: list[int] = []
        self.via: list[int] = []
        self._resolved: tuple[np.ndarray, float] | None = None

    def add(self, src: int, dst: int, via: int | None = None) -> None:
        self.src.append(src)
        self.dst.append(dst)
        self.via.append(-1 if via is None else via)
        self._resolved = None

    def __bool__(self) -> bool:
        return bool(self.src)

    def _resolve(self) -> tuple[np.ndarray, float]:
        """(number of hops crossing each link, the largest hop latency)."""
        if self._resolved is None:
            src, dst, via = (np.array(x, dtype=np.intp) for x in (self.src, self.dst, self.via))
            relayed = np.flatnonzero(via >= 0)
            # a relayed hop is two legs, src -> via and via -> dst, of the same hop
            a = np.concatenate([src, via[relayed]])
            b = np.concatenate([np.where(via >= 0, via, dst), dst[relayed]])
            hop = np.concatenate([np.arange(src.size), relayed])
            ids, leg, leg_latency = self.planner.paths_many(a, b)
            counts = np.bincount(ids, minlength=self.planner.n_links)
            hop_latency = np.bincount(hop, weights=leg_latency, minlength=src.size)
            self._resolved = (counts, float(hop_latency.max()) if src.size else 0.0)
        return self._resolved

    @property
    def latency_max_s(self) -> float:
        return self._resolve()[1]

    def phase(self, bytes_per_hop: float, steps: int) -> Phase:
        """Every hop carries ``bytes_per_hop`` in each of ``steps`` pipelined steps."""
        counts, latency = self._resolve()
        used = np.flatnonzero(counts)
        return Phase(used, counts[used] * float(bytes_per_hop * steps), steps * latency)


class CollectivePlanner:
    """Builds and caches :class:`CollectivePlan` s for one topology.

    Use :func:`plan_collective`, which keeps one planner per topology.
    """

    def __init__(self, topology: Any):
        self.topology = topology
        self.n_links = len(topology.bandwidth_Bps)
        self._plans: dict[tuple, CollectivePlan] = {}
        # By groups, whatever the buffer size: the checked groups and valid algorithms, and each
        # algorithm's phases for a 1-byte buffer (every phase's link bytes are linear in the size).
        self._checked: dict[tuple, tuple] = {}
        self._unit_phases: dict[tuple, tuple[Phase, ...]] = {}
        self._rail: list[int] | None = None
        self._factors: dict[NetworkEfficiency, np.ndarray] = {}
        self._bandwidth: dict[NetworkEfficiency, np.ndarray] = {}
        self._kind_codes: np.ndarray | None = None

    # -- efficiency -------------------------------------------------------------------
    def link_factors(self, eff: NetworkEfficiency) -> np.ndarray:
        f = self._factors.get(eff)
        if f is None:
            if self._kind_codes is None:
                kinds = list(self.topology.link_kind)
                for k in set(kinds) - set(LINK_KINDS):
                    raise InputError(f"unknown link kind {k!r}; use one of {', '.join(LINK_KINDS)}", field="kind")
                self._kind_codes = np.array([LINK_KINDS.index(k) for k in kinds], dtype=np.intp)
            f = np.array([eff.factor(k) for k in LINK_KINDS])[self._kind_codes]
            f.flags.writeable = False
            self._factors[eff] = f
        return f

    def effective_bandwidth(self, eff: NetworkEfficiency) -> np.ndarray:
        bw = self._bandwidth.get(eff)
        if bw is None:
            bw = np.asarray(self.topology.bandwidth_Bps, dtype=float) * self.link_factors(eff)
            bw.flags.writeable = False
            self._bandwidth[eff] = bw
        return bw

    # -- geometry ---------------------------------------------------------------------
    def paths_many(self, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Routes of many GPU pairs: (edge ids, pair index of each id, latency of each pair)."""
        topo = self.topology
        if hasattr(topo, "path_ids_many"):
            ids, pair = topo.path_ids_many(src, dst)
            latency = np.bincount(pair, weights=np.asarray(topo.latency_s)[ids], minlength=src.size)
            return ids, pair, latency
        paths = [topo.path_ids(int(a), int(b)) for a, b in zip(src, dst)]
        ids = np.fromiter(itertools.chain.from_iterable(paths), dtype=np.intp)
        pair = np.repeat(np.arange(len(paths)), [len(p) for p in paths])
        latency = np.array([topo.path_latency_s(int(a), int(b)) for a, b in zip(src, dst)], dtype=float)
        return ids, pair, latency

    def rail(self, gpu: int) -> int:
        """Index of the NIC rail a GPU's inter-node traffic leaves through (0 if none).

        Found from the first ``nic`` link on the path to the same local GPU of the
        next node; rails are numbered per node in order of local GPU index.
        """
        if self._rail is None and hasattr(self.topology, "nic_of"):
            topo = self.topology
            self._rail = [topo.nic_of(g) for g in range(topo.n_gpus)] if topo.n_nodes > 1 else [0] * topo.n_gpus
        if self._rail is None:
            topo = self.topology
            gpn, n_nodes = topo.gpus_per_node, topo.n_nodes
            kinds = topo.link_kind
            rail = [0] * topo.n_gpus
            if n_nodes > 1:
                for node in range(n_nodes):
                    seen: dict[int, int] = {}
                    other = ((node + 1) % n_nodes) * gpn
                    for local in range(gpn):
                        g = node * gpn + local
                        if g >= topo.n_gpus:
                            break
                        nic = next((i for i in topo.path_ids(g, other + local) if kinds[i] == "nic"), None)
                        rail[g] = seen.setdefault(nic, len(seen)) if nic is not None else 0
            self._rail = rail
        return self._rail[gpu]

    def nvlink(self, src: int, dst: int) -> bool:
        """Whether the path src -> dst is NVLink only (where NCCL can relay for PXN)."""
        kinds = self.topology.link_kind
        return all(kinds[i] == "nvlink" for i in self.topology.path_ids(src, dst))

    def _segments(self, group: Sequence[int]) -> list[list[int]]:
        """Maximal runs of consecutive ranks on the same node, wrapping the last run into the first."""
        node_of = self.topology.node_of
        segs: list[list[int]] = []
        last = None
        for r in group:
            nd = node_of(r)
            if nd != last:
                segs.append([r])
                last = nd
            else:
                segs[-1].append(r)
        if len(segs) > 1 and node_of(segs[0][0]) == node_of(segs[-1][0]):
            segs[0] = segs.pop() + segs[0]
        return segs

    def _rail_reps(self, seg: list[int]) -> list[int]:
        reps: dict[int, int] = {}
        for r in seg:
            reps.setdefault(self.rail(r), r)
        return list(reps.values())

    def _channels(self, segs: list[list[int]]) -> int:
        if len(segs) == 1:
            return 1
        return min(len(self._rail_reps(s)) for s in segs)

    def _ring_hops(self, hops: _Hops, group: Sequence[int], channels: int, skip_into: int | None = None) -> None:
        """Add the hops of every channel's ring of ``group`` (the hop into ``skip_into`` omitted)."""
        segs = self._segments(group)
        if len(segs) == 1:
            n = len(group)
            for i in range(n):
                dst = group[(i + 1) % n]
                if dst != skip_into:
                    hops.add(group[i], dst)
            return
        reps = [self._rail_reps(s) for s in segs]
        rail = self.rail
        for c in range(channels):
            chains = []
            for seg, rp in zip(segs, reps):
                start = seg.index(rp[c % len(rp)])
                chains.append(seg[start:] + seg[:start])
            for k, chain in enumerate(chains):
                for a, b in zip(chain, chain[1:]):
                    if b != skip_into:
                        hops.add(a, b)
                nxt = chains[(k + 1) % len(chains)][0]
                if nxt == skip_into:
                    continue
                last, first = chain[-1], chain[0]
                if last != first and rail(last) != rail(nxt) and rail(first) == rail(nxt) and self.nvlink(last, first):
                    hops.add(last, nxt, via=first)
                else:
                    hops.add(last, nxt)

    # -- algorithms -------------------------------------------------------------------
    def _valid(self, kind: str, algorithm: str, groups: tuple[tuple[int, ...], ...]) -> str | None:
        """None if the algorithm applies to every group, else why not."""
        if algorithm in ("ring", "p2p") or (algorithm == "direct" and kind == "all_to_all"):
            return None
        node_of = self.topology.node_of
        for grp in groups:
            segs = self._segments(grp)
            nodes = {node_of(r) for r in grp}
            if algorithm == "direct" and len(nodes) > 1:
                return f"direct {kind} is modelled only inside one node"
            if algorithm in ("tree", "hierarchical"):
                if len(nodes) < 2:
                    return f"{algorithm} needs a group spanning more than one node"
                if len(segs) != len(nodes):
                    return f"{algorithm} needs each node's ranks to be consecutive in the group"
            if algorithm == "hierarchical" and ({len(s) for s in segs} == {1} or len({len(s) for s in segs}) != 1):
                return "hierarchical needs the same number (> 1) of ranks on every node"
        return None

    def _build(self, kind: str, algorithm: str, groups: tuple[tuple[int, ...], ...], S: float) -> tuple[Phase, ...]:
        n = len(groups[0])
        if kind == "send_recv":
            hops = _Hops(self)
            for src, dst in groups:
                hops.add(src, dst)
            return (hops.phase(S, 1),)
        if algorithm == "ring":
            hops = _Hops(self)
            C = min(self._channels(self._segments(g)) for g in groups)
            for g in groups:
                self._ring_hops(hops, g, C, skip_into=g[0] if kind == "broadcast" else None)
            if kind == "all_reduce":
                return (hops.phase(S / (n * C), 2 * (n - 1)),)
            if kind == "broadcast":
                return (_with_latency(hops.phase(S / C, 1), (n - 1) * hops.latency_max_s),)
            return (hops.phase(S / (n * C), n - 1),)
        if algorithm == "direct":
            hops = _Hops(self)
            for g in groups:
                if kind == "broadcast":
                    for b in g[1:]:
                        hops.add(g[0], b)
                else:
                    for a in g:
                        for b in g:
                            if a != b:
                                hops.add(a, b)
            per_pair = S if kind in ("all_reduce", "broadcast") else S / n
            return (hops.phase(per_pair, 1),)
        if algorithm == "tree":
            return (self._tree(groups, S),)
        if algorithm == "hierarchical":
            return self._hierarchical(kind, groups, S)
        raise AssertionError(algorithm)

    def _tree(self, groups: tuple[tuple[int, ...], ...], S: float) -> Phase:
        inter = _Hops(self)
        intra = _Hops(self)
        C = min(self._channels(self._segments(g)) for g in groups)
        depth = 0
        chain_len = 0
        for g in groups:
            segs = self._segments(g)
            m = len(segs)
            reps = [self._rail_reps(s) for s in segs]
            trees = double_tree_parents(m)
            depth = max(depth, *(_depth(t) for t in trees))
            for c in range(C):
                heads = [rp[c % len(rp)] for rp in reps]
                for seg, head in zip(segs, heads):
                    i = seg.index(head)
                    chain = seg[i + 1 :] + seg[: i + 1]  # ends at the rail GPU
                    chain_len = max(chain_len, len(chain) - 1)
                    for a, b in zip(chain, chain[1:]):
                        intra.add(a, b)
                        intra.add(b, a)
                for parents in trees:
                    for child, parent in enumerate(parents):
                        if parent >= 0:
                            inter.add(heads[child], heads[parent])
                            inter.add(heads[parent], heads[child])
        per_hop = S / (2 * C)
        a = inter.phase(per_hop, 1)
        lat = 2 * (depth * inter.latency_max_s + chain_len * intra.latency_max_s)
        if not intra:
            return _with_latency(a, lat)
        b = intra.phase(2 * per_hop, 1)  # both trees' streams use the chain
        return _with_latency(_merge(a, b, self.n_links), lat)

    def _hierarchical(self, kind: str, groups: tuple[tuple[int, ...], ...], S: float) -> tuple[Phase, ...]:
        intra, inter = _Hops(self), _Hops(self)
        g = m = 0
        for grp in groups:
            segs = self._segments(grp)
            m, g = len(segs), len(segs[0])
            for seg in segs:
                for i in range(g):
                    intra.add(seg[i], seg[(i + 1) % g])
            for j in range(g):
                for k in range(m):
                    inter.add(segs[k][j], segs[(k + 1) % m][j])
        n = g * m
        if kind == "all_reduce":
            rs = intra.phase(S / g, g - 1)
            return (rs, inter.phase(S / n, 2 * (m - 1)), rs)
        if kind == "all_gather":
            return (inter.phase(S / n, m - 1), intra.phase(S / g, g - 1))
        return (intra.phase(S / g, g - 1), inter.phase(S / n, m - 1))

    # -- entry point ------------------------------------------------------------------
    def plan(
        self,
        kind: str,
        groups: Sequence[Sequence[int]],
        bytes: float,
        algorithm: str = "auto",
        efficiency: NetworkEfficiency | None = None,
    ) -> CollectivePlan:
        """See :func:`plan_collective`."""
        eff = efficiency or NOMINAL
        try:
            key_groups = tuple(map(tuple, groups))
        except TypeError:
            raise InputError("groups must be a sequence of sequences of GPU indices", field="groups") from None
        key = (kind, key_groups, bytes, algorithm, eff if algorithm == "auto" else None)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plan_uncached(kind, key_groups, bytes, algorithm, eff)
            self._plans[key] = plan
        return plan

    def _plan_uncached(self, kind, groups, S, algorithm, eff) -> CollectivePlan:
        if kind not in KINDS:
            raise InputError(f"unknown collective {kind!r}; use one of {', '.join(KINDS)}", field="kind")
        if not isinstance(S, (int, float)) or not math.isfinite(S) or S < 0:
            raise InputError(f"{S!r} is not a buffer size; use bytes >= 0", field="bytes")
        checked = self._checked.get((kind, groups))
        if checked is None:
            valid = self._check_groups(kind, groups)
            auto = [a for a in _VALID_ALGORITHMS[kind] if len(valid[0]) > 1 and (kind, a) not in _AUTO_SKIPS
                    and self._valid(kind, a, valid) is None]
            checked = self._checked[(kind, groups)] = (valid, auto)
        groups, auto = checked
        n = len(groups[0])
        allowed = _VALID_ALGORITHMS[kind]
        if algorithm != "auto" and algorithm not in allowed:
            raise InputError(
                f"algorithm {algorithm!r} does not apply to {kind}; use one of auto, {', '.join(allowed)}",
                field="algorithm",
            )
        if n == 1:
            name = allowed[0] if algorithm == "auto" else algorithm
            return CollectivePlan(kind, name, float(S), 1, (), len(groups), self.topology)
        if algorithm != "auto":
            why = self._valid(kind, algorithm, groups)
            if why:
                raise InputError(f"algorithm {algorithm!r} cannot run {kind} on these groups: {why}", field="algorithm")
            candidates = [algorithm]
        else:
            candidates = auto
        best = None
        for name in candidates:
            phases = self._phases(kind, name, groups, float(S))
            plan = CollectivePlan(kind, name, float(S), n, phases, len(groups), self.topology)
            if best is None or plan.standalone_time_s(eff) < best.standalone_time_s(eff):
                best = plan
        return best

    def _phases(self, kind: str, algorithm: str, groups: tuple[tuple[int, ...], ...], S: float) -> tuple[Phase, ...]:
        """The phases of ``algorithm`` for an ``S``-byte buffer: its 1-byte phases (built once per
        groups) with the link bytes scaled."""
        key = (kind, algorithm, groups)
        unit = self._unit_phases.get(key)
        if unit is None:
            unit = self._unit_phases[key] = self._build(kind, algorithm, groups, 1.0)
        return tuple(Phase(p.link_ids, p.link_bytes * S, p.latency_s) for p in unit)

    def _check_groups(self, kind: str, groups: tuple[tuple, ...]) -> tuple[tuple[int, ...], ...]:
        if not groups:
            raise InputError("no groups given; pass at least one group of GPU indices", field="groups")
        n_gpus = self.topology.n_gpus
        out = []
        for gi, grp in enumerate(groups):
            if not grp:
                raise InputError(f"group {gi} is empty", field="groups")
            if not all(isinstance(r, (int, np.integer)) and not isinstance(r, bool) for r in grp):
                raise InputError(f"group {gi} holds a non-integer GPU index: {list(grp)!r}", field="groups")
            ranks = tuple(int(r) for r in grp)
            bad = [r for r in ranks if not 0 <= r < n_gpus]
            if bad:
                raise InputError(f"group {gi}: GPU {bad[0]} is not in the topology (0..{n_gpus - 1})", field="groups")
            if len(set(ranks)) != len(ranks):
                raise InputError(f"group {gi} lists a GPU twice: {list(ranks)}", field="groups")
            out.append(ranks)
        sizes = {len(g) for g in out}
        if len(sizes) != 1:
            raise InputError(
                f"groups of one collective must have the same size, got sizes {sorted(sizes)}", field="groups"
            )
        if kind == "send_recv" and sizes != {2}:
            raise InputError("send_recv groups are (src, dst) pairs", field="groups")
        return tuple(out)


def _with_latency(phase: Phase, latency_s: float) -> Phase:
    return Phase(phase.link_ids, phase.link_bytes, latency_s)


def _merge(a: Phase, b: Phase, n_links: int) -> Phase:
    """One phase whose link loads are the sum of two (latency of ``a``)."""
    total = np.bincount(a.link_ids, a.link_bytes, minlength=n_links)
    total += np.bincount(b.link_ids, b.link_bytes, minlength=n_links)
    used = np.flatnonzero(total)
    return Phase(used, total[used], a.latency_s)


_PLANNER_ATTR = "_trainsim_collective_planner"


def _planner_for(topology: Any) -> CollectivePlanner:
    """The planner (and its caches) of a topology.

    Kept as an attribute of the topology object, so the caches live exactly as
    long as the topology (a global registry would keep every topology alive,
    since plans refer to their topology).
    """
    planner = getattr(topology, _PLANNER_ATTR, None)
    if planner is None:
        planner = CollectivePlanner(topology)
        setattr(topology, _PLANNER_ATTR, planner)
    return planner


def plan_collective(
    topology: Any,
    kind: str,
    groups: Sequence[Sequence[int]],
    bytes: float,
    algorithm: str = "auto",
    efficiency: NetworkEfficiency | None = None,
) -> CollectivePlan:
    """Plan a collective run by all ``groups`` at once on ``topology``.

    Args:
        topology: a :class:`simulator.network.topology.Topology`.
        kind: one of :data:`KINDS`.
        groups: every group running this collective at the same time (same size;
            GPU indices; for send_recv, (src, dst) pairs). Their link loads add up.
        bytes: per-rank buffer S, bytes (nccl-tests convention, see module doc).
        algorithm: ``"auto"`` or one of :data:`ALGORITHMS` valid for ``kind``.
        efficiency: used only by ``"auto"`` to rank algorithms (default: uncalibrated).

    Returns:
        The plan; cached by (kind, groups, bytes, algorithm[, efficiency]) per topology.

    Raises:
        InputError: unknown kind or algorithm, an algorithm that cannot run on
            these groups, empty/unequal groups, GPUs out of range or repeated,
            negative or non-finite bytes.
    """
    return _planner_for(topology).plan(kind, groups, bytes, algorithm, efficiency)
