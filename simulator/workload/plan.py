"""The parallel plan: how one model is split over a fleet, and where each rank sits.

``tp x cp x pp x dp`` ranks fill the fleet. The *placement* says which dimension is
innermost when ranks are numbered onto GPUs: with the default ``("tp", "dp", "pp")``
the tensor-parallel peers of a rank are consecutive GPUs (so they share an NVLink
island), then data-parallel replicas, then pipeline stages outermost
(Megatron-LM's order). GPU ``g`` lives on node ``g // gpus_per_node``.

Context parallelism (``cp``) splits every sequence over ``cp`` ranks that hold the same
weights. As in Megatron-LM (rank order ``tp-cp-dp-pp``, or ``tp-cp-pp-dp``), the context-
parallel peers sit right outside the tensor-parallel ones: in the placement, ``"tp"``
stands for the block of ``tp x cp`` ranks that run one pipeline stage of one replica
together, tensor-parallel innermost. Gradients are reduced, and ZeRO shards, over the
``dp x cp`` ranks that hold the same parameters (Megatron's data-parallel group with
context parallelism): ``groups("dp")`` returns those.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from simulator.core.errors import PlanError
from simulator.core.units import BYTES_PER_ELEMENT

Dim = Literal["tp", "dp", "pp"]
GroupDim = Literal["tp", "cp", "dp", "pp"]
Precision = Literal["fp32", "tf32", "bf16", "fp16", "fp8"]
Recompute = Literal["none", "selective", "full"]
Schedule = Literal["gpipe", "1f1b", "interleaved"]


class ParallelPlan(BaseModel):
    """Parallel plan of one training job. Sizes are counts; ``1`` means that kind of parallelism is off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tp: int = Field(1, ge=1, description="Tensor-parallel size.")
    pp: int = Field(1, ge=1, description="Pipeline-parallel stages.")
    dp: int = Field(1, ge=1, description="Data-parallel replicas.")
    cp: int = Field(1, ge=1, description="Context-parallel size: each sequence split over cp ranks "
                    "(Megatron-Core ring attention); 1 = off.")
    vpp: int = Field(1, ge=1, description="Virtual pipeline chunks per stage (interleaved 1F1B); 1 = off.")
    micro_batch: int = Field(1, ge=1, description="Sequences per micro-batch per pipeline.")
    global_batch: int = Field(ge=1, description="Sequences per optimizer step, all replicas together.")
    schedule: Schedule = Field("1f1b", description="Pipeline schedule; 'interleaved' needs vpp > 1.")
    sequence_parallel: bool = Field(False, description="Megatron sequence parallelism (needs tp > 1 to matter).")
    recompute: Recompute = Field("none", description="Activation recomputation.")
    zero_stage: int = Field(0, ge=0, le=3, description="ZeRO stage: 1 shards optimizer, 2 also gradients, 3 also parameters.")
    precision: Precision = Field("bf16", description="Math precision of GEMMs and stored activations.")
    placement: tuple[Dim, Dim, Dim] = Field(("tp", "dp", "pp"), description="Rank dimensions innermost first.")
    dp_bucket_bytes: float | None = Field(
        None, gt=0,
        description="Gradient bucket for DP reduction, bytes of reduced gradients; None: Megatron-LM's default "
        "(see grad_bucket_bytes).",
    )
    overlap_grad_reduce: bool = Field(True, description="Overlap DP gradient reduction with the last backward pass.")
    overlap_param_gather: bool = Field(
        False, description="ZeRO 1-2: gather the updated parameters during the next step's forward passes "
        "(Megatron-LM --overlap-param-gather) instead of at the end of this step.",
    )
    tp_overlap: Literal["none", "backward", "full"] = Field(
        "backward",
        description="TP communication beside GEMMs: 'backward' = Megatron-LM's asynchronous input-gradient "
        "reduction beside the weight-gradient GEMM (its default); 'full' = also every other TP collective "
        "beside its GEMM (Transformer Engine --tp-comm-overlap); 'none' = all exposed.",
    )
    attention: Literal["flash", "standard"] = Field(
        "flash",
        description="Attention kernel: 'flash' = fused, causal, scores never stored (FlashAttention-2, cuDNN); "
        "'standard' = unfused: batched GEMMs over the full s x s scores, softmax and dropout kernels on them "
        "(Megatron-LM before fused attention).",
    )
    grad_reduce_precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="Precision gradients are reduced in across DP (Megatron-LM default: fp32 main grads)."
    )

    @model_validator(mode="after")
    def _check(self) -> "ParallelPlan":
        if sorted(self.placement) != ["dp", "pp", "tp"]:
            raise ValueError(f"placement must order tp, dp and pp once each, got {list(self.placement)}")
        if self.schedule == "interleaved" and self.vpp == 1:
            raise ValueError("schedule 'interleaved' needs vpp > 1")
        if self.vpp > 1 and self.schedule != "interleaved":
            raise ValueError(f"vpp={self.vpp} needs schedule 'interleaved', got '{self.schedule}'")
        if self.vpp > 1 and self.pp == 1:
            raise ValueError("vpp > 1 needs pp > 1")
        if self.cp > 1 and self.attention != "flash":
            raise ValueError("context parallelism (cp > 1) needs attention 'flash': Megatron-Core runs it "
                             "inside the fused attention kernels")
        if self.tp_overlap == "full" and not self.sequence_parallel and self.tp > 1:
            raise ValueError("tp_overlap 'full' needs sequence_parallel (Transformer Engine overlaps the "
                             "sequence-parallel all-gathers and reduce-scatters); use 'backward' without it")
        if self.global_batch % (self.dp * self.micro_batch):
            raise ValueError(
                f"global_batch={self.global_batch} is not divisible by dp x micro_batch = "
                f"{self.dp} x {self.micro_batch}; pick a global batch that is a multiple of {self.dp * self.micro_batch}"
            )
        return self

    @property
    def n_gpus(self) -> int:
        return self.tp * self.cp * self.pp * self.dp

    @property
    def width(self) -> int:
        """GPUs that run one pipeline stage of one replica together: ``tp x cp``."""
        return self.tp * self.cp

    @property
    def dp_cp(self) -> int:
        """Ranks holding the same parameters, over which gradients are reduced and ZeRO shards:
        ``dp x cp``."""
        return self.dp * self.cp

    @property
    def grad_bucket_bytes(self) -> float:
        """Bytes of reduced gradients per data-parallel bucket: ``dp_bucket_bytes``, else Megatron-Core's
        default, ``max(40M, 1M x dp x cp)`` gradient elements with ``overlap_grad_reduce`` and one bucket
        for everything (infinite) without (``DistributedDataParallel``)."""
        if self.dp_bucket_bytes is not None:
            return self.dp_bucket_bytes
        if not self.overlap_grad_reduce:
            return math.inf
        return max(40e6, 1e6 * self.dp_cp) * BYTES_PER_ELEMENT[self.grad_reduce_precision]

    @property
    def split(self) -> dict[str, Any]:
        """How one micro-batch is split on a rank: the keyword arguments of the work functions of
        :mod:`simulator.workload.ops` (``micro_batch``, ``tp``, ``sequence_parallel``, ``precision``, ``cp``)."""
        return dict(micro_batch=self.micro_batch, tp=self.tp, sequence_parallel=self.sequence_parallel,
                    precision=self.precision, cp=self.cp)

    def layers(self, n_layers: int) -> tuple[int, ...]:
        """Transformer blocks of every virtual stage ``v = chunk * pp + stage``: equal when
        ``pp x vpp`` divides ``n_layers``; otherwise as even as possible, the one fewer going
        to the first and last virtual stages first (they also hold the embedding and the LM
        head), then inwards: Llama 3 405B's 126 layers on 16 stages are 7, 8 x 14, 7 (Llama
        Team 2024, arXiv:2407.21783, section 3.3.2). Raises :class:`PlanError` with fewer
        layers than virtual stages."""
        return _layers(n_layers, self.pp * self.vpp)

    @property
    def n_microbatches(self) -> int:
        """Micro-batches per pipeline per step (= gradient accumulation steps)."""
        return self.global_batch // (self.dp * self.micro_batch)

    @property
    def gpu_grid(self) -> np.ndarray:
        """Global GPU index of every rank, indexed ``[cp_rank * tp + tp_rank, dp_rank, pp_rank]``
        (read-only, cached)."""
        return _gpu_grid(self.width, self.dp, self.pp, tuple(self.placement))

    def gpu_of(self, tp_rank: int, dp_rank: int, pp_rank: int, cp_rank: int = 0) -> int:
        """Global GPU index of the rank with these coordinates, following ``placement``."""
        return int(self.gpu_grid[cp_rank * self.tp + tp_rank, dp_rank, pp_rank])

    def groups(self, dim: GroupDim, pp_rank: int | None = None) -> list[tuple[int, ...]]:
        """All ``dim`` groups (of one pipeline stage if ``pp_rank`` is given), members in rank
        order. ``"dp"`` gives the ``dp x cp`` ranks that hold the same parameters (context-
        parallel peers innermost)."""
        grid = self.gpu_grid if pp_rank is None else self.gpu_grid[:, :, pp_rank:pp_rank + 1]
        g = grid.reshape(self.cp, self.tp, *grid.shape[1:])  # [cp, tp, dp, pp]
        if dim == "tp":
            members = np.moveaxis(g, 1, -1).reshape(-1, self.tp)
        elif dim == "cp":
            members = np.moveaxis(g, 0, -1).reshape(-1, self.cp)
        elif dim == "dp":
            members = g.transpose(1, 3, 2, 0).reshape(-1, self.dp_cp)
        else:
            members = g.reshape(-1, g.shape[-1])
        return [tuple(row) for row in members.tolist()]


