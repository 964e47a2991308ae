"""All-to-all and send/recv: NCCL's grouped point-to-point transfers (``nccl-model.md`` §10).

NCCL has no tuning table for these; it splits each peer's data over a few channels and uses
LL below a size threshold, Simple above. This module gives NCCL-side quantities only (no
fitted efficiency: that is the correction layer's job), as a :class:`~.choice.Choice` with
algorithm ``"p2p"``.

- Channels per peer (§10.1): 2 max(1, floor(path / per-link NVLink bw)) over NVLink, 2 over
  PCIe, max(NICs, ceil(NIC / 14)) over the network; the minimum over the peer kinds present,
  rounded up to a power of two, at most ``p2pnChannels`` = pow2Up(min(nChannels, 64)), and
  across nodes halved until perPeer ceil(peers / 8) <= p2pnChannels.
- Protocol: LL while the bytes sent to one peer are <= perPeer x 16384, else Simple.
- Bandwidth (algorithm bandwidth B' = S / transfer time, GB/s):
  - all_to_all on one node: each GPU moves S (n-1)/n over its NCCL NVLink bandwidth
    B = C_ring b_intra (240 A100, 360 H100, 720 B200), so B' = B n / (n-1).
  - all_to_all across nodes: S (n-g)/n leaves through the GPU's NIC share
    b = min(NIC, NICs x NIC / g, PCIe) (one NIC per GPU at most: all-to-all does not
    aggregate NICs), while S (g-1)/n moves over NVLink at the same time; the slower sets the
    time, so bus bandwidth tops at b (n-1)/(n-g).
  - send_recv: the pair's path, C_ring b_intra inside a node, min(NIC, PCIe) across nodes.
  - LL carries 8 B of data per 16 B line: bandwidth x 0.5 (assumption, §7.3).
- Latency (assumption; NCCL's tuner has none for p2p): one step of NCCL's Ring constants on
  the slowest path a transfer takes, ``baseLat[Ring][p] + hwLat[path][Ring][p]``, with the
  network's ``latencyInter`` added once (twice for Simple) across nodes. On 8 H100 that gives
  11.8 µs for Simple, inside the 7-16 µs measured at 512 B (§10.1).
- ``n_inter`` is 1 across nodes (every byte crosses the network at most once), 0 inside.
"""

from __future__ import annotations

import dataclasses
import functools
import math

from simulator.core.errors import InputError
from simulator.network.nccl.choice import Choice
from simulator.network.nccl.search import intra_uses_nvlink, runtime_channels, search
from simulator.network.nccl.system import NcclSystem
from simulator.network.nccl.tables import Tables, for_version, nvlink_per_link_GBps

P2P_PROTOCOLS = ("LL", "Simple")


def _pow2_up(x: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1, x))))


@functools.lru_cache(maxsize=4096)
def _intra_path_GBps(system: NcclSystem) -> float:
    """The GPU's NCCL NVLink (or PCIe) bandwidth for p2p inside a node: C_ring b_intra, GB/s."""
    ring = search(dataclasses.replace(system, n_nodes=1))["ring"]
    return ring.channels * ring.bw_intra_GBps


def _nic_share_GBps(system: NcclSystem) -> float:
    """A GPU's share of the node's NICs, at most one NIC and its PCIe path, GB/s."""
    share = min(system.nic_GBps, system.nics_per_node * system.nic_GBps / system.gpus_per_node)
    return min(share, system.pcie_GBps) if system.pcie_GBps > 0 else share


def _intra_channels_per_peer(system: NcclSystem, t: Tables) -> int:
    if not intra_uses_nvlink(system):
        return t.p2p["pcie_channels_per_peer"]
    per_link = nvlink_per_link_GBps(system.sm)
    path = system.nvlink_GBps
    if system.scale_up == "mesh":
        path /= t.search["mesh_gpus"]["value"] - 1
    return t.p2p["nvlink_channels_per_link"] * max(1, math.floor(path / per_link + 1e-9))


def _net_channels_per_peer(system: NcclSystem, t: Tables) -> int:
    return max(system.nics_per_node, math.ceil(system.nic_GBps / t.p2p["per_channel_net_GBps"]))


