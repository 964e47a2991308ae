"""Collectives planned on a topology: what a plan is, how one is chosen, bus bandwidth.

A collective (all-reduce, all-gather, ...) over a *class* of identical groups of
ranks is turned into a :class:`CollectivePlan`: a sequence of phases
(:class:`simulator.network.phases.Phase`), each the bytes it puts on every link
(summed over all groups of the class, so groups that share a link slow each other)
and its latency. Phases run one after another; a plan alone takes::

    overhead_s + sum over phases of (latency_s + max over links L of link_bytes[L] / effective_bandwidth[L])

with the effective bandwidth (bytes/s) and overhead (seconds) of a
:class:`simulator.network.efficiency.NetworkEfficiency`.

Buffer sizes follow nccl-tests: ``bytes`` (S) is the per-rank buffer: the
all-reduce buffer, the *gathered* (output) buffer of all-gather, the *input*
buffer of reduce-scatter, the whole send buffer of all-to-all (S/n to each
peer), the broadcast buffer, the message of send/recv. ``n`` is the group size.

The algorithms are in :mod:`simulator.network.collective_algorithms`. ``"auto"``
picks the valid algorithm with the least standalone time under the given efficiency
(as NCCL's tuner picks by size); the plan records which. Direct all-gather,
reduce-scatter, broadcast and all-reduce are left out of ``"auto"`` (NCCL has none;
with the same or fewer bytes per link as the ring and one latency step they would
always win on NVSwitch here); ask for them by name.

Limitations: no in-network reduction (SHARP/NVLS), no per-chunk protocol
(LL/LL128/Simple) differences, and the small-message regime is only as good as
the latency figures of the topology plus ``overhead_s``. All pipelined steps of a
phase are one flow: the model does not stall a ring on its slowest member. A group
of one rank moves nothing: its plan has no phases and takes 0 s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from simulator.core.errors import InputError
from simulator.network.collective_algorithms import Groups, unit_phases, why_invalid
from simulator.network.efficiency import NOMINAL, NetworkEfficiency
from simulator.network.phases import Phase
from simulator.network.topology import Topology

KINDS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "send_recv")
"""Collective kinds :func:`plan_collective` knows."""

ALGORITHMS = ("ring", "tree", "hierarchical", "direct", "p2p")
"""Algorithm names (plus ``"auto"``)."""

VALID_ALGORITHMS = {
    "all_reduce": ("ring", "tree", "hierarchical", "direct"),
    "all_gather": ("ring", "hierarchical", "direct"),
    "reduce_scatter": ("ring", "hierarchical", "direct"),
    "all_to_all": ("direct",),
    "broadcast": ("ring", "direct"),
    "send_recv": ("p2p",),
}
"""The algorithms that can run each kind (the first is the name of a one-rank plan)."""

_NOT_AUTO = {("all_reduce", "direct"), ("all_gather", "direct"), ("reduce_scatter", "direct"), ("broadcast", "direct")}

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
    topology: Topology = field(default=None, repr=False, compare=False)
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


def bus_factor(kind: str, n: int) -> tuple[int, int]:
    """nccl-tests' bus bandwidth / algorithm bandwidth of ``kind`` on ``n`` ranks, as
    (numerator, denominator): 2(n-1)/n for all-reduce, (n-1)/n for all-gather,
    reduce-scatter and all-to-all, 1 for broadcast and send/recv."""
    if kind == "all_reduce":
        return 2 * (n - 1), n
    if kind in ("all_gather", "reduce_scatter", "all_to_all"):
        return n - 1, n
    return 1, 1


def bus_bandwidth_Bps(kind: str, n: int, bytes: float, time_s: float) -> float:
    """nccl-tests bus bandwidth, bytes/s: ``bytes / time_s`` (algbw) times :func:`bus_factor`.

    Raises:
        InputError: unknown kind, n < 1, or time_s <= 0.
    """
    if kind not in KINDS:
        raise InputError(f"unknown collective {kind!r}; use one of {', '.join(KINDS)}", field="kind")
    if n < 1:
        raise InputError(f"group size {n} must be >= 1", field="n")
    if not time_s > 0:
        raise InputError(f"time {time_s!r} must be > 0 seconds", field="time_s")
    numerator, denominator = bus_factor(kind, n)
    return bytes / time_s * numerator / denominator


def plan_collective(
    topology: Topology,
    kind: str,
    groups: Sequence[Sequence[int]],
    bytes: float,
    algorithm: str = "auto",
    efficiency: NetworkEfficiency | None = None,
) -> CollectivePlan:
    """Plan a collective run by all ``groups`` at once on ``topology``.

    Args:
        topology: the topology the groups' GPUs are on.
        kind: one of :data:`KINDS`.
        groups: every group running this collective at the same time (same size;
            GPU indices; for send_recv, (src, dst) pairs). Their link loads add up.
        bytes: per-rank buffer S, bytes (nccl-tests convention, see module doc).
        algorithm: ``"auto"`` or one of :data:`ALGORITHMS` valid for ``kind``.
        efficiency: used only by ``"auto"`` to rank algorithms (default: nominal).

    Returns:
        The plan; cached in ``topology.plan_cache`` by (kind, groups, bytes,
        algorithm[, efficiency]).

    Raises:
        InputError: unknown kind or algorithm, an algorithm that cannot run on
            these groups, empty/unequal groups, GPUs out of range or repeated,
            negative or non-finite bytes.
    """
    eff = efficiency or NOMINAL
    try:
        key_groups = tuple(map(tuple, groups))
    except TypeError:
        raise InputError("groups must be a sequence of sequences of GPU indices", field="groups") from None
    key = (kind, key_groups, bytes, algorithm, eff if algorithm == "auto" else None)
    plans = topology.plan_cache.plans
    plan = plans.get(key)
    if plan is None:
        plan = plans[key] = _plan(topology, kind, key_groups, bytes, algorithm, eff)
    return plan


def _plan(topology: Topology, kind: str, groups: tuple[tuple, ...], S: float, algorithm: str,
          eff: NetworkEfficiency) -> CollectivePlan:
    if kind not in KINDS:
        raise InputError(f"unknown collective {kind!r}; use one of {', '.join(KINDS)}", field="kind")
    if not isinstance(S, (int, float)) or not math.isfinite(S) or S < 0:
        raise InputError(f"{S!r} is not a buffer size; use bytes >= 0", field="bytes")
    groups, auto = _checked_groups(topology, kind, groups)
    allowed = VALID_ALGORITHMS[kind]
    if algorithm != "auto" and algorithm not in allowed:
        raise InputError(
            f"algorithm {algorithm!r} does not apply to {kind}; use one of auto, {', '.join(allowed)}",
            field="algorithm",
        )
    n = len(groups[0])
    if n == 1:
        name = allowed[0] if algorithm == "auto" else algorithm
        return CollectivePlan(kind, name, float(S), 1, (), len(groups), topology)
    if algorithm != "auto":
        why = why_invalid(topology, kind, algorithm, groups)
        if why:
            raise InputError(f"algorithm {algorithm!r} cannot run {kind} on these groups: {why}", field="algorithm")
    best = None
    for name in auto if algorithm == "auto" else [algorithm]:
        phases = _phases(topology, kind, name, groups, float(S))
        plan = CollectivePlan(kind, name, float(S), n, phases, len(groups), topology)
        if best is None or plan.standalone_time_s(eff) < best.standalone_time_s(eff):
            best = plan
    return best


def _checked_groups(topology: Topology, kind: str, groups: tuple[tuple, ...]) -> tuple[Groups, list[str]]:
    """(the validated groups, the algorithms ``"auto"`` chooses among), cached per (kind, groups)."""
    cache = topology.plan_cache.checked_groups
    checked = cache.get((kind, groups))
    if checked is None:
        valid = _validated(topology, kind, groups)
        auto = [a for a in VALID_ALGORITHMS[kind] if len(valid[0]) > 1 and (kind, a) not in _NOT_AUTO
                and why_invalid(topology, kind, a, valid) is None]
        checked = cache[(kind, groups)] = (valid, auto)
    return checked


def _phases(topology: Topology, kind: str, algorithm: str, groups: Groups, S: float) -> tuple[Phase, ...]:
    """The phases of ``algorithm`` for an ``S``-byte buffer: its 1-byte phases (built once per
    groups) with the link bytes scaled."""
    cache = topology.plan_cache.unit_phases
    key = (kind, algorithm, groups)
    unit = cache.get(key)
    if unit is None:
        unit = cache[key] = unit_phases(topology, kind, algorithm, groups)
    return tuple(p.scaled(S) for p in unit)


def _validated(topology: Topology, kind: str, groups: tuple[tuple, ...]) -> Groups:
    if not groups:
        raise InputError("no groups given; pass at least one group of GPU indices", field="groups")
    n_gpus = topology.n_gpus
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
