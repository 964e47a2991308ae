"""How long one device takes for a piece of work: roofline times efficiency.

For an operation with ``F`` FLOPs that moves ``Q`` bytes to and from HBM::

    time = overhead + max(F / (peak_flops * eff), Q / (hbm_Bps * eff_memory))

Element-wise ops are memory bound. For a fused attention kernel ``eff`` is one
number. For a GEMM of shape ``(M, N, K)``::

    eff = gemm_max(device) * d / (d + gemm_half_dim),   d = min(M, N, K)

``gemm_max`` is the achieved fraction of peak of large GEMMs on the device's GPU generation
(its architecture in the catalog: ampere, hopper, ...), reduced for small GEMMs, which fill
the GPU's tiles and waves less well and are more bound by memory traffic
(``gemm_half_dim`` is the size at which half of ``gemm_max`` is reached; 0 turns the size
effect off). For an architecture without a fitted value (:meth:`ComputeEfficiency.gemm_max`):
if the GPU's maximum achievable matmul rate has been measured (``mamf_fraction`` in the
catalog), the fitted architectures' ratio of training GEMM rate to that measured best
(``gemm_of_mamf``) times it, so a GPU whose matmuls reach a smaller share of its datasheet
peak is not credited with the share the calibrated GPUs reach; otherwise the fitted
architectures' mean (``gemm``). These are the named parameters (:class:`ComputeEfficiency`),
loaded with the network and power parameters by :mod:`simulator.inputs.efficiency_file`.

An operation runs at its own precision (``op.precision``, e.g. bf16 attention in fp8
training) or the plan's; an fp8 GEMM reaches ``gemm_max`` times the GPU's measured fp8-to-bf16
ratio of achievable matmul rates (:meth:`~simulator.hardware.catalog.GPUSpec.matmul_ratio`).
"""

from __future__ import annotations

from typing import Iterable, Protocol

from pydantic import BaseModel, ConfigDict, Field

from simulator.core.bounds import Fraction, real, span

MAX_GEMM_HALF_DIM = 65536
MAX_KERNEL_OVERHEAD_S = 1.0
_FRACTION = span(0, 1, lo_open=True)


class ComputeEfficiency(BaseModel):
    """Achieved fractions of peak (0-1], the GEMM size scale (elements) and per-kernel overhead (s)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    gemm: Fraction = Field(description=f"Large-GEMM fraction of peak for generations not listed below, in {_FRACTION}.")
    gemm_by_generation: dict[str, Fraction] = Field(
        default_factory=dict, description=f"Large-GEMM fraction of peak per GPU generation (e.g. 'a100'), in {_FRACTION}."
    )
    gemm_of_mamf: Fraction | None = Field(
        None, description="Large-GEMM rate as a fraction of the measured maximum achievable matmul "
        f"rate, for architectures without a fitted value (None: not used); in {_FRACTION}.")
    gemm_half_dim: real(0, MAX_GEMM_HALF_DIM) = Field(
        0.0, description="GEMM size min(M, N, K) at half efficiency; 0 = no size effect; in "
        f"{span(0, MAX_GEMM_HALF_DIM)}.")
    attention: Fraction = Field(description=f"Fused attention kernel fraction of peak, in {_FRACTION}.")
    memory: Fraction = Field(description=f"Streaming kernels' fraction of HBM bandwidth, in {_FRACTION}.")
    kernel_overhead_s: real(0, MAX_KERNEL_OVERHEAD_S) = Field(
        description=f"Fixed cost per kernel launch, seconds, in {span(0, MAX_KERNEL_OVERHEAD_S)}.")

    def gemm_max(self, generation: str, mamf_fraction: float | None = None) -> float:
        """Large-GEMM fraction of peak on a GPU of this generation whose measured maximum
        achievable matmul rate is ``mamf_fraction`` of its peak, if known (module docstring)."""
        if generation in self.gemm_by_generation:
            return self.gemm_by_generation[generation]
        if self.gemm_of_mamf is not None and mamf_fraction is not None:
            return self.gemm_of_mamf * mamf_fraction
        return self.gemm

    def gemm_efficiency(self, top: float, mnk: tuple[int, int, int] | None) -> float:
        """Achieved fraction of peak of one GEMM on a GPU whose large GEMMs reach ``top``."""
        if mnk is None or self.gemm_half_dim == 0:
            return top
        d = min(mnk)
        return top * d / (d + self.gemm_half_dim)


class _Op(Protocol):
    kind: str
    flops: float
    bytes: float
    gemm_mnk: tuple[int, int, int] | None
    precision: str | None


class _Device(Protocol):
    hbm_bandwidth_Bps: float
    generation: str
    mamf_fraction: float | None

    def peak_flops_for(self, precision: str) -> float: ...

    def matmul_ratio(self, precision: str) -> float: ...


def op_time_s(op: _Op, peak_flops: float, hbm_Bps: float, gemm_max: float, eff: ComputeEfficiency) -> float:
    """Seconds for one operation (see module docstring) on a device of this peak, HBM bandwidth
    and large-GEMM fraction of peak (:meth:`ComputeEfficiency.gemm_max`)."""
    memory_s = op.bytes / (hbm_Bps * eff.memory)
    if op.kind == "elementwise":
        return eff.kernel_overhead_s + memory_s
    fraction = eff.gemm_efficiency(gemm_max, op.gemm_mnk) if op.kind == "gemm" else eff.attention
    return eff.kernel_overhead_s + max(op.flops / (peak_flops * fraction), memory_s)


def ops_time_s(ops: Iterable[_Op], device: _Device, precision: str, eff: ComputeEfficiency) -> float:
    """Seconds for a sequence of operations run back to back on one stream; ``precision`` is
    the plan's, for ops that do not state their own."""
    top = eff.gemm_max(device.generation, device.mamf_fraction)
    rates: dict[str, tuple[float, float]] = {}  # precision -> (peak FLOP/s, large-GEMM fraction)
    total = 0.0
    for op in ops:
        p = op.precision or precision
        rate = rates.get(p)
        if rate is None:
            rate = rates[p] = (device.peak_flops_for(p), top * device.matmul_ratio(p))
        total += op_time_s(op, rate[0], device.hbm_bandwidth_Bps, rate[1], eff)
    return total
