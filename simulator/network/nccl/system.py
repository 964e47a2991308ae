"""What NCCL's topology detection sees for one communicator.

A :class:`NcclSystem` is everything the tuner (:mod:`simulator.network.nccl.tuner`) needs:
the GPU architecture, how the communicator's ranks sit on nodes, the bandwidths NCCL assigns
to NVLink, PCIe and the NICs (``nccl-model.md`` §3: NCCL's own per-link constants, not line
rates), the network plugin's latency and the features present (NVSwitch multicast for NVLS,
SHARP/CollNet). It is built from a topology and a group
(:func:`simulator.network.nccl.from_topology.system_for`) or from a row of nccl-tests results
(:mod:`simulator.validation.nccl_rows`).

Units: GB/s (10^9 bytes/s, one direction) and microseconds, as NCCL's tables; the tuner
converts to seconds and bytes/s at its edge.
"""

from __future__ import annotations

from dataclasses import dataclass

SCALE_UP = ("nvswitch", "mesh", "nvlink_bridge", "pcie")
"""How GPUs of a node reach each other: NVLink through NVSwitch; a full point-to-point mesh
(AMD Infinity Fabric / xGMI); NVLink bridges between pairs, the rest over PCIe; PCIe only."""

TRANSPORTS = ("ib", "roce", "efa", "tcpxo", "tcpx", "socket")
"""Inter-node transports: InfiniBand and RoCE (NCCL's built-in IB plugin), AWS EFA
(aws-ofi-nccl), GCP GPUDirect-TCPXO and -TCPX, plain TCP sockets."""

CPUS = ("intel", "amd", "arm")
"""Host CPU vendor (NCCL's llMaxBws row across nodes and its network post overhead)."""

ARCHS = {"volta": 70, "ampere": 80, "hopper": 90, "blackwell": 100}
"""GPU generation -> the compute capability (x10) NCCL indexes its tables by."""


@dataclass(frozen=True)
class NcclSystem:
    """One communicator as NCCL sees it.

    Attributes:
        sm: compute capability x 10 (70, 80, 90, 100); AMD parts use the tables of the
            NVIDIA generation their catalog entry names (see ``tables.yaml``).
        n_nodes: nodes the communicator spans (m).
        gpus_per_node: its ranks on each node (g); n = m * g.
        scale_up: one of :data:`SCALE_UP`.
        nvlink_GBps: NCCL's NVLink bandwidth of one GPU (links x per-link constant, §3),
            GB/s; 0 without NVLink. For ``mesh``, the GPU's total over all its peer links.
        pcie_GBps: NCCL's PCIe bandwidth GPU <-> NIC / host (width x speed / 80, §3), GB/s.
        nics_per_node: NICs the node's ranks of this communicator use.
        nic_GBps: NCCL's speed of one NIC (Mb/s / 8000), GB/s.
        transport: one of :data:`TRANSPORTS`.
        latency_inter_us: the network plugin's latency (``graph->latencyInter``), µs:
            0 for IB/RoCE, 75 for EFA on p4d/p5, 35 on p5en (§3).
        cpu: one of :data:`CPUS`.
        multicast: NVSwitch multicast present (NVLS possible on sm >= 90).
        collnet: a SHARP/CollNet plugin is enabled.
        version: NCCL version ``"major.minor"``, e.g. ``"2.27"``.
    """

    sm: int
    n_nodes: int
    gpus_per_node: int
    scale_up: str
    nvlink_GBps: float
    pcie_GBps: float
    nics_per_node: int
    nic_GBps: float
    transport: str = "ib"
    latency_inter_us: float = 0.0
    cpu: str = "intel"
    multicast: bool = False
    collnet: bool = False
    version: str = "2.29"

    @property
    def n_ranks(self) -> int:
        """Ranks of the communicator, n = m * g."""
        return self.n_nodes * self.gpus_per_node
