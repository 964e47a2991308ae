"""How long one device takes for a piece of work: roofline times efficiency.

For an operation with ``F`` FLOPs that moves ``Q`` bytes to and from HBM::

    time = overhead + max(F / (peak_flops * eff_kind), Q / (hbm_Bps * eff_memory))

``eff_kind`` is the achieved fraction of peak for the op's kind (GEMM or fused
attention); element-wise ops are memory bound. The efficiency parameters are a
small named set (:class:`ComputeEfficiency`), loaded with the other named
parameters by :mod:`simulator.efficiency`.
"""

from __future__ import annotations

from typing import Iterable, Protocol

from pydantic import BaseModel, ConfigDict, Field


class ComputeEfficiency(BaseModel):
    """Achieved fractions of peak (0-1] and per-kernel overhead (seconds)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    gemm: float = Field(gt=0, le=1)
    attention: float = Field(gt=0, le=1)
    memory: float = Field(gt=0, le=1)
    kernel_overhead_s: float = Field(ge=0)


class _Op(Protocol):
    kind: str
    flops: float
    bytes: float


class _Device(Protocol):
    hbm_bandwidth_Bps: float

    def peak_flops_for(self, precision: str) -> float: ...


def op_time_s(op: _Op, peak_flops: float, hbm_Bps: float, eff: ComputeEfficiency) -> float:
    """Seconds for one operation (see module docstring)."""
    memory_s = op.bytes / (hbm_Bps * eff.memory)
    if op.kind == "elementwise":
        return eff.kernel_overhead_s + memory_s
    rate = peak_flops * (eff.gemm if op.kind == "gemm" else eff.attention)
    return eff.kernel_overhead_s + max(op.flops / rate, memory_s)


def ops_time_s(ops: Iterable[_Op], device: _Device, precision: str, eff: ComputeEfficiency) -> float:
    """Seconds for a sequence of operations run back to back on one stream."""
    peak = device.peak_flops_for(precision)
    return sum(op_time_s(op, peak, device.hbm_bandwidth_Bps, eff) for op in ops)
