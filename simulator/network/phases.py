"""Phases: the link loads of a step-group of a collective, and how they are built from hops.

A phase is what a collective puts on the network at one time: bytes on each link
(summed over every group of the class, so groups that share a link slow each other)
and a latency. Alone, a phase takes::

    latency_s + max over links L of link_bytes[L] / bandwidth[L]

with the links' nominal bandwidth (a collective's bytes are scaled so that this is NCCL's
corrected time, :mod:`simulator.network.collectives`).

A *hop* is a topology path between two GPUs, optionally relayed through a third GPU
(two legs of one hop). :class:`HopSet` collects the hops of a phase and turns them into
link loads in one vectorised pass over the topology's routes.

Units: bytes, seconds, bytes/s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.network.topology import Topology


@dataclass(frozen=True, eq=False)
class Phase:
    """One step-group of a collective whose transfers run at the same time.

    Attributes:
        link_ids: edge ids the phase uses (distinct, int array).
        link_bytes: bytes over each of those links in this phase, summed over all
            groups of the class (float array, same length); for a collective plan, scaled to
            NCCL's corrected time (occupancy bytes at nominal bandwidth).
        latency_s: the phase's latency, seconds (a collective plan's: NCCL's corrected
            latency term; built from hops: the per-step path latencies of the slowest path).
    """

    link_ids: np.ndarray
    link_bytes: np.ndarray
    latency_s: float

    def __post_init__(self) -> None:
        # Plans are cached and shared: their arrays must not change under other users.
        self.link_ids.flags.writeable = False
        self.link_bytes.flags.writeable = False

    def time_s(self, bandwidth_Bps: np.ndarray) -> float:
        """Standalone time: ``latency_s + max(link_bytes / bandwidth_Bps[link_ids])``, seconds."""
        if self.link_ids.size == 0:
            return self.latency_s
        return self.latency_s + float(np.max(self.link_bytes / bandwidth_Bps[self.link_ids]))

    def scaled(self, factor: float) -> Phase:
        """The same phase with every link's bytes multiplied by ``factor``."""
        return Phase(self.link_ids, self.link_bytes * factor, self.latency_s)

    def with_latency(self, latency_s: float) -> Phase:
        """The same link loads with another latency, seconds."""
        return Phase(self.link_ids, self.link_bytes, latency_s)

    def plus(self, other: Phase, n_links: int) -> Phase:
        """One phase whose link loads are the sum of both (the latency of this one)."""
        total = np.bincount(self.link_ids, self.link_bytes, minlength=n_links)
        total += np.bincount(other.link_ids, other.link_bytes, minlength=n_links)
        used = np.flatnonzero(total)
        return Phase(used, total[used], self.latency_s)


class HopSet:
    """The hops of one phase (src -> dst, optionally relayed through ``via``)."""

    __slots__ = ("topology", "src", "dst", "via", "_resolved")

    def __init__(self, topology: Topology):
        self.topology = topology
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
        """(number of hops crossing each link, the largest hop latency in seconds)."""
        if self._resolved is None:
            topo = self.topology
            src, dst, via = (np.array(x, dtype=np.intp) for x in (self.src, self.dst, self.via))
            relayed = np.flatnonzero(via >= 0)
            # a relayed hop is two legs, src -> via and via -> dst, of the same hop
            a = np.concatenate([src, via[relayed]])
            b = np.concatenate([np.where(via >= 0, via, dst), dst[relayed]])
            hop = np.concatenate([np.arange(src.size), relayed])
            ids, leg = topo.path_ids_many(a, b)
            leg_latency = np.bincount(leg, weights=topo.latency_s[ids], minlength=a.size)
            counts = np.bincount(ids, minlength=topo.n_edges)
            hop_latency = np.bincount(hop, weights=leg_latency, minlength=src.size)
            self._resolved = (counts, float(hop_latency.max()) if src.size else 0.0)
        return self._resolved

    @property
    def latency_max_s(self) -> float:
        """Latency of the slowest hop, seconds."""
        return self._resolve()[1]

    def phase(self, bytes_per_hop: float, steps: int) -> Phase:
        """Every hop carries ``bytes_per_hop`` in each of ``steps`` pipelined steps."""
        counts, latency = self._resolve()
        used = np.flatnonzero(counts)
        return Phase(used, counts[used] * float(bytes_per_hop * steps), steps * latency)
