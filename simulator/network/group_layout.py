"""Where a group's ranks sit: runs of ranks per node, NIC rails, ring channels.

A *segment* is a maximal run of consecutive ranks of a group on the same node (the
last run wraps into the first when both are on one node). A GPU's *rail* is the local
index of the NIC its inter-node traffic leaves through
(:meth:`simulator.network.topology.Topology.nic_of`). A group spanning several nodes
runs ``channels`` rings, one per rail every node of the group has (NCCL's channels),
so that inter-node traffic leaves through every NIC.
"""

from __future__ import annotations

from collections.abc import Sequence

from simulator.network.phases import HopSet
from simulator.network.topology import Topology


def nvlink_only(topology: Topology, src: int, dst: int) -> bool:
    """Whether the path src -> dst is NVLink only (where NCCL can relay for PXN)."""
    kinds = topology.link_kind
    return all(kinds[i] == "nvlink" for i in topology.path_ids(src, dst))


def _segments(topology: Topology, group: Sequence[int]) -> list[list[int]]:
    node_of = topology.node_of
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


class GroupLayout:
    """The segments, rails and ring channels of one group of ranks.

    Attributes:
        segments: the group's runs of ranks per node, in group order.
        rail: rail of each rank of the group.
        rail_reps: per segment, its first rank on each rail, in order of appearance.
        channels: rings a ring algorithm runs (1 inside a node, else the fewest
            rails any node of the group has).
    """

    def __init__(self, topology: Topology, group: Sequence[int]):
        self.topology = topology
        self.group = group
        self.segments = _segments(topology, group)
        self.rail = {r: topology.nic_of(r) for r in group}
        self.rail_reps = [self._first_on_each_rail(seg) for seg in self.segments]
        self.channels = 1 if len(self.segments) == 1 else min(len(reps) for reps in self.rail_reps)

    def _first_on_each_rail(self, segment: list[int]) -> list[int]:
        first: dict[int, int] = {}
        for r in segment:
            first.setdefault(self.rail[r], r)
        return list(first.values())

    def add_ring_hops(self, hops: HopSet, channels: int, skip_into: int | None = None,
                      skip_from: int | None = None) -> None:
        """Add the hops of ``channels`` rings over the group (the hop into ``skip_into`` and the
        hop out of ``skip_from`` omitted: a broadcast chain from, a reduce chain into, that rank).

        Channel ``c`` rotates each node's run so that it starts at the node's rail-``c``
        GPU. The inter-node hop from a run's last GPU goes over NVLink to the run's
        first (rail) GPU and then out of its NIC (PXN-style), so every inter-node hop of
        a channel stays on one rail; without an NVLink path it leaves through the last
        GPU's own NIC.
        """
        group = self.group
        if len(self.segments) == 1:
            n = len(group)
            for i in range(n):
                dst = group[(i + 1) % n]
                if dst != skip_into and group[i] != skip_from:
                    hops.add(group[i], dst)
            return
        rail = self.rail
        for c in range(channels):
            chains = []
            for seg, reps in zip(self.segments, self.rail_reps):
                start = seg.index(reps[c % len(reps)])
                chains.append(seg[start:] + seg[:start])
            for k, chain in enumerate(chains):
                for a, b in zip(chain, chain[1:]):
                    if b != skip_into and a != skip_from:
                        hops.add(a, b)
                nxt = chains[(k + 1) % len(chains)][0]
                last, first = chain[-1], chain[0]
                if nxt == skip_into or last == skip_from:
                    continue
                if (last != first and rail[last] != rail[nxt] and rail[first] == rail[nxt]
                        and nvlink_only(self.topology, last, first)):
                    hops.add(last, nxt, via=first)
                else:
                    hops.add(last, nxt)
