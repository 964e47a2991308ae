"""The topology file: its schema (one node design and one fabric) and its validation.

A topology file (YAML, ``topologies/*.yaml``) is read by
:func:`simulator.network.topology.load_topology`. Units are those of the field names:
GB/s (10^9 bytes/s) and Gbit/s in one direction, microseconds one way, watts. Fields
are checked one by one by pydantic and across fields by :func:`parse_topology_file`
(NICs divide GPUs, what a 1-tier fabric can be, ``units_per_group`` only for a 3-tier
fat tree, which scale-up fields go with which ``scale_up.kind``, CollNet only on InfiniBand).

The NCCL-facing fields (``scale_up.nvlink_links``, ``scale_up.multicast``,
``scale_up.bridge_links``, ``node.transport``, ``node.net_plugin_latency_us``, ``node.cpu``,
``fabric.collnet``) are optional: files without them stay valid, and ``None`` means "not
stated" (the consumer, :mod:`simulator.network.nccl`, applies the defaults each field states).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simulator.core.bounds import MAX_GPUS, Flag, GpuCount, real, span, whole
from simulator.core.errors import InputError, from_validation_error
from simulator.core.yamlfile import parse_yaml


MAX_GBPS = 1e6
"""The fastest link, GB/s (1e15 bytes/s)."""
MAX_GBITPS = 8e6
"""The fastest NIC, Gbit/s (1e15 bytes/s)."""
MAX_LATENCY_US = 1e6
"""The longest one-way latency, microseconds (1 s)."""
MAX_POWER_W = 1e6
"""The most power of one node (besides its GPUs) or one switch, watts."""
MAX_PER_NODE = 2**16
"""The most GPUs, NICs or switch ports of one node or switch."""
MAX_OVERSUBSCRIPTION = 1e3
MAX_LINKS = 1024
"""The most NVLink / xGMI links of one GPU."""

_GBPS = real(0, MAX_GBPS, lo_open=True)
_LATENCY = real(0, MAX_LATENCY_US)
_POWER = real(0, MAX_POWER_W)
_PER_NODE = whole(1, MAX_PER_NODE)
_OVERSUBSCRIPTION = real(0, MAX_OVERSUBSCRIPTION, lo_open=True)
_LINKS = whole(1, MAX_LINKS)
_IN_GBPS = f"in {span(0, MAX_GBPS, lo_open=True)}"
_IN_US = f"in {span(0, MAX_LATENCY_US)}"
_IN_W = f"in {span(0, MAX_POWER_W)}"
_IN_PER_NODE = f"in {span(1, MAX_PER_NODE)}"
_IN_RATIO = f"in {span(0, MAX_OVERSUBSCRIPTION, lo_open=True)}"
_IN_GPUS = f"in {span(1, MAX_GPUS)}"
_IN_LINKS = f"in {span(1, MAX_LINKS)}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScaleUpSpec(_Strict):
    """The node's GPU-to-GPU interconnect.

    ``kind`` (how the graph is built: :mod:`simulator.network.cabling`):

    * ``nvswitch``: every GPU has one NVLink connection of ``bandwidth_GBps`` to the node's
      NVSwitch fabric (one vertex).
    * ``mesh``: every pair of GPUs is linked directly, no switch (AMD Infinity Fabric / xGMI);
      each pair link carries ``bandwidth_GBps / (gpus - 1)``.
    * ``nvlink_bridge``: NVLink bridges join pairs of GPUs (2k, 2k+1) at ``bandwidth_GBps``;
      all other GPU-to-GPU traffic and NIC traffic crosses the host PCIe switch
      (``node.pcie_bandwidth_GBps``, required for this kind).
    * ``pcie``: GPUs meet only through the host PCIe switch (``bandwidth_GBps`` per GPU).
    """

    kind: Literal["nvswitch", "mesh", "nvlink_bridge", "pcie"] = Field(
        description="nvswitch (NVLink through NVSwitch), mesh (a direct link between every GPU pair, "
        "e.g. AMD xGMI), nvlink_bridge (NVLink bridges join GPU pairs 2k, 2k+1, the rest over PCIe) "
        "or pcie (host PCIe switch only)."
    )
    bandwidth_GBps: _GBPS = Field(
        description="Per GPU, one direction, GB/s (10^9 bytes/s): nvswitch/pcie: the GPU's link to "
        "the switch; mesh: the GPU's total over its gpus - 1 peer links; nvlink_bridge: the GPU's "
        f"bridge(s) to its pair partner; {_IN_GBPS}.")
    latency_us: _LATENCY = Field(description=f"One-way GPU-to-GPU latency inside the node, microseconds, {_IN_US}.")
    nvlink_links: _LINKS | None = Field(
        None,
        description="NVLink links per GPU as NCCL counts them (A100 12; H100, H200, B200, GB200 18; "
        "V100 6); on mesh nodes the GPU's Infinity Fabric (xGMI) links (MI300X 7). None: not stated "
        f"(a consumer defaults it from the GPU generation). Not allowed on pcie nodes; {_IN_LINKS}.",
    )
    multicast: Flag | None = Field(
        None,
        description="NVSwitch multicast (NCCL's NVLS) present. true only with kind nvswitch. None: "
        "present on nvswitch nodes of Hopper or newer GPUs, absent otherwise.",
    )
    bridge_links: _LINKS | None = Field(
        None,
        description="nvlink_bridge only: NVLink links between the two GPUs of a bridged pair, all "
        "the pair's bridges together, as NCCL counts them (H100 PCIe: 3 bridges x 4 links = 12); "
        f"{_IN_LINKS}.",
    )


class NodeSpec(_Strict):
    """One node (server): GPUs, their switch, compute NICs, non-GPU power."""

    gpus: _PER_NODE = Field(description=f"GPUs per node, {_IN_PER_NODE}.")
    scale_up: ScaleUpSpec
    nics: _PER_NODE = Field(description=f"Compute-fabric NICs per node; must divide gpus; {_IN_PER_NODE}.")
    nic_bandwidth_Gbps: real(0, MAX_GBITPS, lo_open=True) = Field(
        description=f"Line rate of one NIC, one direction, Gbit/s, in {span(0, MAX_GBITPS, lo_open=True)}.")
    nic_latency_us: _LATENCY = Field(
        description=f"One-way latency of one NIC traversal (host side + cable), microseconds, {_IN_US}."
    )
    pcie_bandwidth_GBps: _GBPS | None = Field(
        None,
        description="PCIe path from GPU (or host switch) to a NIC, one direction, GB/s; on nvlink_bridge "
        "nodes each GPU's link to the host PCIe switch (required there); default: scale_up bandwidth on "
        f"pcie nodes, NIC line rate on nvswitch and mesh nodes; {_IN_GBPS}.",
    )
    power_W: _POWER = Field(description=f"Node power other than GPUs (CPUs, memory, NICs, fans), watts, {_IN_W}.")
    power_source: str = Field(min_length=1, description="Where power_W comes from, or 'estimate: ...'.")
    transport: Literal["ib", "roce", "efa", "tcpxo", "tcpx", "socket"] = Field(
        "ib",
        description="Inter-node transport: ib (InfiniBand) or roce (RoCE, both NCCL's built-in IB plugin), "
        "efa (AWS EFA through aws-ofi-nccl), tcpxo / tcpx (GCP GPUDirect-TCPXO / -TCPX), socket (plain TCP).",
    )
    net_plugin_latency_us: _LATENCY | None = Field(
        None,
        description="Latency the network plugin reports and NCCL adds to every inter-node step "
        "(graph->latencyInter), microseconds: aws-ofi-nccl 75 on p4d/p4de/p5/p5e, 35 on p5en/p6 "
        f"(nccl-model.md section 3). None: the transport's default (0 for ib and roce); {_IN_US}.",
    )
    cpu: Literal["intel", "amd", "arm"] = Field(
        "intel", description="Host CPU vendor: intel, amd or arm (NCCL's inter-node LL bandwidth cap and "
        "network post overhead depend on it).")


class FabricSpec(_Strict):
    """The scale-out switch fabric."""

    kind: Literal["rail_optimized", "fat_tree"] = Field(description="rail_optimized or fat_tree.")
    tiers: whole(1, 3) = Field(description=f"1 (one switch), 2 (leaf-spine) or 3 (leaf-spine-core): in {span(1, 3)}.")
    nodes_per_unit: GpuCount = Field(description=f"Nodes under one group of leaves (scalable unit), {_IN_GPUS}.")
    units_per_group: GpuCount | None = Field(
        None, description=f"fat_tree with 3 tiers only: units per spine group, {_IN_GPUS}.")
    oversubscription: _OVERSUBSCRIPTION = Field(
        1.0, description=f"Leaf downlink:uplink bandwidth ratio; 1 = non-blocking; {_IN_RATIO}.")
    spine_oversubscription: _OVERSUBSCRIPTION = Field(
        1.0, description=f"3 tiers: spine-group downlink:uplink (to core) ratio; 1 = non-blocking; {_IN_RATIO}."
    )
    switch_latency_us: _LATENCY = Field(description=f"One-way latency of one switch traversal, microseconds, {_IN_US}.")
    switch_ports: _PER_NODE = Field(
        description=f"Ports per physical switch at NIC rate (for switch counts), {_IN_PER_NODE}.")
    switch_power_W: _POWER = Field(description=f"Power of one physical switch incl. its optics, watts, {_IN_W}.")
    switch_power_source: str = Field(min_length=1, description="Where switch_power_W comes from, or 'estimate: ...'.")
    max_nodes: GpuCount = Field(description=f"Nodes the file describes, {_IN_GPUS}; with node.gpus, at most "
                                "MAX_GPUS GPUs.")
    grow: Flag = Field(description="Whether a fleet larger than max_nodes may be built (growth rule).")
    collnet: Flag = Field(
        False, description="SHARP / CollNet in-network reduction enabled (NCCL's CollNet algorithms); "
        "InfiniBand only (node.transport ib).")


class TopologyFile(_Strict):
    """A topology file: one node design and one fabric."""

    name: str = Field(min_length=1, description="Display name.")
    source: str = Field(min_length=1, description="Where the figures come from.")
    gpu: str | None = Field(None, description="Catalog slug of the nodes' GPU, e.g. a100-80gb.")
    node: NodeSpec
    fabric: FabricSpec


def _check_consistency(spec: TopologyFile, path: str) -> None:
    """Cross-field rules pydantic's per-field checks cannot express."""
    node, fab = spec.node, spec.fabric
    if fab.max_nodes * node.gpus > MAX_GPUS:
        raise InputError(
            f"{fab.max_nodes} nodes of {node.gpus} GPUs are {fab.max_nodes * node.gpus} GPUs, more than the "
            f"largest fleet trainsim builds (MAX_GPUS = {MAX_GPUS}); describe at most {MAX_GPUS // node.gpus} nodes",
            file=path,
            field="fabric.max_nodes",
        )
    if node.nics > node.gpus or node.gpus % node.nics:
        raise InputError(
            f"{node.nics} NICs for {node.gpus} GPUs; nics must divide gpus (one rail per group of GPUs). "
            "Describe k NICs per GPU as one NIC of k times the bandwidth.",
            file=path,
            field="node.nics",
        )
    if fab.tiers == 1:
        if fab.kind == "rail_optimized":
            raise InputError(
                "rail_optimized needs 2 or 3 tiers (rails meet at the spine); use fat_tree for one switch",
                file=path,
                field="fabric.tiers",
            )
        if fab.max_nodes > fab.nodes_per_unit:
            raise InputError(
                f"a 1-tier fabric is one switch for one unit: max_nodes ({fab.max_nodes}) must be <= "
                f"nodes_per_unit ({fab.nodes_per_unit})",
                file=path,
                field="fabric.max_nodes",
            )
        if fab.grow:
            raise InputError(
                "a 1-tier fabric (one switch) cannot grow; set grow: false", file=path, field="fabric.grow"
            )
    _check_scale_up(spec, path)
    if fab.collnet and node.transport != "ib":
        raise InputError(
            f"collnet (SHARP in-network reduction) needs InfiniBand switches; node.transport is "
            f"{node.transport!r}: set transport: ib or collnet: false",
            file=path,
            field="fabric.collnet",
        )
    needs_groups = fab.kind == "fat_tree" and fab.tiers == 3
    if needs_groups and fab.units_per_group is None:
        raise InputError("fat_tree with 3 tiers needs units_per_group (> 0)", file=path, field="fabric.units_per_group")
    if not needs_groups and fab.units_per_group is not None:
        raise InputError(
            "units_per_group is used only by fat_tree with 3 tiers; remove it",
            file=path,
            field="fabric.units_per_group",
        )


