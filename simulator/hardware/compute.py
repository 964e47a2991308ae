"""How long one device takes for a piece of work: roofline times efficiency.

For an operation with ``F`` FLOPs that moves ``Q`` bytes to and from HBM::

    time = overhead + max(F / (peak_flops * eff), Q / (hbm_Bps * eff_memory))

Element-wise ops are memory bound. For a fused attention kernel ``eff`` is one
number. For a GEMM of shape ``(M, N, K)``::

    eff = gemm_max(generation) * d / (d + gemm_half_dim),   d = min(M, N, K)

the achieved fraction of peak of large GEMMs on that GPU generation (its
architecture in the catalog: ampere, hopper, ...), reduced for
small GEMMs, which fill the GPU's tiles and waves less well and are more bound
by memory traffic (``gemm_half_dim`` is the size at which half of ``gemm_max``
is reached; 0 turns the size effect off). These are the named parameters
(:class:`ComputeEfficiency`), loaded with the network and power parameters by
:mod:`simulator.efficiency`.
"""

from __future__ import annotations

from typing import Iterable, Protocol

from pydantic import BaseModel, ConfigDict, Field


class ComputeEfficiency(BaseModel):
    """Achieved fractions of peak (0-1], the GEMM size scale (elements) and per-kernel overhead (s)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    gemm: float = Field(gt=0, le=1, description="Large-GEMM fraction of peak for generations not listed below.")
    gemm_by_generation: dict[str, float] = Field(
        default_factory=dict, description="Large-GEMM fraction of peak per GPU generation (e.g. 'a100')."
    )
    gemm_half_dim: float = Field(0.0, ge=0, description="GEMM size min(M, N, K) at half efficiency; 0 = no size effect.")
    attention: float = Field(gt=0, le=1, description="Fused attention kernel fraction of peak.")
    memory: float = Field(gt=0, le=1, description="Streaming kernels' fraction of HBM bandwidth.")
    kernel_overhead_s: float = Field(ge=0, description="Fixed cost per kernel launch, seconds.")

    def gemm_efficiency(self, generation: str, mnk: tuple[int, int, int] | None) -> float:
        """Achieved fraction of peak of one GEMM (see module docstring)."""
        top = self.gemm_by_generation.get(generation, self.gemm)
        if mnk is None or self.gemm_half_dim == 0:
            return top
        d = min(mnk)
        return top * d / (d + self.gemm_half_dim)


class _Op(Protocol):
    kind: str
    flops: float
    bytes: float
    gemm_mnk: tuple[int, int, int] | None


class _Device(Protocol):
    hbm_bandwidth_Bps: float
    generation: str

    def peak_flops_for(self, precision: str) -> float: ...


def op_time_s(op: _Op, peak_flops: float, hbm_Bps: float, generation: str, eff: ComputeEfficiency) -> float:
    """Seconds for one operation (see module docstring)."""
    memory_s = op.bytes / (hbm_Bps * eff.memory)
    if op.kind == "elementwise":
        return eff.kernel_overhead_s + memory_s
    fraction = eff.gemm_efficiency(generation, op.gemm_mnk) if op.kind == "gemm" else eff.attention
    return eff.kernel_overhead_s + max(op.flops / (peak_flops * fraction), memory_s)


def ops_time_s(ops: Iterable[_Op], device: _Device, precision: str, eff: ComputeEfficiency) -> float:
    """Seconds for a sequence of operations run back to back on one stream."""
    peak = device.peak_flops_for(precision)
    return sum(op_time_s(op, peak, device.hbm_bandwidth_Bps, device.generation, eff) for op in ops)
