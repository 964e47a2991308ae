"""What NCCL runs for one call (:class:`Choice`), and the names of kinds, algorithms and protocols.

Shared by the tuner (:mod:`.tuner`) and the point-to-point collectives (:mod:`.p2p`).
"""

from __future__ import annotations

from dataclasses import dataclass

ALGORITHMS = ("tree", "ring", "collnet_direct", "collnet_chain", "nvls", "nvls_tree", "pat")
PROTOCOLS = ("LL", "LL128", "Simple")
KINDS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "reduce", "all_to_all", "send_recv")


@dataclass(frozen=True)
class Choice:
    """What NCCL runs for one call, and its own time estimate.

    Attributes:
        kind: one of :data:`KINDS`.
        algorithm: one of :data:`ALGORITHMS` (``"p2p"`` for all_to_all and send_recv).
        protocol: one of :data:`PROTOCOLS`.
        channels: channels the kernel runs with, after the §7.2 small-message reduction.
        threads: threads per channel (CTA), after the same reduction.
        latency_us: NCCL's latency L for one call (k = 1), µs, including the ring plateau
            factor (§6.3) when it applies to this size.
        bandwidth_GBps: B', NCCL's algorithm bandwidth (S / time share), GB/s, including the
            tree correction factor of this size.
        time_us: NCCL's estimate ``latency_us + S / (1000 bandwidth_GBps)``, µs.
        n_inter: inter-node steps on the critical path (2(m-1) ring all-reduce, m-1 ring
            all-gather / reduce-scatter, 2 floor(log2 m) tree and NVLSTree, 0 on one node).
    """

    kind: str
    algorithm: str
    protocol: str
    channels: int
    threads: int
    latency_us: float
    bandwidth_GBps: float
    time_us: float
    n_inter: int