@functools.lru_cache(maxsize=4096)
def channels(system: NcclSystem) -> tuple[int, int]:
    """(channels per peer, p2pnChannels) of the communicator (§10.1)."""
    t = for_version(system.version)
    total = _pow2_up(min(runtime_channels(system, search(system)), t.p2p["max_p2p_nchannels"]))
    kinds = []
    if system.gpus_per_node > 1:
        kinds.append(_intra_channels_per_peer(system, t))
    if system.n_nodes > 1:
        kinds.append(_net_channels_per_peer(system, t))
    per_peer = min(_pow2_up(min(kinds)), total)
    if system.n_nodes > 1:
        rounds = math.ceil((system.n_ranks - 1) / t.p2p["peers_per_round"])
        while per_peer > 1 and per_peer * rounds > total:
            per_peer //= 2
    return per_peer, total


def _bandwidth_GBps(system: NcclSystem, kind: str) -> float:
    """Simple-protocol algorithm bandwidth B' (S / transfer time), GB/s."""
    n, g = system.n_ranks, system.gpus_per_node
    if system.n_nodes <= 1:
        intra = _intra_path_GBps(system)
        return intra if kind == "send_recv" else intra * n / (n - 1)
    nic = _nic_share_GBps(system)
    if kind == "send_recv":
        return nic
    seconds_per_byte = (n - g) / n / nic
    if g > 1:
        seconds_per_byte = max(seconds_per_byte, (g - 1) / n / _intra_path_GBps(system))
    return 1.0 / seconds_per_byte


def _latency_us(system: NcclSystem, t: Tables, protocol: str) -> float:
    """One Ring step on the slowest path (module assumption), µs."""
    base = t.base_lat("ring", protocol)
    if system.n_nodes > 1:
        flushes = 2 if protocol == "Simple" else 1
        return base + t.hw_lat("net", "ring", protocol) + flushes * system.latency_inter_us
    hw = "nvlink" if intra_uses_nvlink(system) else "pci"
    return base + t.hw_lat(hw, "ring", protocol)


def _bytes_per_peer(system: NcclSystem, kind: str, nbytes: float) -> float:
    return nbytes if kind == "send_recv" else nbytes / system.n_ranks


def candidates(system: NcclSystem, kind: str, nbytes: float) -> list[Choice]:
    """LL and Simple for an all_to_all (S = send buffer) or send_recv (S = message) of ``nbytes``."""
    t = for_version(system.version)
    per_peer, total = channels(system)
    used = per_peer if kind == "send_recv" else min(total, per_peer * (system.n_ranks - 1))
    bw = _bandwidth_GBps(system, kind)
    efficiency = {"LL": t.bandwidth["protocol"]["ring_ll"], "Simple": 1.0}
    out = []
    for protocol in P2P_PROTOCOLS:
        b = bw * efficiency[protocol]
        lat = _latency_us(system, t, protocol)
        out.append(
            Choice(
                kind=kind,
                algorithm="p2p",
                protocol=protocol,
                channels=used,
                threads=t.p2p["threads"][protocol],
                latency_us=lat,
                bandwidth_GBps=b,
                time_us=lat + nbytes / (1000.0 * b),
                n_inter=1 if system.n_nodes > 1 else 0,
            )
        )
    return out


def protocol_for(system: NcclSystem, kind: str, nbytes: float) -> str:
    """NCCL's p2p protocol: LL while the bytes to one peer are <= perPeer x 16384, else Simple."""
    t = for_version(system.version)
    per_peer, _ = channels(system)
    limit = per_peer * t.p2p["ll_threshold_bytes_per_channel"]
    return "LL" if _bytes_per_peer(system, kind, nbytes) <= limit else "Simple"


def choose(
    system: NcclSystem, kind: str, nbytes: float, algorithm: str | None = None, protocol: str | None = None
) -> Choice:
    """NCCL's p2p transfer for the call (threshold rule, or the forced protocol). InputError
    if ``algorithm`` is not "p2p" or ``protocol`` is not LL or Simple."""
    options = candidates(system, kind, nbytes)
    listed = ", ".join(f"p2p/{c.protocol}" for c in options)
    if algorithm is not None and algorithm != "p2p":
        raise InputError(f"{algorithm!r} is not available for {kind}; available: {listed}", field="algorithm")
    wanted = protocol if protocol is not None else protocol_for(system, kind, nbytes)
    for c in options:
        if c.protocol == wanted:
            return c
    raise InputError(f"{protocol!r} is not available for {kind}; available: {listed}", field="protocol")
