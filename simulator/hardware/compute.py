"""How long one device takes for a piece of work: roofline times efficiency.

For an operation with ``F`` FLOPs that moves ``Q`` bytes to and from HBM::

    time = kernels * overhead + max(F / (peak_flops * eff), Q / (hbm_Bps * eff_memory))

``kernels`` is the number of kernel launches the op takes (1, or the eager chain of an
unfused element-wise op, :func:`simulator.workload.ops.run_eagerly`). Element-wise ops are
memory bound.

**Attention.** A fused attention kernel reaches the fraction of peak of its *kernel family*
(FlashAttention-2 ``flash2``, ``flash3``, cuDNN / Transformer Engine ``cudnn``, PyTorch
``sdpa``) on the device's GPU generation::

    eff = attention_scale * attention_by_kernel[family][generation]

``attention_by_kernel`` holds the published kernel benchmarks (forward + backward, causal, head
dimension 128, sequences 2k-8k: ``benchmarks/kernel_priors.py`` derives each value from
``../shared/reference/kernels.csv`` and the efficiency file cites the rows); ``attention_scale``
is the one fitted number: how much of its benchmark rate a kernel keeps inside a training step
(the same for every family, so the benchmarks' ratios between families and generations are
kept). A family or generation without a benchmark gets ``attention`` (a plain fraction of peak).
Which family runs is the framework's trait (``Framework.attention_kernel_on``), resolved by the
work plan; unfused ("standard") attention is GEMMs and element-wise ops, not this kind.

**GEMMs.** For a GEMM of shape ``(M, N, K)``::

    eff = gemm_max(device) * size(d),   d = min(M, N, K)
    size(d) = d / (d + half_dim(generation))   for the linear layers' GEMMs (``op.linear``)
    size(d) = 1                                 for the batched GEMMs of unfused attention

``gemm_max`` is the achieved fraction of peak of large GEMMs on the device's GPU generation
(its architecture in the catalog: ampere, hopper, ...). ``half_dim`` (per generation,
``gemm_half_dim_by_generation``, else ``gemm_half_dim``; 0 = no effect) is the size at which
a linear GEMM reaches half of ``gemm_max``: small GEMMs fill the GPU's tiles and waves less well
(the memory-bound end is already the roofline's bytes term). The size effect is not applied to
the small batched ``Q K^T`` / ``P V`` GEMMs of unfused attention, whose per-head shapes (64-128)
would otherwise be priced as a linear layer of that width; those run as cuBLAS strided-batched
GEMMs at ``gemm_max``. For an architecture without a fitted value
(:meth:`ComputeEfficiency.gemm_max`): if the GPU's maximum achievable matmul rate has been
measured (``mamf_fraction`` in the catalog), the fitted architectures' ratio of training GEMM
rate to that measured best (``gemm_of_mamf``) times it; otherwise the fitted architectures'
mean (``gemm``).

**Overlap.** Compute that runs while NCCL kernels run on the same GPU is slowed by
``overlap_slowdown`` (the communication kernels take SMs and HBM bandwidth): its time is
``(1 + overlap_slowdown)`` times its standalone time for as long as the two overlap
(:func:`overlapped_s`). The engine and the work plan apply it wherever they hide communication
behind compute (TP overlap, ZeRO-3 prefetch, DP buckets during the last backward pass).

**Pipeline dispatch.** ``pipeline_dispatch_s`` is the host-side cost of dispatching one pass's
instructions (compute, send, receive) in a pipeline engine that executes them one by one and
blocks on its transfers (DeepSpeed's PipelineEngine); engines that do not block do not pay it.

An operation runs at its own precision (``op.precision``, e.g. bf16 attention in fp8
training) or the plan's; an fp8 GEMM reaches ``gemm_max`` times the GPU's measured fp8-to-bf16
ratio of achievable matmul rates (:meth:`~simulator.hardware.catalog.GPUSpec.matmul_ratio`).
These are the named parameters (:class:`ComputeEfficiency`), loaded with the network and power
parameters by :mod:`simulator.inputs.efficiency_file`. Times are seconds, rates FLOP/s and B/s.
"""