@lru_cache(maxsize=256)
def _layers(n_layers: int, n_virtual: int) -> tuple[int, ...]:
    q, r = divmod(n_layers, n_virtual)
    if q == 0:
        raise PlanError(f"n_layers={n_layers} is fewer than the pp x vpp = {n_virtual} virtual pipeline stages; "
                        "every stage needs at least one layer", field="plan.pp")
    counts = [q + 1] * n_virtual
    ends = sorted(range(n_virtual), key=lambda v: (min(v, n_virtual - 1 - v), v != 0))  # first, last, inwards
    for v in ends[: n_virtual - r]:
        counts[v] = q
    return tuple(counts)


@lru_cache(maxsize=64)
def _gpu_grid(width: int, dp: int, pp: int, placement: tuple[str, ...]) -> np.ndarray:
    sizes = {"tp": width, "dp": dp, "pp": pp}
    strides, stride = {}, 1
    for dim in placement:
        strides[dim] = stride
        stride *= sizes[dim]
    t, d, p = np.ix_(np.arange(width), np.arange(dp), np.arange(pp))
    grid = t * strides["tp"] + d * strides["dp"] + p * strides["pp"]
    grid.flags.writeable = False
    return grid


def check_plan_against(plan: ParallelPlan, *, n_heads: int, n_kv_heads: int, n_layers: int,
                       n_gpus: int, gpus_per_node: int) -> None:
    """Raise :class:`PlanError` (field named) if the plan cannot run this model on this fleet."""

    def divisors(n: int) -> str:
        return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0 and d <= 64)

    if plan.n_gpus != n_gpus:
        cp = " x cp" if plan.cp > 1 else ""
        cps = f" x {plan.cp}" if plan.cp > 1 else ""
        fixed = plan.tp * plan.cp * plan.pp
        raise PlanError(
            f"tp{cp} x pp x dp = {plan.tp}{cps} x {plan.pp} x {plan.dp} = {plan.n_gpus} GPUs, but the fleet has "
            f"{n_gpus}; make dp = {n_gpus // fixed}" if n_gpus % fixed == 0
            else f"tp{cp} x pp = {fixed} does not divide the fleet of {n_gpus} GPUs",
            field="plan.dp",
        )
    if n_heads % plan.tp:
        raise PlanError(f"tp={plan.tp} does not divide n_heads={n_heads}; use one of {divisors(n_heads)}", field="plan.tp")
    if n_kv_heads % plan.tp and plan.tp % n_kv_heads:
        raise PlanError(
            f"tp={plan.tp} and n_kv_heads={n_kv_heads}: one must divide the other", field="plan.tp"
        )
    plan.layers(n_layers)
    if plan.schedule == "interleaved" and plan.n_microbatches % plan.pp:
        raise PlanError(
            f"the interleaved schedule needs the number of micro-batches ({plan.n_microbatches}) "
            f"to be a multiple of pp={plan.pp}",
            field="plan.global_batch",
        )
    if n_gpus % gpus_per_node and n_gpus > gpus_per_node:
        raise PlanError(f"{n_gpus} GPUs is not a whole number of {gpus_per_node}-GPU nodes", field="gpus")
