"""Cluster topologies: a fleet's GPUs, node switches, NICs and switch fabric, with routing.

:func:`load_topology` reads a topology file (:mod:`simulator.network.topology_file`)
and builds a :class:`Topology` for a fleet of ``n_gpus`` GPUs: only the nodes the fleet
needs are built, so graph size grows with the fleet. The cables, their bandwidths
(bytes/s, one direction), latencies (seconds, one way) and kinds, and the fabric's
aggregation assumption are described in :mod:`simulator.network.cabling`.

Routing (deterministic, O(path length), no graph search): a GPU sends and receives
inter-node traffic through its rail NIC ``nic_of(gpu)``; intra-node traffic goes
gpu -> node switch -> gpu (``nvswitch``, ``pcie``), over the pair's direct link (``mesh``:
every pair; ``nvlink_bridge``: GPUs 2k and 2k+1, other pairs gpu -> host PCIe switch -> gpu);
inter-node traffic climbs only as high as needed (same leaf,
else the spine group shared by both leaves, else the core). Paths in both directions
have the same length and latency. NCCL's PXN (hop over NVLink to a GPU on the
destination's rail first) is a collective-algorithm choice and is not done here.

Growth rule
-----------
A fleet larger than ``fabric.max_nodes`` nodes is built only when ``fabric.grow`` is
true: more units of ``nodes_per_unit`` nodes are added (the last may be partial), each
with its own leaves whose uplinks keep the declared oversubscription. Rail-optimized:
every spine group gains one leaf per new unit and its core uplink grows with it.
Fat tree with 3 tiers: new units fill spine groups of ``units_per_group`` units, a new
group is added when one is full. Because tiers are aggregated, growth never adds a tier:
a real fabric of that size might need one more switch level (more latency) than the
file's ``tiers``. With ``grow: false`` a larger fleet raises :class:`InputError` on
``fabric.max_nodes``.

Fleet size: ``n_gpus`` must be a multiple of ``node.gpus`` when it spans more than one
node; a fleet smaller than one node builds a single node with only ``n_gpus`` GPUs
(``gpus_per_node = n_gpus``), which keeps its rail mapping to the node's NICs.

Power: ``Topology.power`` holds the non-GPU power of a node and of one fabric switch
(from the file, with sources) and an *estimate* of the physical switch count of the
built fabric (see :mod:`simulator.network.cabling`).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np

from simulator.core.bounds import MAX_GPUS
from simulator.core.bundled import bundled_dir
from simulator.core.cache import sized_cache
from simulator.core.errors import InputError
from simulator.network.cabling import HUB_OF, FabricLayout, Link, lay_cables
from simulator.network.plan_cache import PlanCache
from simulator.network.topology_file import TopologyFile, parse_topology_file


@dataclass(frozen=True)
class NodePower:
    """Non-GPU power of the built fleet, watts.

    ``total_W = n_nodes * node_W + n_switches * switch_W``. ``n_switches`` is an
    estimate from port counts (see :mod:`simulator.network.cabling`), not a bill of materials.
    """

    node_W: float
    switch_W: float
    n_nodes: int
    n_switches: int
    source: str

    @property
    def nodes_W(self) -> float:
        """Non-GPU power of all nodes, watts."""
        return self.node_W * self.n_nodes

    @property
    def switches_W(self) -> float:
        """Power of all fabric switches, watts."""
        return self.switch_W * self.n_switches

    @property
    def total_W(self) -> float:
        """Nodes plus switches, watts."""
        return self.nodes_W + self.switches_W


class Topology:
    """A built cluster: graph, deterministic routing, per-edge arrays.

    Build with :func:`load_topology`. Arrays indexed by edge id: :attr:`bandwidth_Bps`
    (bytes/s, one direction), :attr:`latency_s` (seconds), :attr:`link_kind`,
    :attr:`links` (the ``(u, v)`` pair). :attr:`plan_cache` holds the collective plans
    made on this topology (:mod:`simulator.network.collectives`).
    """

    def __init__(self, spec: TopologyFile, n_nodes: int, gpus_per_node: int, *, file: str | None = None):
        node, fab = spec.node, spec.fabric
        self.spec = spec
        self.file = file
        self.name: str = spec.name
        self.gpu: str | None = spec.gpu
        self.gpus_per_node: int = gpus_per_node
        self.n_nodes: int = n_nodes
        self.n_gpus: int = n_nodes * gpus_per_node
        self.n_nics_per_node: int = node.nics
        self.n_units: int = math.ceil(n_nodes / fab.nodes_per_unit)
        self._gpus_per_nic = node.gpus // node.nics  # rails: GPU local index // this
        self._scale_up = node.scale_up.kind
        self._hub = HUB_OF[self._scale_up]  # node-switch vertex kind; None on mesh nodes
        self._layout = FabricLayout.of(spec)

        cabling = lay_cables(spec, n_nodes, gpus_per_node)
        self._up = cabling.up  # per GPU: the vertices from the GPU up to its leaf
        self.links: list[Link] = cabling.links
        self.bandwidth_Bps: np.ndarray = np.array(cabling.bandwidth_Bps, dtype=float)
        self.latency_s: np.ndarray = np.array(cabling.latency_s, dtype=float)
        self.link_kind: list[str] = cabling.kinds
        self._edge_id: dict[Link, int] = {e: i for i, e in enumerate(self.links)}
        self._lat = cabling.latency_s
        self._index_routes()
        self._paths: dict[tuple[int, int], tuple[Link, ...]] = {}
        self._path_ids: dict[tuple[int, int], tuple[int, ...]] = {}
        self.plan_cache = PlanCache()
        self.power = NodePower(
            node_W=node.power_W,
            switch_W=fab.switch_power_W,
            n_nodes=n_nodes,
            n_switches=cabling.n_switches,
            source=f"node: {node.power_source.rstrip('.')}; switch: {fab.switch_power_source.rstrip('.')}",
        )

    @functools.cached_property
    def graph(self) -> nx.DiGraph:
        """The topology as a networkx graph (built on first use; routing does not need it).

        Edge attributes: ``bandwidth_Bps``, ``latency_s``, ``kind``, ``id``.
        """
        graph = nx.DiGraph(name=self.name)
        graph.add_edges_from(
            (u, v, {"bandwidth_Bps": float(b), "latency_s": float(t), "kind": k, "id": i})
            for i, ((u, v), b, t, k) in enumerate(zip(self.links, self.bandwidth_Bps, self.latency_s, self.link_kind))
        )
        return graph

    # -- structure ------------------------------------------------------------------

    def _index_routes(self) -> None:
        """Edge-id tables that :meth:`path_ids_many` combines (routes in arrays, not per pair)."""
        eid = self._edge_id
        gpn = self.gpus_per_node
        no = -1
        hub_up, hub_down, up, down, leaf, peer = [], [], [], [], [], []
        for g, verts in enumerate(self._up):
            n = g // gpn
            if self._hub is None:
                hub_up.append(no)
                hub_down.append(no)
            else:
                hub = (self._hub, n)
                hub_up.append(eid[(("gpu", g), hub)])
                hub_down.append(eid[(hub, ("gpu", g))])
            if self._scale_up == "mesh":  # the direct edge to every GPU of the node
                peer.append([eid.get((("gpu", g), ("gpu", n * gpn + j)), no) for j in range(gpn)])
            elif self._scale_up == "nvlink_bridge":  # the bridge to the pair partner, if any
                peer.append([eid.get((("gpu", g), ("gpu", g ^ 1)), no)])
            up.append([eid[(a, b)] for a, b in zip(verts, verts[1:])])
            down.append([eid[(b, a)] for a, b in zip(verts, verts[1:])])
            leaf.append(verts[-1][1])
        self._hub_up = np.array(hub_up, dtype=np.intp)
        self._hub_down = np.array(hub_down, dtype=np.intp)
        self._peer_ids = np.array(peer, dtype=np.intp).reshape(len(peer), -1) if peer else None
        self._up_ids = np.array(up, dtype=np.intp).reshape(len(up), -1)
        self._down_ids = np.array(down, dtype=np.intp).reshape(len(down), -1)
        self._gpu_leaf = np.array(leaf, dtype=np.intp)
        n_leaves = int(self._gpu_leaf.max()) + 1 if leaf else 0
        spine_of = self._layout.spine_of if self._layout.tiers > 1 else (lambda _leaf: 0)
        self._leaf_spine = np.array([spine_of(x) for x in range(n_leaves)], dtype=np.intp)
        self._leaf_up = np.array([eid.get((("leaf", x), ("spine", spine_of(x))), no) for x in range(n_leaves)])
        self._leaf_down = np.array([eid.get((("spine", spine_of(x)), ("leaf", x)), no) for x in range(n_leaves)])
        n_spines = int(self._leaf_spine.max()) + 1 if n_leaves else 0
        self._spine_up = np.array([eid.get((("spine", s), ("core", 0)), no) for s in range(n_spines)])
        self._spine_down = np.array([eid.get((("core", 0), ("spine", s)), no) for s in range(n_spines)])

    def path_ids_many(self, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Edge ids of the paths of many (src, dst) GPU pairs at once, as flat arrays
        ``(ids, pair)``: edge ``ids[k]`` lies on the path of pair ``pair[k]``. The same
        edges as :meth:`path_ids` (not in path order); cost is a few numpy operations.
        """
        src = np.asarray(src, dtype=np.intp)
        dst = np.asarray(dst, dtype=np.intp)
        pair = np.arange(src.size)
        gpn = self.gpus_per_node
        node_s, node_d = src // gpn, dst // gpn
        intra = (node_s == node_d) & (src != dst)
        inter = node_s != node_d
        if self._scale_up == "mesh":  # one direct edge
            parts_ids = [self._peer_ids[src[intra], dst[intra] % gpn]]
            parts_pair = [pair[intra]]
        else:
            direct = np.zeros(src.size, dtype=bool)
            if self._scale_up == "nvlink_bridge":  # bridged partners: the bridge; others: the PCIe switch
                direct = intra & ((src ^ 1) == dst) & (self._peer_ids[src, 0] >= 0)
                intra = intra & ~direct
            parts_ids = [self._peer_ids[src[direct], 0]] if direct.any() else []
            parts_pair = [pair[direct]] if direct.any() else []
            parts_ids += [self._hub_up[src[intra]], self._hub_down[dst[intra]]]
            parts_pair += [pair[intra], pair[intra]]
        s, d, p = src[inter], dst[inter], pair[inter]
        k = self._up_ids.shape[1]
        parts_ids += [self._up_ids[s].ravel(), self._down_ids[d].ravel()]
        parts_pair += [np.repeat(p, k), np.repeat(p, k)]
        leaf_s, leaf_d = self._gpu_leaf[s], self._gpu_leaf[d]
        cross = leaf_s != leaf_d
        parts_ids += [self._leaf_up[leaf_s[cross]], self._leaf_down[leaf_d[cross]]]
        parts_pair += [p[cross], p[cross]]
        sp_s, sp_d = self._leaf_spine[leaf_s], self._leaf_spine[leaf_d]
        core = cross & (sp_s != sp_d)
        parts_ids += [self._spine_up[sp_s[core]], self._spine_down[sp_d[core]]]
        parts_pair += [p[core], p[core]]
        return np.concatenate(parts_ids), np.concatenate(parts_pair)

    def _fabric_route(self, a: int, b: int) -> list[Hashable]:
        """Switch vertices from leaf ``a`` to leaf ``b``, both included."""
        if a == b:
            return [("leaf", a)]
        sa, sb = self._layout.spine_of(a), self._layout.spine_of(b)
        if sa == sb:
            return [("leaf", a), ("spine", sa), ("leaf", b)]
        return [("leaf", a), ("spine", sa), ("core", 0), ("spine", sb), ("leaf", b)]

    @property
    def n_edges(self) -> int:
        """Directed edges in the graph (edge ids are ``0 .. n_edges - 1``)."""
        return len(self.links)

    def _check_gpu(self, gpu: int) -> None:
        if not 0 <= gpu < self.n_gpus:
            raise ValueError(f"GPU {gpu} is not in this topology (GPUs 0..{self.n_gpus - 1})")

    def node_of(self, gpu: int) -> int:
        """Node index of ``gpu`` (``gpu // gpus_per_node``). Raises ValueError if out of range."""
        self._check_gpu(gpu)
        return gpu // self.gpus_per_node

    def nic_of(self, gpu: int) -> int:
        """Local index of the NIC (rail) ``gpu`` sends and receives through.

        GPU ``k`` of a node uses NIC ``k // (gpus / nics)``: with one NIC per GPU, NIC ``k``.
        """
        self._check_gpu(gpu)
        return (gpu % self.gpus_per_node) // self._gpus_per_nic

    def _direct(self, src_gpu: int, dst_gpu: int) -> bool:
        """Whether two GPUs of one node are cabled directly (mesh pair, NVLink-bridged pair)."""
        if self._scale_up == "mesh":
            return True
        return self._scale_up == "nvlink_bridge" and (src_gpu ^ 1) == dst_gpu and self._peer_ids[src_gpu, 0] >= 0

    def path(self, src_gpu: int, dst_gpu: int) -> tuple[Link, ...]:
        """Directed edges from ``src_gpu`` to ``dst_gpu`` in order (empty if equal).

        Deterministic and cached; cost O(path length). Raises ValueError for unknown GPUs.
        """
        key = (src_gpu, dst_gpu)
        hit = self._paths.get(key)
        if hit is not None:
            return hit
        self._check_gpu(src_gpu)
        self._check_gpu(dst_gpu)
        if src_gpu == dst_gpu:
            verts: list[Hashable] = [("gpu", src_gpu)]
        elif src_gpu // self.gpus_per_node == dst_gpu // self.gpus_per_node:
            if self._direct(src_gpu, dst_gpu):
                verts = [("gpu", src_gpu), ("gpu", dst_gpu)]
            else:
                verts = [("gpu", src_gpu), (self._hub, src_gpu // self.gpus_per_node), ("gpu", dst_gpu)]
        else:
            up, down = self._up[src_gpu], self._up[dst_gpu]
            verts = [*up[:-1], *self._fabric_route(up[-1][1], down[-1][1]), *reversed(down[:-1])]
        result = tuple(zip(verts[:-1], verts[1:]))
        self._paths[key] = result
        return result

    def path_ids(self, src_gpu: int, dst_gpu: int) -> tuple[int, ...]:
        """Edge ids of :meth:`path`, cached."""
        key = (src_gpu, dst_gpu)
        hit = self._path_ids.get(key)
        if hit is None:
            hit = tuple(self._edge_id[e] for e in self.path(src_gpu, dst_gpu))
            self._path_ids[key] = hit
        return hit

    def path_latency_s(self, src_gpu: int, dst_gpu: int) -> float:
        """One-way latency of :meth:`path`: the sum of its edges' ``latency_s``, seconds."""
        # fsum is exactly rounded, so a path and its reverse have the same latency.
        return math.fsum(self._lat[i] for i in self.path_ids(src_gpu, dst_gpu))

    def __repr__(self) -> str:
        return (
            f"Topology({self.name!r}, nodes={self.n_nodes}, gpus={self.n_gpus}, "
            f"units={self.n_units}, edges={self.n_edges})"
        )


def bundled_topologies() -> list[str]:
    """Names of the bundled topology files (file stems), sorted."""
    folder = bundled_dir("topologies")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_source(source: str | Path, file: str | None, field: str) -> tuple[str, str]:
    """(text, display path) of a bundled name or a YAML path."""
    is_name = isinstance(source, str) and not (
        os.sep in source or "/" in source or source.endswith((".yaml", ".yml"))
    )
    if is_name:
        entry = bundled_dir("topologies").joinpath(f"{source}.yaml")
        if not entry.is_file():
            raise InputError(
                f"unknown topology {source!r}; bundled topologies: {', '.join(bundled_topologies())} "
                "(or give a path to a .yaml file)",
                file=file,
                field=field,
            )
        return entry.read_text(encoding="utf-8"), str(entry)
    path = Path(source)
    if not path.is_file():
        raise InputError(
            f"topology file {str(path)!r} not found (bundled topologies: {', '.join(bundled_topologies())})",
            file=file if file is not None else path,
            field=field if file is not None else None,
        )
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read topology file: {exc}", file=path) from None


def _checked_n_gpus(n_gpus: object, path: str | None, file: str | None) -> int | None:
    """``n_gpus`` as a plain int (None stays None); a bool, a non-integer, a count below 1 or
    above MAX_GPUS raises :class:`InputError` on field ``n_gpus``."""
    if n_gpus is None:
        return None
    if isinstance(n_gpus, bool) or not isinstance(n_gpus, (int, np.integer)) or n_gpus <= 0:
        raise InputError(
            f"fleet size must be a positive whole number of GPUs, got {n_gpus!r}", file=file or path, field="n_gpus"
        )
    n_gpus = int(n_gpus)
    if n_gpus > MAX_GPUS:
        raise InputError(f"a fleet of {n_gpus} GPUs is larger than trainsim builds; use at most MAX_GPUS = {MAX_GPUS}",
                         file=file or path, field="n_gpus")
    return n_gpus


def _fleet_shape(spec: TopologyFile, n_gpus: int | None, path: str, file: str | None) -> tuple[int, int]:
    """(n_nodes, gpus_per_node) for a fleet of ``n_gpus`` GPUs (None: what the file describes)."""
    per_node, fab = spec.node.gpus, spec.fabric
    n_gpus = _checked_n_gpus(n_gpus, path, file)
    if n_gpus is None:
        return fab.max_nodes, per_node
    if n_gpus <= per_node:
        return 1, n_gpus
    if n_gpus % per_node:
        lower, upper = n_gpus // per_node * per_node, (n_gpus // per_node + 1) * per_node
        raise InputError(
            f"{n_gpus} GPUs do not fill whole nodes of {per_node} GPUs ({spec.name}); "
            f"use a multiple of {per_node}, e.g. {lower} or {upper}",
            file=file or path,
            field="n_gpus",
        )
    n_nodes = n_gpus // per_node
    if n_nodes > fab.max_nodes and not fab.grow:
        raise InputError(
            f"a fleet of {n_gpus} GPUs needs {n_nodes} nodes, but this file describes at most "
            f"{fab.max_nodes} nodes ({fab.max_nodes * per_node} GPUs) and has grow: false",
            file=path,
            field="fabric.max_nodes",
        )
    return n_nodes, per_node


def load_topology(
    source: str | Path,
    n_gpus: int | None = None,
    *,
    file: str | None = None,
    field: str = "topology",
) -> Topology:
    """Load and build a topology for a fleet of ``n_gpus`` GPUs.

    ``source`` is a bundled name (see :func:`bundled_topologies`) or a path to a YAML
    file. ``n_gpus=None`` builds what the file describes (``fabric.max_nodes`` nodes).
    ``file`` and ``field`` name where ``source`` / ``n_gpus`` came from (e.g. the
    scenario file and its ``topology`` field) for errors that are not the topology
    file's own.

    Raises :class:`InputError`: unknown bundled name (listing them), missing or
    unreadable file, bad YAML, unknown/missing/ill-typed field, non-positive bandwidth,
    inconsistent fabric (all naming the topology file and dotted field); ``n_gpus`` not
    a whole number of nodes (field ``n_gpus``); a fleet beyond ``fabric.max_nodes`` when
    ``grow`` is false (field ``fabric.max_nodes``, stating the largest fleet).
    """
    text, path = _read_source(source, file, field)
    # Checked before the memo: True == 1 and np.int64(8) == 8 would share a memo entry.
    return _built(text, path, _checked_n_gpus(n_gpus, path, file), file)


def fleet_shape(source: str | Path, n_gpus: int | None = None, *, file: str | None = None,
                field: str = "topology") -> tuple[TopologyFile, int, int]:
    """The topology file of ``source`` and ``(n_nodes, gpus_per_node)`` of a fleet of ``n_gpus``
    GPUs, checked as :func:`load_topology` checks them (same errors), without building anything:
    what a plan check needs, in microseconds, before a large fleet is built."""
    text, path = _read_source(source, file, field)
    spec = _parsed(text, path)
    return (spec, *_fleet_shape(spec, n_gpus, path, file))


@functools.lru_cache(maxsize=16)
def _parsed(text: str, path: str) -> TopologyFile:
    """A parsed topology file (a few kilobytes), kept per (text, path)."""
    return parse_topology_file(text, path)


def estimated_bytes(topology: Topology) -> int:
    """Rough resident bytes of a built topology, with the memos it filled since (its size in the
    memo of built topologies, :mod:`simulator.core.cache`): ~320 bytes per directed link (cables,
    edge arrays and route tables, measured with tracemalloc at 16k and 64k GPUs), ~250 per cached
    path, the arrays of its cached collective plans and ~40 per rank of the groups they were made for."""
    n = 320 * topology.n_edges + 250 * (len(topology._paths) + len(topology._path_ids))
    cache = topology.plan_cache
    for memo in (cache.plans, cache.unit_phases):
        for value in memo.values():
            phases = value.phases if hasattr(value, "phases") else value
            n += 200 + sum(p.link_ids.nbytes + p.link_bytes.nbytes for p in phases if hasattr(p, "link_ids"))
    n += sum(200 + 40 * sum(len(g) for g in key[1]) for key in cache.checked_groups)  # the groups' ranks
    if "graph" in topology.__dict__:  # the networkx graph, built on first use: ~1 kB per edge
        n += 1000 * topology.n_edges
    return n


@sized_cache(estimated_bytes)
def _built(text: str, path: str, n_gpus: int | None, file: str | None) -> Topology:
    """Topologies are built once per (file text, fleet size): studies and validation
    simulate the same fleet many times, and a built topology is not changed by use. The memo
    keeps at most :data:`~simulator.core.cache.DEFAULT_BUDGET_BYTES` of them (estimated)."""
    return build_topology(_parsed(text, path), n_gpus, path=path, file=file)


def build_topology(spec: TopologyFile, n_gpus: int | None = None, *, path: str | None = None,
                   file: str | None = None) -> Topology:
    """Build a validated topology description for a fleet of ``n_gpus`` GPUs (growth rule and
    errors as in :func:`load_topology`; ``path`` names the description in errors)."""
    n_nodes, gpus_per_node = _fleet_shape(spec, n_gpus, path, file)
    return Topology(spec, n_nodes, gpus_per_node, file=path)
