"""The topology file: its schema (one node design and one fabric) and its validation.

A topology file (YAML, ``topologies/*.yaml``) is read by
:func:`simulator.network.topology.load_topology`. Units are those of the field names:
GB/s (10^9 bytes/s) and Gbit/s in one direction, microseconds one way, watts. Fields
are checked one by one by pydantic and across fields by :func:`parse_topology_file`
(NICs divide GPUs, what a 1-tier fabric can be, ``units_per_group`` only for a 3-tier
fat tree).
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

_GBPS = real(0, MAX_GBPS, lo_open=True)
_LATENCY = real(0, MAX_LATENCY_US)
_POWER = real(0, MAX_POWER_W)
_PER_NODE = whole(1, MAX_PER_NODE)
_OVERSUBSCRIPTION = real(0, MAX_OVERSUBSCRIPTION, lo_open=True)
_IN_GBPS = f"in {span(0, MAX_GBPS, lo_open=True)}"
_IN_US = f"in {span(0, MAX_LATENCY_US)}"
_IN_W = f"in {span(0, MAX_POWER_W)}"
_IN_PER_NODE = f"in {span(1, MAX_PER_NODE)}"
_IN_RATIO = f"in {span(0, MAX_OVERSUBSCRIPTION, lo_open=True)}"
_IN_GPUS = f"in {span(1, MAX_GPUS)}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScaleUpSpec(_Strict):
    """The node's GPU-to-GPU interconnect."""

    kind: Literal["nvswitch", "pcie"] = Field(
        description="nvswitch (NVLink through NVSwitch) or pcie (host PCIe switch)."
    )
    bandwidth_GBps: _GBPS = Field(description=f"Per GPU, one direction, GB/s (10^9 bytes/s), {_IN_GBPS}.")
    latency_us: _LATENCY = Field(description=f"One-way GPU-to-GPU latency inside the node, microseconds, {_IN_US}.")


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
        description="PCIe path from GPU (or host switch) to a NIC, one direction, GB/s; "
        f"default: scale_up bandwidth on pcie nodes, NIC line rate on nvswitch nodes; {_IN_GBPS}.",
    )
    power_W: _POWER = Field(description=f"Node power other than GPUs (CPUs, memory, NICs, fans), watts, {_IN_W}.")
    power_source: str = Field(min_length=1, description="Where power_W comes from, or 'estimate: ...'.")


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
    needs_groups = fab.kind == "fat_tree" and fab.tiers == 3
    if needs_groups and fab.units_per_group is None:
        raise InputError("fat_tree with 3 tiers needs units_per_group (> 0)", file=path, field="fabric.units_per_group")
    if not needs_groups and fab.units_per_group is not None:
        raise InputError(
            "units_per_group is used only by fat_tree with 3 tiers; remove it",
            file=path,
            field="fabric.units_per_group",
        )


def parse_topology_file(text: str, path: str) -> TopologyFile:
    """Validate the YAML text of a topology file. Raises :class:`InputError` naming ``path`` and the field."""
    data = parse_yaml(text, file=path)
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