from __future__ import annotations

from typing import Iterable, Protocol

from pydantic import BaseModel, ConfigDict, Field

from simulator.core.bounds import Fraction, real, span

MAX_GEMM_HALF_DIM = 65536
MAX_KERNEL_OVERHEAD_S = 1.0
MAX_OVERLAP_SLOWDOWN = 1.0
MAX_ATTENTION_SCALE = 2.0
_FRACTION = span(0, 1, lo_open=True)


class ComputeEfficiency(BaseModel):
    """Achieved fractions of peak (0-1], GEMM size scales (elements), the overlap slowdown
    (fraction), per-kernel and per-pipeline-pass host costs (s). See the module docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    gemm: Fraction = Field(description=f"Large-GEMM fraction of peak for generations not listed below, in {_FRACTION}.")
    gemm_by_generation: dict[str, Fraction] = Field(
        default_factory=dict, description=f"Large-GEMM fraction of peak per GPU generation (e.g. 'a100'), in {_FRACTION}."
    )
    gemm_of_mamf: Fraction | None = Field(
        None, description="Large-GEMM rate as a fraction of the measured maximum achievable matmul "
        f"rate, for architectures without a fitted value (None: not used); in {_FRACTION}.")
    gemm_half_dim: real(0, MAX_GEMM_HALF_DIM) = Field(
        0.0, description="Linear-layer GEMM size min(M, N, K) at half efficiency for generations not listed in "
        f"gemm_half_dim_by_generation; 0 = no size effect; in {span(0, MAX_GEMM_HALF_DIM)}.")
    gemm_half_dim_by_generation: dict[str, real(0, MAX_GEMM_HALF_DIM)] = Field(
        default_factory=dict, description="Linear-layer GEMM size at half efficiency per GPU generation, in "
        f"{span(0, MAX_GEMM_HALF_DIM)}.")
    attention: Fraction = Field(description="Fused attention fraction of peak for a kernel family and GPU "
                                f"generation without a benchmark in attention_by_kernel, in {_FRACTION}.")
    attention_by_kernel: dict[str, dict[str, Fraction]] = Field(
        default_factory=dict, description="Published benchmark fraction of peak of each fused attention kernel "
        f"family (flash2, flash3, cudnn, sdpa) per GPU generation, in {_FRACTION}.")
    attention_scale: real(0, MAX_ATTENTION_SCALE, lo_open=True) = Field(
        1.0, description="Share of its benchmark rate a fused attention kernel keeps in a training step, in "
        f"{span(0, MAX_ATTENTION_SCALE, lo_open=True)}.")
    memory: Fraction = Field(description=f"Streaming kernels' fraction of HBM bandwidth, in {_FRACTION}.")
    kernel_overhead_s: real(0, MAX_KERNEL_OVERHEAD_S) = Field(
        description=f"Fixed cost per kernel launch, seconds, in {span(0, MAX_KERNEL_OVERHEAD_S)}.")
    overlap_slowdown: real(0, MAX_OVERLAP_SLOWDOWN) = Field(
        0.0, description="Fractional slowdown of compute while NCCL kernels run beside it, in "
        f"{span(0, MAX_OVERLAP_SLOWDOWN)}.")
    pipeline_dispatch_s: real(0, MAX_KERNEL_OVERHEAD_S) = Field(
        0.0, description="Host-side dispatch per pass of a blocking pipeline engine (its compute, send and "
        f"receive instructions), seconds, in {span(0, MAX_KERNEL_OVERHEAD_S)}.")

    def gemm_max(self, generation: str, mamf_fraction: float | None = None) -> float:
        """Large-GEMM fraction of peak on a GPU of this generation whose measured maximum
        achievable matmul rate is ``mamf_fraction`` of its peak, if known (module docstring)."""
        if generation in self.gemm_by_generation:
            return self.gemm_by_generation[generation]
        if self.gemm_of_mamf is not None and mamf_fraction is not None:
            return self.gemm_of_mamf * mamf_fraction
        return self.gemm

    def half_dim(self, generation: str) -> float:
        """Linear-layer GEMM size at half efficiency on this generation (module docstring)."""
        return self.gemm_half_dim_by_generation.get(generation, self.gemm_half_dim)

    def gemm_efficiency(self, top: float, mnk: tuple[int, int, int] | None, half_dim: float | None = None) -> float:
        """Achieved fraction of peak of one GEMM on a GPU whose large GEMMs reach ``top``, with
        the size effect ``half_dim`` (default ``gemm_half_dim``; 0 = none)."""
        half = self.gemm_half_dim if half_dim is None else half_dim
        if mnk is None or half == 0:
            return top
        d = min(mnk)
        return top * d / (d + half)

    def attention_fraction(self, kernel: str | None, generation: str) -> float:
        """Fraction of peak of a fused attention kernel of family ``kernel`` on ``generation``:
        ``attention_scale`` times its benchmark, else ``attention`` (module docstring)."""
        benchmark = self.attention_by_kernel.get(kernel or "", {}).get(generation)
        return self.attention if benchmark is None else min(1.0, self.attention_scale * benchmark)


def overlapped_s(compute_s: float, comm_s: float, slowdown: float) -> float:
    """Seconds until both a compute stretch of ``compute_s`` (standalone) and a communication of
    ``comm_s`` started with it are done, the compute running ``1 + slowdown`` times slower while
    the communication runs: ``max(comm_s, compute_s + slowdown * min(compute_s, comm_s))``
    (the slowed part is the overlap, at most the whole compute)."""
    return max(comm_s, compute_s + slowdown * min(compute_s, comm_s))


class _Op(Protocol):
    kind: str
    flops: float
    bytes: float
    gemm_mnk: tuple[int, int, int] | None
    precision: str | None
    linear: bool
    kernels: int


class _Device(Protocol):
    hbm_bandwidth_Bps: float
    generation: str
    mamf_fraction: float | None

    def peak_flops_for(self, precision: str) -> float: ...

    def matmul_ratio(self, precision: str) -> float: ...


def op_time_s(op: _Op, peak_flops: float, hbm_Bps: float, gemm_max: float, eff: ComputeEfficiency,
              attention: float | None = None, half_dim: float | None = None) -> float:
    """Seconds for one operation (see module docstring) on a device of this peak, HBM bandwidth
    and large-GEMM fraction of peak (:meth:`ComputeEfficiency.gemm_max`); ``attention``: the
    fused attention kernel's fraction of peak (default ``eff.attention``); ``half_dim``: the
    linear GEMMs' size effect (default ``eff.gemm_half_dim``)."""
    memory_s = op.bytes / (hbm_Bps * eff.memory)
    launch_s = getattr(op, "kernels", 1) * eff.kernel_overhead_s
    if op.kind == "elementwise":
        return launch_s + memory_s
    if op.kind == "gemm":
        fraction = eff.gemm_efficiency(gemm_max, op.gemm_mnk, half_dim if getattr(op, "linear", True) else 0.0)
    else:
        fraction = eff.attention if attention is None else attention
    return launch_s + max(op.flops / (peak_flops * fraction), memory_s)


def ops_time_s(ops: Iterable[_Op], device: _Device, precision: str, eff: ComputeEfficiency,
               attention_kernel: str | None = None) -> float:
    """Seconds for a sequence of operations run back to back on one stream; ``precision`` is
    the plan's, for ops that do not state their own; ``attention_kernel``: the fused attention
    kernel family that runs the ``attention`` ops (None: ``eff.attention``)."""
    top = eff.gemm_max(device.generation, device.mamf_fraction)
    half = eff.half_dim(device.generation)
    attention = eff.attention_fraction(attention_kernel, device.generation)
    rates: dict[str, tuple[float, float]] = {}  # precision -> (peak FLOP/s, large-GEMM fraction)
    total = 0.0
    for op in ops:
        p = op.precision or precision
        rate = rates.get(p)
        if rate is None:
            rate = rates[p] = (device.peak_flops_for(p), top * device.matmul_ratio(p))
        total += op_time_s(op, rate[0], device.hbm_bandwidth_Bps, rate[1], eff, attention, half)
    return total
