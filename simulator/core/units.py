"""Unit conversions used at the edges (input files and reports).

Inside trainsim everything is SI: seconds, bytes, FLOPs, FLOP/s, bytes/s,
watts, joules. Input files state units in field names (``bandwidth_GBps``,
``latency_us``) and are converted once, on load, with these constants.
"""

from typing import Literal, get_args

KB = 1e3
MB = 1e6
GB = 1e9
TB = 1e12
KiB = 2**10
MiB = 2**20
GiB = 2**30

TFLOPS = 1e12  # FLOP/s
US = 1e-6  # seconds per microsecond
MS = 1e-3  # seconds per millisecond


def gbit_per_s_to_Bps(gbps: float) -> float:
    """Gbit/s (network convention, 10^9 bits) to bytes/s."""
    return gbps * 1e9 / 8


def GBps_to_Bps(gBps: float) -> float:
    """GB/s (10^9 bytes) to bytes/s."""
    return gBps * 1e9


Precision = Literal["fp32", "tf32", "bf16", "fp16", "fp8"]
"""Number formats of math and stored tensors, the one list every layer uses."""
PRECISIONS: tuple[str, ...] = get_args(Precision)
"""The precisions in display order."""

BYTES_PER_ELEMENT = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1}
"""Bytes per element of a tensor held in the given precision (tf32 is stored as fp32)."""


def weight_bytes(precision: str) -> int:
    """Bytes of one stored weight in mixed-precision training: 16-bit for bf16, fp16 and fp8
    training (fp8 recipes keep bf16 weights), 4 for fp32 and tf32."""
    return 4 if precision in ("fp32", "tf32") else 2
