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

from simulator.core.errors import InputError, from_validation_error
from simulator.core.yamlfile import parse_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScaleUpSpec(_Strict):
    """The node's GPU-to-GPU interconnect."""

    kind: Literal["nvswitch", "pcie"] = Field(
        description="nvswitch (NVLink through NVSwitch) or pcie (host PCIe switch)."
    )
    bandwidth_GBps: float = Field(gt=0, description="Per GPU, one direction, GB/s (10^9 bytes/s).")
    latency_us: float = Field(ge=0, description="One-way GPU-to-GPU latency inside the node, microseconds.")


class NodeSpec(_Strict):
    """One node (server): GPUs, their switch, compute NICs, non-GPU power."""

    gpus: int = Field(gt=0, description="GPUs per node.")
    scale_up: ScaleUpSpec
    nics: int = Field(gt=0, description="Compute-fabric NICs per node; must divide gpus.")
    nic_bandwidth_Gbps: float = Field(gt=0, description="Line rate of one NIC, one direction, Gbit/s.")
    nic_latency_us: float = Field(
        ge=0, description="One-way latency of one NIC traversal (host side + cable), microseconds."
    )
    pcie_bandwidth_GBps: float | None = Field(
        None,
        gt=0,
        description="PCIe path from GPU (or host switch) to a NIC, one direction, GB/s; "
        "default: scale_up bandwidth on pcie nodes, NIC line rate on nvswitch nodes.",
    )
    power_W: float = Field(ge=0, description="Node power other than GPUs (CPUs, memory, NICs, fans), watts.")
    power_source: str = Field(min_length=1, description="Where power_W comes from, or 'estimate: ...'.")


class FabricSpec(_Strict):
    """The scale-out switch fabric."""

    kind: Literal["rail_optimized", "fat_tree"] = Field(description="rail_optimized or fat_tree.")
    tiers: Literal[1, 2, 3] = Field(description="1 (one switch), 2 (leaf-spine) or 3 (leaf-spine-core).")
    nodes_per_unit: int = Field(gt=0, description="Nodes under one group of leaves (scalable unit).")
    units_per_group: int | None = Field(None, gt=0, description="fat_tree with 3 tiers only: units per spine group.")
    oversubscription: float = Field(1.0, gt=0, description="Leaf downlink:uplink bandwidth ratio; 1 = non-blocking.")
    spine_oversubscription: float = Field(
        1.0, gt=0, description="3 tiers: spine-group downlink:uplink (to core) ratio; 1 = non-blocking."
    )
    switch_latency_us: float = Field(ge=0, description="One-way latency of one switch traversal, microseconds.")
    switch_ports: int = Field(gt=0, description="Ports per physical switch at NIC rate (for switch counts).")
    switch_power_W: float = Field(ge=0, description="Power of one physical switch incl. its optics, watts.")
    switch_power_source: str = Field(min_length=1, description="Where switch_power_W comes from, or 'estimate: ...'.")
    max_nodes: int = Field(gt=0, description="Nodes the file describes.")
    grow: bool = Field(description="Whether a fleet larger than max_nodes may be built (growth rule).")


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

