"""NCCL's topology search, reduced to the rules of ``nccl-model.md`` §4.

For each algorithm pattern NCCL finds a channel count C and a bandwidth per channel inside
the node (``bwIntra``) and across nodes (``bwInter``): it tries the descending speeds of §4.1
and keeps the largest aggregate C x speed whose channels fit on every link. Here the links are
summarised by the few bandwidths of :class:`~simulator.network.nccl.system.NcclSystem`, so the
channel capacity at a speed is a closed formula (§4.2) instead of a graph walk.

Units: GB/s per channel (NCCL's). Results are cached per (frozen) system.

Assumptions beyond the spec:
- ``mesh`` (AMD xGMI full mesh, RCCL): ``nvlink_GBps`` is the total of a GPU's peer links in a
  full mesh of ``mesh_gpus`` (8) GPUs; one link carries ``nvlink_GBps / 7``. RCCL runs rings
  on disjoint links, so the g-1 links to the communicator's peers are used at once and a
  channel at speed s fits ``(g-1) * floor(link / s)`` times. RCCL's search is not specified.
- ``nvlink_bridge``: two GPUs of a bridged pair ring over NVLink; a ring of more than two GPUs
  crosses PCIe on every other hop, so PCIe bounds its channels (``floor(pcie / s)``).
- ``pcie``: every ring hop uses the GPU's PCIe link (``floor(pcie / s)``); one CPU socket.
- Across nodes the formula of §4.2 is used for every scale-up, with the intra-node bandwidth
  above in place of B_gpu.
- Tree = ring graph (§4.2: forced to the ring's channel count), with the 2-node raise of
  b_intra; CollNet (both variants) = ring graph, one head per channel.
- NVLS: C = min(32, g) on one node, min(32, NICs, g) across nodes; each GPU carries C
  channels plus ceil(C/g) as a head: (C + ceil(C/g)) s <= B_gpu (= (g+1) s when C = g).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from simulator.network.nccl.system import NcclSystem
from simulator.network.nccl.tables import Tables, for_version


@dataclass(frozen=True)
class Graph:
    """One search result (NCCL's ``ncclTopoGraph``).

    Attributes:
        channels: C, the number of channels found (before the runtime duplication).
        bw_intra_GBps: bandwidth of one channel inside the node, GB/s.
        bw_inter_GBps: bandwidth of one channel across nodes (NIC), GB/s; on one node the
            value NCCL's second pass leaves (it bounds nothing there).
    """

    channels: int
    bw_intra_GBps: float
    bw_inter_GBps: float


def intra_total_GBps(system: NcclSystem) -> float:
    """The GPU's intra-node bandwidth NCCL's ``totalBw`` compares with: NVLink total (only the
    communicator's g-1 peer links on a mesh), else PCIe, GB/s."""
    if system.scale_up == "mesh":
        return max(system.gpus_per_node - 1, 1) * _mesh_link_GBps(system)
    if system.scale_up in ("nvswitch", "nvlink_bridge") and system.nvlink_GBps > 0:
        return system.nvlink_GBps
    return system.pcie_GBps


def intra_uses_nvlink(system: NcclSystem) -> bool:
    """True if every intra-node hop of a ring is NVLink (NCCL's intra path type <= NVB)."""
    if system.nvlink_GBps <= 0:
        return False
    if system.scale_up in ("nvswitch", "mesh"):
        return True
    return system.scale_up == "nvlink_bridge" and system.gpus_per_node <= 2


def _mesh_link_GBps(system: NcclSystem) -> float:
    return system.nvlink_GBps / (_tables(system).search["mesh_gpus"]["value"] - 1)


def _ring_intra_GBps(system: NcclSystem) -> float:
    """Bandwidth a ring's intra-node hops can share, GB/s (see the module assumptions)."""
    if intra_uses_nvlink(system):
        return intra_total_GBps(system)
    return system.pcie_GBps


def _intra_channels(system: NcclSystem, speed: float) -> int:
    """Channels at ``speed`` that fit inside one node (no NIC)."""
    g = system.gpus_per_node
    if g <= 1:
        return 1 << 30
    if system.scale_up == "mesh":
        return (g - 1) * math.floor(_mesh_link_GBps(system) / speed + 1e-9)
    return math.floor(_ring_intra_GBps(system) / speed + 1e-9)


def _nic_path_GBps(system: NcclSystem) -> float:
    """Bandwidth of the GPU -> NIC path, min(NIC, PCIe), GB/s."""
    return min(system.nic_GBps, system.pcie_GBps) if system.pcie_GBps > 0 else system.nic_GBps


def _ring_channels(system: NcclSystem, speed: float) -> int:
    """§4.2 ring channel capacity at ``speed`` (one node, or through the NICs across nodes)."""
    if system.n_nodes <= 1:
        return _intra_channels(system, speed)
    g = system.gpus_per_node
    nic = system.nics_per_node * math.floor(system.nic_GBps / speed + 1e-9)
    pcie = math.floor(g * system.pcie_GBps / speed + 1e-9) if system.pcie_GBps > 0 else nic
    if g <= 1:
        return min(nic, pcie)
    intra = math.floor(_ring_intra_GBps(system) * g / (speed * (g - 1)) + 1e-9)
    return min(nic, intra, pcie)


def _max_path_GBps(system: NcclSystem) -> float:
    """NCCL's ``maxBw``: best GPU -> GPU path on one node, GPU -> NIC path across nodes."""
    if system.n_nodes > 1:
        return _nic_path_GBps(system)
    if system.scale_up == "mesh":
        return _mesh_link_GBps(system)
    return system.nvlink_GBps if system.nvlink_GBps > 0 else system.pcie_GBps


def _start_index(speeds: tuple[float, ...], max_bw: float) -> int:
    for i, s in enumerate(speeds):
        if s <= max_bw + 1e-9:
            return i
    return len(speeds) - 1


def _search_ring(system: NcclSystem, t: Tables) -> Graph | None:
    """§4.2 ring search: descend the speeds, keep the best C x s, then try to raise s (pass 2)."""
    speeds = t.speeds(system.sm, with_nic=system.n_nodes > 1)
    cap = t.search["max_ring_channels"]["value"]
    total = intra_total_GBps(system)
    ratio = t.search["lower_speed_ratio"]["value"]
    best_c, best_i = 0, -1
    i = _start_index(speeds, _max_path_GBps(system))
    while True:
        c = min(_ring_channels(system, speeds[i]), cap)
        if c * speeds[i] > best_c * (speeds[best_i] if best_i >= 0 else 0.0) + 1e-9:
            best_c, best_i = c, i
        if best_c > 0 and c * speeds[i] >= total - 1e-9:
            break
        if i + 1 >= len(speeds) or (best_c > 0 and speeds[i + 1] / speeds[best_i] <= ratio):
            break
        i += 1
    if best_c == 0:
        return None
    while best_i > 0 and _ring_channels(system, speeds[best_i - 1]) >= best_c:
        best_i -= 1
    return _dup_channels(system, t, best_c, speeds[best_i])


def _dup_channels(system: NcclSystem, t: Tables, channels: int, bw: float) -> Graph:
    """``ncclTopoDupChannels``: C -> min(2C, 32), b -> b/2 unless b < 25 or (cc > 80, b < 50, C > 4)."""
    rule = t.search["dup_channels"]
    hopper_keep = system.sm > rule["hopper_cc_above"] and bw < rule["hopper_min_bw"] and channels > rule["hopper_max_channels"]
    if bw < rule["min_bw"] or hopper_keep:
        return Graph(channels, bw, bw)
    cap = t.search["max_ring_channels"]["value"]
    return Graph(min(2 * channels, cap), bw / 2, bw / 2)


def _search_tree(system: NcclSystem, t: Tables, ring: Graph) -> Graph:
    """Tree: the ring's channels; on 2 nodes b_intra rises while below 2 b_inter and it fits."""
    if system.n_nodes != 2:
        return ring
    speeds = t.speeds(system.sm, with_nic=True)
    higher = [s for s in reversed(speeds) if s > ring.bw_intra_GBps + 1e-9]
    intra = ring.bw_intra_GBps
    for s in higher:
        if intra >= 2 * ring.bw_inter_GBps - 1e-9 or _intra_channels(system, s) < ring.channels:
            break
        intra = s
    return Graph(ring.channels, intra, ring.bw_inter_GBps)


def _search_nvls(system: NcclSystem, t: Tables) -> Graph | None:
    """§4.2 NVLS: C heads; (C + ceil(C/g)) s <= B_gpu fixes b_intra; b_inter the NIC speed
    (one node: raised while below 2 b_intra)."""
    g = system.gpus_per_node
    limit = t.search["nvls_max_channels"]["value"]
    channels = min(limit, g) if system.n_nodes <= 1 else min(limit, system.nics_per_node, g)
    if channels < 1:
        return None
    speeds = t.speeds(system.sm, with_nic=system.n_nodes > 1)
    load = channels + math.ceil(channels / g)
    fits = [i for i, s in enumerate(speeds) if load * s <= system.nvlink_GBps + 1e-9]
    if not fits:
        return None
    intra_i = fits[0]
    intra = speeds[intra_i]
    if system.n_nodes > 1:
        inter = speeds[_start_index(speeds, _nic_path_GBps(system))]
        return Graph(channels, intra, inter)
    inter_i = intra_i
    while inter_i > 0 and speeds[inter_i] < 2 * intra - 1e-9:
        inter_i -= 1
    return Graph(channels, intra, speeds[inter_i])


def nvls_possible(system: NcclSystem) -> bool:
    """NVLS hardware: NVSwitch, multicast, sm90 or newer (§7.1)."""
    t = _tables(system)
    return system.scale_up == "nvswitch" and system.multicast and system.sm >= t.selection["nvls_min_cc"]["value"]


@functools.lru_cache(maxsize=4096)
def _search_cached(system: NcclSystem) -> tuple[tuple[str, Graph], ...]:
    t = _tables(system)
    ring = _search_ring(system, t)
    if ring is None:
        return ()
    found = [("ring", ring), ("tree", _search_tree(system, t, ring))]
    if nvls_possible(system):
        nvls = _search_nvls(system, t)
        if nvls is not None:
            found.append(("nvls", nvls))
    if system.collnet and system.n_nodes > 1:
        found.append(("collnet", ring))
    return tuple(found)


def _tables(system: NcclSystem) -> Tables:
    return for_version(system.version)


def search(system: NcclSystem) -> dict[str, Graph]:
    """§4 search outcome per pattern: keys among "ring", "tree", "nvls", "collnet" (absent when
    the hardware has no such pattern or no channel fits). InputError for an unknown version."""
    return dict(_search_cached(system))


def runtime_channels(system: NcclSystem, graphs: dict[str, Graph]) -> int:
    """``comm->nChannels`` (§4.3): 2 C_ring, doubled again when cc >= 90, m > 1, b_intra > 45
    and the count is below 16, and doubled for "unpack" NICs (GPUDirect TCPXO)."""
    t = _tables(system)
    rule = t.runtime_channels
    ring = graphs["ring"]
    count = 2 * ring.channels
    if (
        system.sm >= rule["hopper_min_cc"]
        and system.n_nodes > 1
        and ring.bw_intra_GBps > rule["hopper_min_bw_intra"]
        and count < rule["hopper_below"]
    ):
        count *= 2
    if system.n_nodes > 1 and system.transport in rule["unpack_transports"]:
        count *= 2
    return min(count, rule["max_channels"])


def nvls_channels(system: NcclSystem, graphs: dict[str, Graph]) -> int:
    """Channels an NVLS kernel runs with: 16 on sm90; 32 (several nodes) or 24 (one node) on
    sm100; from 2.28, across nodes, at most ``comm->nChannels`` (§4.3, §7.2)."""
    t = _tables(system)
    rule = t.runtime_channels["nvls"]
    if system.sm >= 100:
        count = rule["blackwell_multi_node"] if system.n_nodes > 1 else rule["blackwell_one_node"]
    else:
        count = rule["hopper"]
    if system.n_nodes > 1 and t.at_least("2.28"):
        count = min(count, runtime_channels(system, graphs))
    return count
