"""What NCCL sees of one communicator on a trainsim topology: :func:`system_for`.

A communicator is a group of GPUs of a built :class:`~simulator.network.topology.Topology`.
NCCL's topology detection reduces it to an :class:`~simulator.network.nccl.system.NcclSystem`
(``nccl-model.md`` §1-§3); this module reads that from the topology file:

- ``n_nodes``: the nodes the group spans; ``gpus_per_node``: its ranks per node (the largest
  count when they are uneven: NCCL's ``ppn`` is set by the fullest node).
- ``sm``: the compute capability of the GPU generation (:data:`SM_OF_GENERATION`), the
  caller's: the architecture of the device the scenario runs (``GPUSpec.generation``; the
  network layer does not read the GPU catalog, so the topology's ``gpu`` is not consulted).
- ``nvlink_GBps``: ``nvswitch``: the GPU's NVLink links (``scale_up.nvlink_links``, default by
  generation: :data:`DEFAULT_NVLINK_LINKS`) x NCCL's per-link constant of the sm (§3, from
  :mod:`simulator.network.nccl.tables`); ``nvlink_bridge``: the bridge's links
  (``bridge_links``, else ``nvlink_links``) x the per-link constant, else the file's bridge
  bandwidth; ``mesh``: the file's ``scale_up.bandwidth_GBps`` (the GPU's total over its peer
  links); ``pcie``: 0.
- ``pcie_GBps``: 0.75 x the file's GPU <-> NIC PCIe bandwidth (one direction; when not stated,
  the default of :mod:`simulator.network.cabling`: the scale-up bandwidth on ``pcie`` nodes,
  the NIC line rate otherwise). NCCL assigns PCIe ``width x speed / 80`` GB/s (§3: Gen4 x16 =
  24, Gen5 x16 = 48), 0.75 of the one-direction line rate (Gen4 x16 32, Gen5 x16 64 GB/s).
- ``nics_per_node``: the distinct rails (NICs, :meth:`Topology.nic_of`) the group's ranks reach
  on one node (the fewest over its nodes: NCCL's ring channels enter every node). With ``k``
  NICs per 8 GPUs, ``g`` ranks spread over the rails reach ``min(g, k)`` of them, and one rank
  per node reaches one.
- ``nic_GBps``: ``nic_bandwidth_Gbps / 8`` (Mb/s / 8000, §3).
- ``transport``, ``latency_inter_us`` (``net_plugin_latency_us``, None -> 0), ``cpu``,
  ``multicast`` (None -> an NVSwitch node of Hopper or newer) and ``collnet`` from the file.

Systems are cached per (topology, group shape, generation, version) in the topology's
:class:`~simulator.network.plan_cache.PlanCache`. Units: GB/s and µs, as NcclSystem's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from simulator.core.errors import InputError
from simulator.network.nccl import tables
from simulator.network.nccl.system import NcclSystem
from simulator.network.topology import Topology

SM_OF_GENERATION = {"volta": 70, "ampere": 80, "ada": 89, "hopper": 90, "blackwell": 100,
                    "cdna2": 80, "cdna3": 90}
"""GPU generation (catalog ``architecture``) -> the compute capability x 10 NCCL indexes its
tables by. Ada is sm89 (NCCL's Ampere rows). AMD parts (RCCL) use the NVIDIA generation of the
same era: CDNA2 (MI250) with Ampere, CDNA3 (MI300) with Hopper."""

DEFAULT_NVLINK_LINKS = {"volta": 6, "ampere": 12, "ada": 0, "hopper": 18, "blackwell": 18,
                        "cdna2": 8, "cdna3": 7}
"""NVLink (or xGMI) links per GPU when the topology file does not state ``nvlink_links``:
V100 6, A100 12, H100/H200/B200/GB200 18 (NVIDIA datasheets); MI250X 8, MI300X 7 Infinity
Fabric links (AMD datasheets)."""

PCIE_FRACTION = 0.75
"""NCCL's PCIe bandwidth over the one-direction line rate: width x speed / 80 (§3)."""


def group_shape(topology: Topology, group: Sequence[int]) -> tuple[int, int, int]:
    """(nodes spanned, most ranks on one node, fewest distinct rails reached on one node)."""
    gpn = topology.gpus_per_node
    per_node = Counter(int(r) // gpn for r in group)
    rails: dict[int, set[int]] = {}
    for r in group:
        rails.setdefault(int(r) // gpn, set()).add(topology.nic_of(int(r)))
    return len(per_node), max(per_node.values()), min(len(s) for s in rails.values())


def system_for(topology: Topology, group: Sequence[int], version: str, generation: str) -> NcclSystem:
    """The :class:`NcclSystem` of the communicator ``group`` (GPU indices of ``topology``) for
    NCCL ``version`` (``"2.27"``), on GPUs of ``generation`` (``"ampere"``, a catalog
    architecture). See the module docstring for each field. Cached per (group shape,
    generation, version).

    Raises:
        InputError: an empty group, or a generation NCCL's model has no tables for.
    """
    if not len(group):
        raise InputError("a communicator needs at least one GPU", field="groups")
    cache = topology.plan_cache.nccl_systems
    by_group = (tuple(group), generation, version)  # the fast path: this very group asked before
    system = cache.get(by_group)
    if system is None:
        shape = group_shape(topology, group)
        key = (shape, generation, version)
        system = cache.get(key)
        if system is None:
            system = cache[key] = _system(topology, shape, generation, version)
        cache[by_group] = system
    return system


def _system(topology: Topology, shape: tuple[int, int, int], gen: str, version: str) -> NcclSystem:
    if gen not in SM_OF_GENERATION:
        raise InputError(f"NCCL's model has no tables for GPU generation {gen!r}; known: "
                         f"{', '.join(SM_OF_GENERATION)}", field="generation")
    sm = SM_OF_GENERATION[gen]
    spec = topology.spec
    node, su = spec.node, spec.node.scale_up
    n_nodes, gpn, nics = shape
    if su.kind == "nvswitch":
        links = su.nvlink_links if su.nvlink_links is not None else DEFAULT_NVLINK_LINKS[gen]
        nvlink = links * tables.nvlink_per_link_GBps(sm)
    elif su.kind == "nvlink_bridge":
        links = su.bridge_links if su.bridge_links is not None else su.nvlink_links
        nvlink = links * tables.nvlink_per_link_GBps(sm) if links is not None else su.bandwidth_GBps
    elif su.kind == "mesh":
        nvlink = su.bandwidth_GBps
    else:
        nvlink = 0.0
    nic_GBps = node.nic_bandwidth_Gbps / 8.0
    if node.pcie_bandwidth_GBps is not None:
        pcie_line = node.pcie_bandwidth_GBps
    else:
        pcie_line = su.bandwidth_GBps if su.kind == "pcie" else nic_GBps
    multicast = su.multicast if su.multicast is not None else (su.kind == "nvswitch" and sm >= 90)
    return NcclSystem(
        sm=sm, n_nodes=n_nodes, gpus_per_node=gpn, scale_up=su.kind, nvlink_GBps=float(nvlink),
        pcie_GBps=PCIE_FRACTION * pcie_line, nics_per_node=nics, nic_GBps=nic_GBps,
        transport=node.transport,
        latency_inter_us=float(node.net_plugin_latency_us) if node.net_plugin_latency_us is not None else 0.0,
        cpu=node.cpu, multicast=bool(multicast), collnet=bool(spec.fabric.collnet), version=version,
    )
