"""The cables of a fleet: every GPU, node switch, NIC and fabric switch link of a topology.

Vertices: ``("gpu", g)``, ``("nvswitch", node)`` or ``("pcie", node)`` (none on mesh nodes),
``("nic", node, i)``, ``("leaf", i)``, ``("spine", i)``, ``("core", i)``. Every cable
is two directed edges, one per direction, with a bandwidth (bytes/s, one direction),
a latency (seconds, one way) and a kind (:data:`LINK_KINDS`). Edge ids are the
positions in a fixed build order, so they are the same on every run. Per node the order
is: GPU-to-switch cables (mesh: the GPU pairs (a, b), a < b, in order; nvlink_bridge: the
GPU-to-PCIe-switch cables, then the bridges), then the NICs' host side.

=====================  =========  ===========================================
edge                   kind       bandwidth (one direction)
=====================  =========  ===========================================
gpu <-> nvswitch       nvlink     ``scale_up.bandwidth_GBps`` (per GPU)
gpu <-> pcie           pcie       ``scale_up.bandwidth_GBps`` (per GPU; pcie nodes)
gpu <-> gpu (mesh)     nvlink     ``scale_up.bandwidth_GBps / (node.gpus - 1)`` (every pair of a
                                  mesh node; an AMD Infinity Fabric / xGMI link is kind nvlink)
gpu <-> gpu (bridge)   nvlink     ``scale_up.bandwidth_GBps`` (nvlink_bridge nodes: GPUs 2k, 2k+1)
gpu <-> pcie (bridge)  pcie       ``pcie_bandwidth_GBps`` (nvlink_bridge nodes: every GPU)
gpu <-> nic            pcie       ``pcie_bandwidth_GBps`` (NVSwitch and mesh nodes: GPUDirect
                                  RDMA through the PCIe switch the GPU shares with its rail NIC)
pcie <-> nic           pcie       ``pcie_bandwidth_GBps`` (pcie and nvlink_bridge nodes: the
                                  NIC's slot)
nic <-> leaf           nic        ``nic_bandwidth_Gbps`` (one cable per NIC, never merged)
leaf <-> spine         fabric     leaf downlink capacity / ``oversubscription``
spine <-> core         fabric     spine-group downlink capacity / ``spine_oversubscription``
=====================  =========  ===========================================

``pcie_bandwidth_GBps`` defaults to ``scale_up.bandwidth_GBps`` on PCIe nodes and to
the NIC line rate on NVSwitch nodes (so it never narrows a NIC path by default).

Latency is split over edges so that a path's latency is a sum of physical parts: each
GPU-to-switch edge carries half of ``scale_up.latency_us`` and a direct GPU-to-GPU edge (mesh
pair, NVLink bridge) all of it (GPU-to-GPU inside a node = ``latency_us`` on every path, also
through the PCIe switch of an nvlink_bridge node); the host side of a NIC (gpu->nic or pcie->nic) and its cable each
carry half of ``nic_latency_us`` (one NIC traversal = ``nic_latency_us``); every edge
incident to a fabric switch carries half of ``switch_latency_us`` (one switch
traversal = ``switch_latency_us``).

Fabric
------
Nodes are grouped in *units* of ``nodes_per_unit`` (a SuperPOD scalable unit).

* ``rail_optimized``: NIC ``i`` of every node of unit ``u`` goes to leaf ``u * nics + i``
  (rail ``i``). With 2 tiers every leaf goes to one spine group ``("spine", 0)``. With
  3 tiers the leaves of rail ``i`` (one per unit) go to spine group ``("spine", i)`` and
  all spine groups go to ``("core", 0)``: same-rail traffic turns at the spine group,
  cross-rail traffic at the core.
* ``fat_tree``: all NICs of the nodes of unit ``u`` go to leaf ``u``. With 2 tiers all
  leaves go to ``("spine", 0)``; with 3 tiers the leaves of ``units_per_group``
  consecutive units go to spine group ``u // units_per_group`` and all groups to
  ``("core", 0)``. With 1 tier the whole fleet is one unit under one switch.

Aggregation (stated assumption): a tier's switches that serve one group (a leaf for a
rail of a unit, a spine group, the core) are one vertex, and the parallel cables
between two such vertices are one edge whose bandwidth is their sum. This is exact for
bandwidth under perfect ECMP/adaptive-routing spreading (a fluid model), optimistic when
flows collide on hashes. Per-NIC cables stay separate because NICs are where transfers
really share. Switch vertices themselves are non-blocking.

Capacities: a leaf's downlink capacity is that of a *full* unit (``nodes_per_unit`` nodes
x NICs per leaf x NIC rate; the switches exist even when the fleet fills the unit only in
part); its uplink is that / ``oversubscription``. A spine group's uplink to the core is
the sum of the uplinks of the leaves built under it / ``spine_oversubscription``.

Switch count (for power): per aggregated vertex ``ceil(ports / switch_ports)`` where
ports count downlinks plus uplinks at NIC rate; an estimate, not a bill of materials.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass, field

from simulator.core.units import US, GBps_to_Bps, gbit_per_s_to_Bps
from simulator.network.topology_file import TopologyFile

Link = tuple[Hashable, Hashable]
"""A directed edge ``(u, v)``."""

LINK_KINDS = ("nvlink", "pcie", "nic", "fabric")
"""Values of an edge's kind. Every scale-up link between GPUs is ``nvlink``, AMD Infinity
Fabric (xGMI) links of a mesh node included: the kind says "the GPU-to-GPU fabric", which is
what link efficiencies are keyed by."""


@dataclass(frozen=True)
class FabricLayout:
    """Which leaf a NIC is cabled to and which spine group a leaf is under."""

    rail_optimized: bool
    tiers: int
    nodes_per_unit: int
    units_per_group: int | None
    nics_per_node: int

    @classmethod
    def of(cls, spec: TopologyFile) -> FabricLayout:
        fab = spec.fabric
        return cls(fab.kind == "rail_optimized", fab.tiers, fab.nodes_per_unit, fab.units_per_group, spec.node.nics)

    def leaf_of(self, node: int, nic: int) -> int:
        """Leaf of NIC ``nic`` (local index) of node ``node``."""
        unit = node // self.nodes_per_unit
        return unit * self.nics_per_node + nic if self.rail_optimized else unit

    def spine_of(self, leaf: int) -> int:
        """Spine group above ``leaf`` (2 or 3 tiers)."""
        if self.tiers == 2:
            return 0
        if self.rail_optimized:
            return leaf % self.nics_per_node
        return leaf // self.units_per_group  # fat tree: leaf index == unit index


@dataclass
class Cabling:
    """The directed edges of a fleet, in edge-id order, and what routing needs of them.

    Attributes:
        links: ``(u, v)`` of every edge.
        bandwidth_Bps: one direction, bytes/s.
        latency_s: one way, seconds.
        kinds: one of :data:`LINK_KINDS` per edge.
        up: per GPU, the vertices from the GPU to its leaf through its rail NIC.
        n_switches: estimated physical fabric switches.
    """

    links: list[Link] = field(default_factory=list)
    bandwidth_Bps: list[float] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    up: list[tuple[Hashable, ...]] = field(default_factory=list)
    n_switches: int = 0

    def cable(self, u: Hashable, v: Hashable, bandwidth_Bps: float, latency_s: float, kind: str) -> None:
        """Add both directions of a cable."""
        for a, b in ((u, v), (v, u)):
            self.links.append((a, b))
            self.bandwidth_Bps.append(bandwidth_Bps)
            self.latency_s.append(latency_s)
            self.kinds.append(kind)


def lay_cables(spec: TopologyFile, n_nodes: int, gpus_per_node: int) -> Cabling:
    """The cables of ``n_nodes`` nodes of ``gpus_per_node`` GPUs each and their fabric."""
    cabling = Cabling()
    layout = FabricLayout.of(spec)
    _node_cables(cabling, spec, layout, n_nodes, gpus_per_node)
    _fabric_cables(cabling, spec, layout, n_nodes)
    return cabling


HUB_OF = {"nvswitch": "nvswitch", "pcie": "pcie", "nvlink_bridge": "pcie", "mesh": None}
"""Node-switch vertex kind of each ``scale_up.kind`` (``("nvswitch", node)`` or ``("pcie", node)``);
a mesh node has no switch vertex."""


def _node_cables(cabling: Cabling, spec: TopologyFile, layout: FabricLayout, n_nodes: int, gpus_per_node: int) -> None:
    """GPU, node switch and NIC cables of every node, then every NIC's cable to its leaf."""
    node, fab = spec.node, spec.fabric
    su_kind_of_node = node.scale_up.kind  # "nvswitch" | "mesh" | "nvlink_bridge" | "pcie"
    hub_kind = HUB_OF[su_kind_of_node]
    nic_via_hub = hub_kind == "pcie"  # NICs hang off the host PCIe switch (pcie, nvlink_bridge)
    su_bw = GBps_to_Bps(node.scale_up.bandwidth_GBps)
    su_lat = node.scale_up.latency_us * US
    su_half = su_lat / 2
    nic_bw = gbit_per_s_to_Bps(node.nic_bandwidth_Gbps)
    nic_half = node.nic_latency_us * US / 2
    sw_half = fab.switch_latency_us * US / 2
    if node.pcie_bandwidth_GBps is not None:
        pcie_bw = GBps_to_Bps(node.pcie_bandwidth_GBps)
    else:
        pcie_bw = su_bw if su_kind_of_node == "pcie" else nic_bw
    gpus_per_nic = node.gpus // node.nics
    # A mesh's physical pair links: the GPU's total over its peers of the *designed* node (a
    # fleet smaller than one node keeps the node's cables).
    pair_bw = su_bw / max(1, node.gpus - 1)
    cable = cabling.cable
    for n in range(n_nodes):
        hub = (hub_kind, n)
        first = n * gpus_per_node
        if su_kind_of_node in ("nvswitch", "pcie"):
            su_kind = "nvlink" if su_kind_of_node == "nvswitch" else "pcie"
            for local in range(gpus_per_node):
                cable(("gpu", first + local), hub, su_bw, su_half, su_kind)
        elif su_kind_of_node == "mesh":
            for a in range(gpus_per_node):
                for b in range(a + 1, gpus_per_node):
                    cable(("gpu", first + a), ("gpu", first + b), pair_bw, su_lat, "nvlink")
        else:  # nvlink_bridge: every GPU on the host PCIe switch, then the bridged pairs
            for local in range(gpus_per_node):
                cable(("gpu", first + local), hub, pcie_bw, su_half, "pcie")
            for a in range(0, gpus_per_node - 1, 2):
                cable(("gpu", first + a), ("gpu", first + a + 1), su_bw, su_lat, "nvlink")
        for i in range(node.nics):
            nic = ("nic", n, i)
            if nic_via_hub:
                cable(hub, nic, pcie_bw, nic_half, "pcie")
            else:
                for local in range(gpus_per_node):
                    if local // gpus_per_nic == i:
                        cable(("gpu", first + local), nic, pcie_bw, nic_half, "pcie")
        for local in range(gpus_per_node):
            g = first + local
            nic = ("nic", n, local // gpus_per_nic)
            via = (("gpu", g), hub, nic) if nic_via_hub else (("gpu", g), nic)
            cabling.up.append(via + (("leaf", layout.leaf_of(n, nic[2])),))
    for n in range(n_nodes):
        for i in range(node.nics):
            cable(("nic", n, i), ("leaf", layout.leaf_of(n, i)), nic_bw, nic_half + sw_half, "nic")


def _fabric_cables(cabling: Cabling, spec: TopologyFile, layout: FabricLayout, n_nodes: int) -> None:
    """The tiers above the leaves, and the switch count of the whole fabric."""
    node, fab = spec.node, spec.fabric
    nic_bw = gbit_per_s_to_Bps(node.nic_bandwidth_Gbps)
    sw_half = fab.switch_latency_us * US / 2
    n_units = math.ceil(n_nodes / fab.nodes_per_unit)
    nics_per_leaf = 1 if layout.rail_optimized else node.nics
    leaf_down_ports = fab.nodes_per_unit * nics_per_leaf
    leaf_up_ports = 0 if fab.tiers == 1 else math.ceil(leaf_down_ports / fab.oversubscription)
    leaf_up_bw = leaf_down_ports * nic_bw / fab.oversubscription
    n_leaves = n_units * (node.nics if layout.rail_optimized else 1)
    n_switches = n_leaves * math.ceil((leaf_down_ports + leaf_up_ports) / fab.switch_ports)
    if fab.tiers >= 2:
        leaves_under: dict[int, int] = {}
        for leaf in range(n_leaves):
            s = layout.spine_of(leaf)
            leaves_under[s] = leaves_under.get(s, 0) + 1
            cabling.cable(("leaf", leaf), ("spine", s), leaf_up_bw, 2 * sw_half, "fabric")
        core_ports = 0
        for s in sorted(leaves_under):
            down_ports = leaves_under[s] * leaf_up_ports
            up_ports = 0
            if fab.tiers == 3:
                up_ports = math.ceil(down_ports / fab.spine_oversubscription)
                up_bw = leaves_under[s] * leaf_up_bw / fab.spine_oversubscription
                cabling.cable(("spine", s), ("core", 0), up_bw, 2 * sw_half, "fabric")
            n_switches += math.ceil((down_ports + up_ports) / fab.switch_ports)
            core_ports += up_ports
        n_switches += math.ceil(core_ports / fab.switch_ports)
    cabling.n_switches = n_switches
