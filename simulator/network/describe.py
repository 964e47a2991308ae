"""A topology from a short description: GPU, GPUs per node, scale-up kind, NICs and transport.

:func:`describe_topology` builds a :class:`~simulator.network.topology_file.TopologyFile` in
memory (:func:`describe_topology_file`) and then the :class:`~simulator.network.topology.Topology`
of a fleet. What the description does not state is filled in as follows:

* the scale-up bandwidth (GB/s per GPU, one direction) is the catalog GPU's
  ``intra_node_bandwidth_GBps`` (``simulator/hardware/gpus.yaml``) when ``gpu`` is a catalog
  entry (:class:`~simulator.hardware.catalog.GPUSpec`; the network layer does not read the
  catalog itself), except on ``nvlink_bridge`` nodes, where the catalog figure of a PCIe card is
  its PCIe link and the bridge bandwidth must be given;
* the fabric is rail-optimised, two tiers, non-blocking, in units of ``min(32, nodes)`` nodes,
  and may grow;
* latencies are the estimates of the bundled files (:data:`SCALE_UP_LATENCY_US`,
  :data:`NIC_LATENCY_US`, :data:`SWITCH_LATENCY_US`); power is 0 W (not modelled) unless given.

Every figure of the result is "generated from a description" (its ``source``), not sourced data.
"""

from __future__ import annotations

from typing import Protocol, get_args

from simulator.core.errors import InputError
from simulator.network.topology import Topology, _fleet_shape, build_topology
from simulator.network.topology_file import NodeSpec, ScaleUpSpec, TopologyFile, validate_topology

SCALE_UP_KINDS: tuple[str, ...] = get_args(ScaleUpSpec.model_fields["kind"].annotation)
"""The ``scale_up`` values: nvswitch, mesh, nvlink_bridge, pcie."""
TRANSPORTS: tuple[str, ...] = get_args(NodeSpec.model_fields["transport"].annotation)
"""The ``transport`` values: ib, roce, efa, tcpxo, tcpx, socket."""

SCALE_UP_LATENCY_US = {"nvswitch": 2.0, "mesh": 2.0, "nvlink_bridge": 2.0, "pcie": 3.0}
"""Estimates, one-way GPU-to-GPU inside a node, microseconds: NVLink / xGMI 2 us (the prior of
``topologies/dgx-a100-superpod.yaml``), PCIe 3 us (``topologies/pcie-ethernet-small.yaml``)."""
NIC_LATENCY_US = {"ib": 1.5, "roce": 1.5, "efa": 5.0, "tcpxo": 5.0, "tcpx": 5.0, "socket": 10.0}
"""Estimates, one NIC traversal, microseconds: RDMA NICs 1.5 us (the bundled DGX files), EFA and
GPUDirect-TCPX(O) 5 us (``topologies/aws-p5.yaml``, ``gcp-a3-mega.yaml``), kernel TCP 10 us."""
SWITCH_LATENCY_US = {"ib": 0.3, "roce": 0.6, "efa": 1.0, "tcpxo": 1.0, "tcpx": 1.0, "socket": 1.0}
"""Estimates, one switch traversal incl. cable time, microseconds: InfiniBand 0.3 us (the bundled
DGX files), RoCE 0.6 us (``topologies/roce-h100.yaml``), cloud Ethernet fabrics 1 us."""

SOURCE = "generated from a description"
"""The ``source`` of a described topology."""
DESCRIPTION = "(description)"
"""What errors about the description's own arguments name as their file."""


class CatalogGpu(Protocol):
    """What a description needs of a catalog GPU (:class:`simulator.hardware.catalog.GPUSpec`
    has it): its slug and its scale-up bandwidth per GPU, one direction, bytes/s."""

    name: str
    intra_node_bandwidth_Bps: float


