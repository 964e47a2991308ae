"""The link loads of the patterns NCCL runs, for the flow network's link sharing.

A collective's *time* is NCCL's (:mod:`simulator.network.collectives`); what it puts on the
links, so that concurrent collectives sharing links slow each other, is the pattern of the
algorithm NCCL chose, as one :class:`~simulator.network.phases.Phase` (all steps pipelined)
for a 1-byte buffer, summed over every group of a class. ``S`` is the per-rank buffer in bytes
(nccl-tests conventions, :mod:`simulator.network.collectives`), ``n`` the group size.

``ring`` (NCCL's ring; PAT; NVLS inside a node)
    Ranks in group order form ``C`` rings (channels, one per NIC rail every node of the group
    has, see :mod:`simulator.network.group_layout`), each carrying S/C. All-reduce: 2(n-1)
    steps of S/(nC) per hop; all-gather and reduce-scatter: n-1 steps; broadcast: a pipelined
    chain from the first rank, reduce: a chain into it, n-1 hops of S/C each.
``ring_intra`` (NVLS)
    The ring's links inside the nodes only (NVLink); NVLS reduces in the NVSwitch.
``tree`` (tree, NVLS tree, CollNet; a group on > 1 node whose ranks are consecutive per node)
    NCCL's double binary tree over nodes. Per channel (rail) the data is halved over two
    complementary binary trees (:func:`double_tree_parents`), so each node is a leaf in one of
    them. Inside a node, the group's GPUs form a chain ending at the node's rail GPU. Each tree
    edge carries S/(2C) each way, each chain link S/C each way.
``direct`` (all-to-all)
    Every rank sends S/n straight to each peer over the topology's routes (no PXN relay).
``p2p`` (send/recv)
    Each (src, dst) pair sends S over its path.

The latencies of these phases are those of the topology's paths; the caller replaces them with
NCCL's (only the link loads are used).
"""

from __future__ import annotations

from simulator.network.group_layout import GroupLayout
from simulator.network.phases import HopSet, Phase
from simulator.network.topology import Topology

Groups = tuple[tuple[int, ...], ...]
"""Every group of a class: equal-size tuples of GPU indices."""


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


PATTERNS = ("ring", "ring_intra", "tree", "direct", "p2p")
"""The link-load patterns of :func:`unit_phase`."""


def tree_fits(topology: Topology, groups: Groups) -> bool:
    """Whether every group spans more than one node with each node's ranks consecutive (the
    shape the ``tree`` pattern is built for; otherwise its loads are taken as the ring's)."""
    node_of = topology.node_of
    for grp in groups:
        nodes = {node_of(r) for r in grp}
        if len(nodes) < 2 or len(GroupLayout(topology, grp).segments) != len(nodes):
            return False
    return True


def unit_phase(topology: Topology, kind: str, pattern: str, groups: Groups) -> Phase:
    """The link loads of ``pattern`` (one of :data:`PATTERNS`, valid for the groups) for a
    1-byte buffer, summed over ``groups``."""
    if pattern == "p2p":
        hops = HopSet(topology)
        for src, dst in groups:
            hops.add(src, dst)
        return hops.phase(1.0, 1)
    if pattern == "ring":
        return _ring(topology, kind, groups)
    if pattern == "ring_intra":
        ring = _ring(topology, kind, groups)
        kinds = topology.link_kind
        keep = [i for i, link in enumerate(ring.link_ids.tolist()) if kinds[link] == "nvlink"]
        if not keep:
            return ring
        return Phase(ring.link_ids[keep], ring.link_bytes[keep], ring.latency_s)
    if pattern == "direct":
        return _direct(topology, groups)
    if pattern == "tree":
        return _tree(topology, groups)
    raise AssertionError(pattern)


def _ring(topology: Topology, kind: str, groups: Groups) -> Phase:
    n = len(groups[0])
    hops = HopSet(topology)
    layouts = [GroupLayout(topology, g) for g in groups]
    C = min(layout.channels for layout in layouts)
    for g, layout in zip(groups, layouts):
        layout.add_ring_hops(hops, C, skip_into=g[0] if kind == "broadcast" else None,
                             skip_from=g[0] if kind == "reduce" else None)
    if kind == "all_reduce":
        return hops.phase(1.0 / (n * C), 2 * (n - 1))
    if kind in ("broadcast", "reduce"):
        return hops.phase(1.0 / C, 1).with_latency((n - 1) * hops.latency_max_s)
    return hops.phase(1.0 / (n * C), n - 1)


def _direct(topology: Topology, groups: Groups) -> Phase:
    n = len(groups[0])
    hops = HopSet(topology)
    for g in groups:
        for a in g:
            for b in g:
                if a != b:
                    hops.add(a, b)
    return hops.phase(1.0 / n, 1)


def _tree(topology: Topology, groups: Groups) -> Phase:
    inter = HopSet(topology)
    intra = HopSet(topology)
    layouts = [GroupLayout(topology, g) for g in groups]
    C = min(layout.channels for layout in layouts)
    depth = 0
    chain_len = 0
    for layout in layouts:
        segs = layout.segments
        trees = double_tree_parents(len(segs))
        depth = max(depth, *(_depth(t) for t in trees))
        for c in range(C):
            heads = [reps[c % len(reps)] for reps in layout.rail_reps]
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
    per_hop = 1.0 / (2 * C)
    up_and_down = inter.phase(per_hop, 1)
    latency = 2 * (depth * inter.latency_max_s + chain_len * intra.latency_max_s)
    if not intra:
        return up_and_down.with_latency(latency)
    chains = intra.phase(2 * per_hop, 1)  # both trees' streams use the chain
    return up_and_down.plus(chains, topology.n_edges).with_latency(latency)