def _check_scale_up(spec: TopologyFile, path: str) -> None:
    """Which scale-up fields go with which ``scale_up.kind``."""
    node = spec.node
    su = node.scale_up
    if su.bridge_links is not None and su.kind != "nvlink_bridge":
        raise InputError(
            f"bridge_links is used only with kind nvlink_bridge (kind is {su.kind!r}); remove it",
            file=path,
            field="node.scale_up.bridge_links",
        )
    if su.multicast and su.kind != "nvswitch":
        raise InputError(
            f"multicast (NVLS) needs an NVSwitch; with kind {su.kind!r} allowed values are false or none",
            file=path,
            field="node.scale_up.multicast",
        )
    if su.nvlink_links is not None and su.kind == "pcie":
        raise InputError(
            "a pcie node has no NVLink; remove nvlink_links (or use kind nvswitch, mesh or nvlink_bridge)",
            file=path,
            field="node.scale_up.nvlink_links",
        )
    if su.kind == "mesh" and su.nvlink_links is not None and su.nvlink_links < node.gpus - 1:
        raise InputError(
            f"a mesh links every GPU to each of its {node.gpus - 1} peers, so nvlink_links must be at "
            f"least {node.gpus - 1}, got {su.nvlink_links}",
            file=path,
            field="node.scale_up.nvlink_links",
        )
    if su.kind == "nvlink_bridge":
        if node.gpus % 2:
            raise InputError(
                f"nvlink_bridge joins GPUs in pairs; node.gpus must be even, got {node.gpus}",
                file=path,
                field="node.gpus",
            )
        if node.pcie_bandwidth_GBps is None:
            raise InputError(
                "nvlink_bridge nodes need pcie_bandwidth_GBps (each GPU's PCIe link to the host switch, "
                f"one direction, GB/s, {_IN_GBPS}): unbridged and NIC traffic crosses it",
                file=path,
                field="node.pcie_bandwidth_GBps",
            )
        if su.nvlink_links is not None and su.bridge_links is not None and su.nvlink_links != su.bridge_links:
            raise InputError(
                f"a bridged GPU's only NVLinks are its bridge's: nvlink_links ({su.nvlink_links}) must equal "
                f"bridge_links ({su.bridge_links}), or leave one out",
                file=path,
                field="node.scale_up.nvlink_links",
            )


def parse_topology_file(text: str, path: str) -> TopologyFile:
    """Validate the YAML text of a topology file. Raises :class:`InputError` naming ``path`` and the field."""
    return validate_topology(parse_yaml(text, file=path), path)


def validate_topology(data: object, path: str) -> TopologyFile:
    """Validate topology-file data (a mapping, e.g. read from YAML or built in memory): every
    field and the cross-field rules. Raises :class:`InputError` naming ``path`` and the field."""
    if not isinstance(data, dict):
        raise InputError(
            f"expected a mapping with fields {', '.join(TopologyFile.model_fields)}, got {type(data).__name__}",
            file=path,
        )
    try:
        spec = TopologyFile.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc, schema=TopologyFile, file=path) from None
    _check_consistency(spec, path)
    return spec