def describe_topology_file(
    gpu: str | CatalogGpu,
    gpus_per_node: int,
    scale_up: str,
    nics_per_node: int,
    nic_Gbps: float,
    transport: str = "ib",
    n_gpus: int | None = None,
    *,
    bandwidth_GBps: float | None = None,
    scale_up_latency_us: float | None = None,
    nvlink_links: int | None = None,
    multicast: bool | None = None,
    bridge_links: int | None = None,
    nic_latency_us: float | None = None,
    pcie_bandwidth_GBps: float | None = None,
    net_plugin_latency_us: float | None = None,
    cpu: str = "intel",
    collnet: bool = False,
    nodes_per_unit: int | None = None,
    max_nodes: int | None = None,
    switch_latency_us: float | None = None,
    switch_ports: int = 64,
    power_W: float = 0.0,
    power_source: str = "not modelled (generated from a description)",
    switch_power_W: float = 0.0,
    switch_power_source: str = "not modelled (generated from a description)",
    name: str | None = None,
    source: str = SOURCE,
    path: str = "(generated)",
) -> TopologyFile:
    """The validated topology file of a description (arguments as :func:`describe_topology`).

    Raises :class:`InputError`: ``scale_up`` or ``transport`` not one of their values (naming
    the argument and the values), no scale-up bandwidth (a GPU slug without ``bandwidth_GBps``,
    or ``nvlink_bridge`` without it), or any topology-file rule (naming ``path`` and the file's
    field, e.g. ``node.nics`` when ``nics_per_node`` does not divide ``gpus_per_node``).
    """
    _check_kinds(scale_up, transport)
    slug = gpu if isinstance(gpu, str) else gpu.name
    if bandwidth_GBps is None:
        bandwidth_GBps = _catalog_bandwidth_GBps(gpu, scale_up)
    if n_gpus is not None and not isinstance(n_gpus, bool) and isinstance(n_gpus, int) and n_gpus > 0:
        n_nodes = max(1, n_gpus // max(1, gpus_per_node))  # other values: build_topology says why
    else:
        n_nodes = max_nodes or 1
    su = _stated(dict(kind=scale_up, bandwidth_GBps=bandwidth_GBps,
                      latency_us=SCALE_UP_LATENCY_US[scale_up] if scale_up_latency_us is None else scale_up_latency_us),
                 nvlink_links=(nvlink_links, None), multicast=(multicast, None), bridge_links=(bridge_links, None))
    node = _stated(dict(gpus=gpus_per_node, scale_up=su, nics=nics_per_node, nic_bandwidth_Gbps=nic_Gbps,
                        nic_latency_us=NIC_LATENCY_US[transport] if nic_latency_us is None else nic_latency_us,
                        power_W=power_W, power_source=power_source),
                   pcie_bandwidth_GBps=(pcie_bandwidth_GBps, None), transport=(transport, "ib"),
                   net_plugin_latency_us=(net_plugin_latency_us, None), cpu=(cpu, "intel"))
    fabric = _stated(dict(
        kind="rail_optimized", tiers=2,
        nodes_per_unit=max(1, min(32, n_nodes)) if nodes_per_unit is None else nodes_per_unit,
        switch_latency_us=SWITCH_LATENCY_US[transport] if switch_latency_us is None else switch_latency_us,
        switch_ports=switch_ports, switch_power_W=switch_power_W, switch_power_source=switch_power_source,
        max_nodes=n_nodes if max_nodes is None else max_nodes, grow=True,
    ), collnet=(collnet, False))
    if name is None:
        name = f"{gpus_per_node} x {slug} per node ({scale_up}), {nics_per_node} x {nic_Gbps:g} Gb/s {transport} per node"
    return validate_topology(dict(name=name, source=source, gpu=slug, node=node, fabric=fabric), path)


def _check_kinds(scale_up: str, transport: str) -> None:
    if scale_up not in SCALE_UP_KINDS:
        raise InputError(f"{scale_up!r} is not a scale-up kind; use one of {', '.join(SCALE_UP_KINDS)}",
                         file=DESCRIPTION, field="scale_up")
    if transport not in TRANSPORTS:
        raise InputError(f"{transport!r} is not a transport; use one of {', '.join(TRANSPORTS)}",
                         file=DESCRIPTION, field="transport")


def _catalog_bandwidth_GBps(gpu: str | CatalogGpu, scale_up: str) -> float:
    """The catalog GPU's scale-up bandwidth, GB/s per GPU one direction."""
    if scale_up == "nvlink_bridge":
        raise InputError(
            "nvlink_bridge needs the bridge bandwidth (GB/s per GPU, one direction): the catalog's "
            "intra_node_bandwidth of a PCIe card is its PCIe link, not its bridge",
            file=DESCRIPTION, field="bandwidth_GBps")
    if isinstance(gpu, str):
        raise InputError(
            f"GPU {gpu!r} is given by name, so its scale-up bandwidth is unknown here: give bandwidth_GBps "
            "(GB/s per GPU, one direction) or the catalog entry (simulator.hardware.catalog.load_catalog().get(name))",
            file=DESCRIPTION, field="bandwidth_GBps")
    return gpu.intra_node_bandwidth_Bps / 1e9


def _stated(data: dict, **optional: tuple[object, object]) -> dict:
    """``data`` plus each optional ``key: (value, default)`` whose value is not its default: fields
    a description does not state stay unset in the file, as in a YAML file without them."""
    return {**data, **{key: value for key, (value, default) in optional.items() if value != default}}


def describe_topology(
    gpu: str | CatalogGpu,
    gpus_per_node: int,
    scale_up: str,
    nics_per_node: int,
    nic_Gbps: float,
    transport: str = "ib",
    n_gpus: int | None = None,
    **optional,
) -> Topology:
    """A fleet of ``n_gpus`` GPUs (None: one node) on nodes of ``gpus_per_node`` GPUs ``gpu`` (a
    catalog entry, or a catalog slug with ``bandwidth_GBps`` given) joined by ``scale_up``
    (nvswitch, mesh, nvlink_bridge or pcie), each node with ``nics_per_node`` NICs of ``nic_Gbps`` Gbit/s (one direction) over ``transport``, on a
    rail-optimised non-blocking two-tier fabric.

    ``optional`` (keyword-only, units in the names; see :func:`describe_topology_file`):
    ``bandwidth_GBps`` (scale-up, GB/s per GPU one direction; default: the catalog's
    ``intra_node_bandwidth_GBps``), ``scale_up_latency_us``, ``nvlink_links``, ``multicast``,
    ``bridge_links``, ``nic_latency_us``, ``pcie_bandwidth_GBps``, ``net_plugin_latency_us``,
    ``cpu``, ``collnet``, ``nodes_per_unit``, ``max_nodes``, ``switch_latency_us``,
    ``switch_ports``, ``power_W``, ``power_source``, ``switch_power_W``,
    ``switch_power_source``, ``name``, ``source``, ``path`` (what errors and
    ``Topology.file`` call the description).

    Raises :class:`InputError` as :func:`describe_topology_file`, and as
    :func:`~simulator.network.topology.build_topology` for a fleet size that does not fill
    whole nodes (field ``n_gpus``). An unknown keyword raises :class:`TypeError`.
    """
    path = optional.get("path", "(generated)")
    spec = describe_topology_file(gpu, gpus_per_node, scale_up, nics_per_node, nic_Gbps, transport, n_gpus,
                                  **optional)
    return build_topology(spec, n_gpus, path=path)


def described_fleet_shape(spec: TopologyFile, n_gpus: int | None, *, path: str, file: str | None = None) -> tuple[int, int]:
    """``(n_nodes, gpus_per_node)`` of a fleet of ``n_gpus`` GPUs (None: ``fabric.max_nodes``
    nodes) on the described ``spec``, checked as :func:`build_topology` checks them (same
    errors, field ``n_gpus``) without building the graph: what a plan check needs first."""
    return _fleet_shape(spec, n_gpus, path, file)
