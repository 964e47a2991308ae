"""Collectives timed by NCCL's model on a topology: what a plan is, how it is made, bus bandwidth.

A collective (all-reduce, all-gather, ...) over a *class* of identical groups of ranks becomes a
:class:`CollectivePlan`:

1. **What NCCL sees.** The first group is a communicator: its
   :class:`~simulator.network.nccl.system.NcclSystem`
   (:func:`~simulator.network.nccl.from_topology.system_for`: nodes, ranks per node, NVLink,
   PCIe and NIC bandwidths as NCCL assigns them), for the NCCL version of the efficiency
   (``efficiency.nccl_version``) and the GPU generation of the device run (the caller's).
2. **What NCCL chooses.** :func:`simulator.network.nccl.tuner.choose` picks algorithm,
   protocol and channels by NCCL's own cost model (or the forced ``algorithm``); the plan
   records them (``algorithm``, ``protocol``, ``channels``). Choices are cached per
   (system, kind, bytes, algorithm).
3. **How long it takes alone.** NCCL's estimate corrected by the network efficiency
   (:func:`simulator.network.nccl.correction.corrected_time_s`): a latency term
   ``L_NCCL + L_add`` and a bandwidth term (the rest).
4. **What it puts on the links.** One :class:`~simulator.network.phases.Phase`: the link loads
   of the pattern NCCL runs (:mod:`simulator.network.collective_algorithms`: ring for ring
   and PAT, the ring's NVLink links for NVLS, the double tree for tree, NVLS tree and CollNet
   when the group spans several nodes, consecutive per node, else the ring; direct sends for
   all-to-all, the path for send/recv), summed over every group of the class, with the bytes
   scaled so that the first group's loads alone on the topology's nominal link bandwidths take
   exactly the corrected bandwidth term, and the corrected latency term as its latency.

So a plan whose groups share no link takes exactly the corrected NCCL time alone
(:meth:`CollectivePlan.standalone_time_s`), groups of a class that share links slow each other,
and in the flow network (:mod:`simulator.network.flows`) concurrent plans sharing links slow
each other by max-min sharing.

Buffer sizes follow nccl-tests: ``bytes`` (S) is the per-rank buffer: the all-reduce buffer,
the *gathered* (output) buffer of all-gather, the *input* buffer of reduce-scatter, the whole
send buffer of all-to-all (S/n to each peer), the broadcast and reduce buffer, the message of
send/recv. ``n`` is the group size. A group of one rank, or zero bytes, moves nothing: the plan
has no phases and takes 0 s. Units: bytes, seconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from simulator.core.errors import InputError
from simulator.network.collective_algorithms import Groups, tree_fits, unit_phase
from simulator.network.efficiency import NOMINAL, NetworkEfficiency
from simulator.network.nccl import tuner
from simulator.network.nccl.correction import added_latency_s, corrected_time_s
from simulator.network.nccl.from_topology import system_for
from simulator.network.nccl.system import NcclSystem
from simulator.network.phases import Phase
from simulator.network.topology import Topology

KINDS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "reduce", "send_recv")
"""Collective kinds :func:`plan_collective` knows."""

ALGORITHMS = ("tree", "ring", "collnet_direct", "collnet_chain", "nvls", "nvls_tree", "pat", "p2p")
"""NCCL's algorithm names (``algorithm=`` forces one; ``"auto"`` lets NCCL's tuner choose)."""

PATTERN = {"ring": "ring", "pat": "ring", "nvls": "ring_intra", "tree": "tree", "nvls_tree": "tree",
           "collnet_direct": "tree", "collnet_chain": "tree"}
"""NCCL algorithm -> the link-load pattern it is given (all-to-all and send/recv: direct, p2p)."""


@dataclass(frozen=True, eq=False)
class CollectivePlan:
    """A collective over a class of identical groups: NCCL's choice, its time, its link loads.

    Attributes:
        kind: one of :data:`KINDS`.
        algorithm: NCCL's algorithm (one of :data:`ALGORITHMS`).
        protocol: NCCL's protocol (``LL``, ``LL128``, ``Simple``; ``""`` for a plan that moves
            nothing).
        channels: channels NCCL runs it on (0 for a plan that moves nothing).
        bytes: per-rank buffer size S, bytes (nccl-tests convention, see module doc).
        group_size: ranks per group (2 for send_recv).
        phases: one phase (none when nothing moves).
        n_groups: how many groups the link loads cover.
        topology: the topology the link ids refer to.
        efficiency: the correction the time includes.
        system: what NCCL sees of the first group (None when nothing moves).
        time_s: standalone time of the class, seconds.
    """

    kind: str
    algorithm: str
    protocol: str
    channels: int
    bytes: float
    group_size: int
    phases: tuple[Phase, ...]
    n_groups: int = 1
    topology: Topology = field(default=None, repr=False, compare=False)
    efficiency: NetworkEfficiency = field(default=NOMINAL, repr=False, compare=False)
    system: NcclSystem | None = field(default=None, repr=False, compare=False)
    time_s: float = 0.0

    def standalone_time_s(self, efficiency: NetworkEfficiency | None = None) -> float:
        """Time of the collective alone on the network, seconds: the phase's latency plus its
        bandwidth time on nominal links (the corrected NCCL time when the class's groups share
        no link); 0 for a plan without phases.

        ``efficiency`` may be given only as a check: it must be the one the plan was made with
        (a plan is timed once, by :func:`plan_collective`).
        """
        if efficiency is not None and efficiency != self.efficiency:
            raise ValueError("this plan was timed with another network efficiency; plan it with this one")
        return self.time_s


def bus_factor(kind: str, n: int) -> tuple[int, int]:
    """nccl-tests' bus bandwidth / algorithm bandwidth of ``kind`` on ``n`` ranks, as
    (numerator, denominator): 2(n-1)/n for all-reduce, (n-1)/n for all-gather,
    reduce-scatter and all-to-all, 1 for broadcast, reduce and send/recv."""
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
    *,
    generation: str,
) -> CollectivePlan:
    """Plan a collective run by all ``groups`` at once on ``topology`` (module docstring).

    Args:
        topology: the topology the groups' GPUs are on.
        kind: one of :data:`KINDS`.
        groups: every group running this collective at the same time (same size;
            GPU indices; for send_recv, (src, dst) pairs). Their link loads add up.
        bytes: per-rank buffer S, bytes (nccl-tests convention, see module doc).
        algorithm: ``"auto"`` (NCCL's tuner chooses) or one of :data:`ALGORITHMS` that NCCL
            can run for ``kind`` on these groups.
        efficiency: the correction of NCCL's time and the NCCL version (default: NCCL's own
            estimate, :data:`~simulator.network.efficiency.NOMINAL`).
        generation: the GPUs' generation (``"hopper"``: the device's ``GPUSpec.generation``).

    Returns:
        The plan; cached in ``topology.plan_cache`` by (kind, groups, bytes, algorithm,
        efficiency, generation).

    Raises:
        InputError: unknown kind or algorithm, an algorithm NCCL cannot run here,
            empty/unequal groups, GPUs out of range or repeated, negative or non-finite bytes,
            an NCCL version the tuner does not know.
    """
    eff = efficiency or NOMINAL
    try:
        key_groups = tuple(map(tuple, groups))
    except TypeError:
        raise InputError("groups must be a sequence of sequences of GPU indices", field="groups") from None
    key = (kind, key_groups, bytes, algorithm, eff, generation)
    plans = topology.plan_cache.plans
    plan = plans.get(key)
    if plan is None:
        plan = plans[key] = _plan(topology, kind, key_groups, bytes, algorithm, eff, generation)
    return plan


@lru_cache(maxsize=1 << 16)
def nccl_choice(system: NcclSystem, kind: str, nbytes: float, algorithm: str | None) -> tuner.Choice:
    """NCCL's choice for ``kind`` of ``nbytes`` on ``system`` (``algorithm`` forced, or None),
    cached (the tuner is pure).

    Raises:
        InputError: the algorithm cannot run here (the message lists what can), or the tuner
            does not know the system's NCCL version.
    """
    return tuner.choose(system, kind, nbytes, algorithm=algorithm)


def _plan(topology: Topology, kind: str, groups: tuple[tuple, ...], S: float, algorithm: str,
          eff: NetworkEfficiency, generation: str) -> CollectivePlan:
    if kind not in KINDS:
        raise InputError(f"unknown collective {kind!r}; use one of {', '.join(KINDS)}", field="kind")
    if not isinstance(S, (int, float)) or isinstance(S, bool) or not math.isfinite(S) or S < 0:
        raise InputError(f"{S!r} is not a buffer size; use bytes >= 0", field="bytes")
    if algorithm != "auto" and algorithm not in ALGORITHMS:
        raise InputError(f"unknown algorithm {algorithm!r}; use auto or one of {', '.join(ALGORITHMS)}",
                         field="algorithm")
    groups = _checked_groups(topology, kind, groups)
    n = len(groups[0])
    forced = None if algorithm == "auto" else algorithm
    if n == 1 or S == 0:
        name = forced or ("p2p" if kind in ("send_recv", "all_to_all") else "ring")
        return CollectivePlan(kind, name, "", 0, float(S), n, (), len(groups), topology, eff)
    system = system_for(topology, groups[0], eff.nccl_version, generation)
    choice = nccl_choice(system, kind, float(S), forced)
    total = corrected_time_s(system, choice, float(S), eff)
    latency = choice.latency_us * 1e-6 + added_latency_s(system, choice.n_inter, eff)
    bandwidth_s = max(0.0, total - latency)
    unit, one_s = _unit(topology, kind, _pattern(topology, kind, choice.algorithm, groups), groups)
    scale = bandwidth_s / one_s if one_s > 0 else 0.0
    phase = Phase(unit.link_ids, unit.link_bytes * scale, latency)
    time_s = phase.time_s(topology.bandwidth_Bps)
    return CollectivePlan(kind, choice.algorithm, choice.protocol, int(choice.channels), float(S), n, (phase,),
                          len(groups), topology, eff, system, time_s)


def _pattern(topology: Topology, kind: str, algorithm: str, groups: Groups) -> str:
    """The link-load pattern of NCCL's ``algorithm`` for these groups."""
    if kind == "send_recv":
        return "p2p"
    if kind == "all_to_all" or algorithm == "p2p":
        return "direct"
    pattern = PATTERN[algorithm]
    if pattern == "tree" and not tree_fits(topology, groups):
        return "ring"
    return pattern


def _unit(topology: Topology, kind: str, pattern: str, groups: Groups) -> tuple[Phase, float]:
    """(the pattern's 1-byte link loads over all groups, the first group's bandwidth time alone
    on nominal links, seconds per byte), built once per (kind, pattern, groups)."""
    cache = topology.plan_cache.unit_phases
    key = (kind, pattern, groups)
    unit = cache.get(key)
    if unit is None:
        whole = unit_phase(topology, kind, pattern, groups)
        first = whole if len(groups) == 1 else unit_phase(topology, kind, pattern, groups[:1])
        one_s = float(np.max(first.link_bytes / topology.bandwidth_Bps[first.link_ids])) if first.link_ids.size else 0.0
        unit = cache[key] = (whole, one_s)
    return unit


def _checked_groups(topology: Topology, kind: str, groups: tuple[tuple, ...]) -> Groups:
    """The validated groups, cached per (kind, groups)."""
    cache = topology.plan_cache.checked_groups
    checked = cache.get((kind, groups))
    if checked is None:
        checked = cache[(kind, groups)] = _validated(topology, kind, groups)
    return checked


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
