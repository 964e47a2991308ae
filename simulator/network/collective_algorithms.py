"""Collective algorithms as phases on topology links.

Each algorithm turns a collective over a class of identical groups into phases (see
:mod:`simulator.network.phases`). Inside a phase the steps of the algorithm are
pipelined (NCCL splits buffers into chunks), so the bandwidth term uses the total
bytes of the phase and the latency term adds one path latency per step. ``S`` is the
per-rank buffer in bytes (the conventions of :mod:`simulator.network.collectives`),
``n`` the group size; link loads are exact for the schedule described.

``ring``
    Ranks in group order form ``C`` rings (channels, one per NIC rail every node of
    the group has, see :mod:`simulator.network.group_layout`), each carrying S/C.
    All-reduce: 2(n-1) steps of S/(nC) per hop; all-gather and reduce-scatter: n-1
    steps; broadcast: a pipelined chain from the first rank, n-1 hops of S/C each. On
    a uniform ring (bandwidth B, latency a per hop, one channel) this gives exactly
    ``2(n-1)/n * S/B + 2(n-1) a`` for all-reduce and ``(n-1)/n * S/B + (n-1) a`` for
    all-gather.
``tree`` (all-reduce, group on > 1 node)
    NCCL's double binary tree over nodes. Per channel (rail) the data is halved over
    two complementary binary trees (:func:`double_tree_parents`), so each node is a
    leaf in one of them. Inside a node, the group's GPUs form a chain ending at the
    node's rail GPU. Reduction goes up, broadcast comes down, pipelined: each tree
    edge carries S/(2C) each way. A node is inner (two children) in one tree and a
    leaf in the other, so its NIC sends 3S/(2C) + S/(2C) = 2S/C per channel, like the
    ring's 2(n-1)/n S/C; each chain link carries S/C each way. Latency:
    2 x (tree depth x slowest inter-node hop + (g-1) x slowest chain hop), depth
    ~ log2(nodes).
``hierarchical`` (group on > 1 node with the same g > 1 GPUs on every node)
    All-reduce: intra-node ring reduce-scatter (g-1 steps of S/g), then on each of the
    g positions a ring all-reduce of the S/g shard across the m nodes (2(m-1) steps of
    S/(g m); the g rings run in parallel on their own rails), then intra-node ring
    all-gather (g-1 steps of S/g): three phases. All-gather: inter-node all-gather
    (m-1 steps of S/n), then intra-node (g-1 steps of S/g). Reduce-scatter: the
    reverse order.
``direct``
    Every rank sends straight to its peers in one step: all-to-all (S/n to each peer),
    and, inside one node only (NVSwitch), one-shot all-reduce (S to each peer),
    all-gather and reduce-scatter (S/n to each peer) and broadcast (S from the root
    to each peer). Direct all-to-all across nodes follows the topology's routes (no
    PXN relay), so cross-rail traffic climbs to the spine/core.
``p2p`` (send_recv)
    Each (src, dst) pair sends S over its path in one phase.
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


def why_invalid(topology: Topology, kind: str, algorithm: str, groups: Groups) -> str | None:
    """None if ``algorithm`` applies to every group, else why not."""
    if algorithm in ("ring", "p2p") or (algorithm == "direct" and kind == "all_to_all"):
        return None
    node_of = topology.node_of
    for grp in groups:
        segs = GroupLayout(topology, grp).segments
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


def unit_phases(topology: Topology, kind: str, algorithm: str, groups: Groups) -> tuple[Phase, ...]:
    """The phases of ``algorithm`` for a 1-byte buffer (the algorithm must be valid for the groups)."""
    if kind == "send_recv":
        hops = HopSet(topology)
        for src, dst in groups:
            hops.add(src, dst)
        return (hops.phase(1.0, 1),)
    if algorithm == "ring":
        return (_ring(topology, kind, groups),)
    if algorithm == "direct":
        return (_direct(topology, kind, groups),)
    if algorithm == "tree":
        return (_tree(topology, groups),)
    if algorithm == "hierarchical":
        return _hierarchical(topology, kind, groups)
    raise AssertionError(algorithm)


def _ring(topology: Topology, kind: str, groups: Groups) -> Phase:
    n = len(groups[0])
    hops = HopSet(topology)
    layouts = [GroupLayout(topology, g) for g in groups]
    C = min(layout.channels for layout in layouts)
    for g, layout in zip(groups, layouts):
        layout.add_ring_hops(hops, C, skip_into=g[0] if kind == "broadcast" else None)
    if kind == "all_reduce":
        return hops.phase(1.0 / (n * C), 2 * (n - 1))
    if kind == "broadcast":
        return hops.phase(1.0 / C, 1).with_latency((n - 1) * hops.latency_max_s)
    return hops.phase(1.0 / (n * C), n - 1)


def _direct(topology: Topology, kind: str, groups: Groups) -> Phase:
    n = len(groups[0])
    hops = HopSet(topology)
    for g in groups:
        if kind == "broadcast":
            for b in g[1:]:
                hops.add(g[0], b)
        else:
            for a in g:
                for b in g:
                    if a != b:
                        hops.add(a, b)
    per_pair = 1.0 if kind in ("all_reduce", "broadcast") else 1.0 / n
    return hops.phase(per_pair, 1)


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


def _hierarchical(topology: Topology, kind: str, groups: Groups) -> tuple[Phase, ...]:
    intra, inter = HopSet(topology), HopSet(topology)
    g = m = 0
    for grp in groups:
        segs = GroupLayout(topology, grp).segments
        m, g = len(segs), len(segs[0])
        for seg in segs:
            for i in range(g):
                intra.add(seg[i], seg[(i + 1) % g])
        for j in range(g):
            for k in range(m):
                inter.add(segs[k][j], segs[(k + 1) % m][j])
    n = g * m
    if kind == "all_reduce":
        rs = intra.phase(1.0 / g, g - 1)
        return (rs, inter.phase(1.0 / n, 2 * (m - 1)), rs)
    if kind == "all_gather":
        return (inter.phase(1.0 / n, m - 1), intra.phase(1.0 / g, g - 1))
    return (intra.phase(1.0 / g, g - 1), inter.phase(1.0 / n, m - 1))
