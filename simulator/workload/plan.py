"""The parallel plan: how one model is split over a fleet, and where each rank sits.

``tp x pp x dp`` ranks fill the fleet. The *placement* says which dimension is
innermost when ranks are numbered onto GPUs: with the default ``("tp", "dp", "pp")``
the tensor-parallel peers of a rank are consecutive GPUs (so they share an NVLink
island), then data-parallel replicas, then pipeline stages outermost
(Megatron-LM's order). GPU ``g`` lives on node ``g // gpus_per_node``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np

from pydantic import BaseModel, ConfigDict, Field, model_validator

from simulator.errors import PlanError

Dim = Literal["tp", "dp", "pp"]
Precision = Literal["fp32", "tf32", "bf16", "fp16", "fp8"]
Recompute = Literal["none", "selective", "full"]
Schedule = Literal["gpipe", "1f1b", "interleaved"]


class ParallelPlan(BaseModel):
    """Parallel plan of one training job. Sizes are counts; ``1`` means that kind of parallelism is off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tp: int = Field(1, ge=1, description="Tensor-parallel size.")
    pp: int = Field(1, ge=1, description="Pipeline-parallel stages.")
    dp: int = Field(1, ge=1, description="Data-parallel replicas.")
    vpp: int = Field(1, ge=1, description="Virtual pipeline chunks per stage (interleaved 1F1B); 1 = off.")
    micro_batch: int = Field(1, ge=1, description="Sequences per micro-batch per pipeline.")
    global_batch: int = Field(ge=1, description="Sequences per optimizer step, all replicas together.")
    schedule: Schedule = Field("1f1b", description="Pipeline schedule; 'interleaved' needs vpp > 1.")
    sequence_parallel: bool = Field(False, description="Megatron sequence parallelism (needs tp > 1 to matter).")
    recompute: Recompute = Field("none", description="Activation recomputation.")
    zero_stage: int = Field(0, ge=0, le=3, description="ZeRO stage: 1 shards optimizer, 2 also gradients, 3 also parameters.")
    precision: Precision = Field("bf16", description="Math precision of GEMMs and stored activations.")
    placement: tuple[Dim, Dim, Dim] = Field(("tp", "dp", "pp"), description="Rank dimensions innermost first.")
    dp_bucket_bytes: float = Field(
        160e6, gt=0,
        description="Gradient bucket for DP reduction, bytes of reduced gradients (160 MB: Megatron's 40M fp32 params).",
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
        return self.tp * self.pp * self.dp

    @property
    def n_microbatches(self) -> int:
        """Micro-batches per pipeline per step (= gradient accumulation steps)."""
        return self.global_batch // (self.dp * self.micro_batch)

    def size(self, dim: Dim) -> int:
        return {"tp": self.tp, "dp": self.dp, "pp": self.pp}[dim]

    @property
    def gpu_grid(self) -> np.ndarray:
        """Global GPU index of every rank, indexed ``[tp_rank, dp_rank, pp_rank]`` (read-only, cached)."""
        return _gpu_grid(self.tp, self.dp, self.pp, tuple(self.placement))

    def gpu_of(self, tp_rank: int, dp_rank: int, pp_rank: int) -> int:
        """Global GPU index of the rank with these coordinates, following ``placement``."""
        return int(self.gpu_grid[tp_rank, dp_rank, pp_rank])

    def group(self, dim: Dim, tp_rank: int = 0, dp_rank: int = 0, pp_rank: int = 0) -> tuple[int, ...]:
        """GPUs of the ``dim`` group that contains the rank at these coordinates, in rank order."""
        index: list = [tp_rank, dp_rank, pp_rank]
        index[_AXIS[dim]] = slice(None)
        return tuple(self.gpu_grid[tuple(index)].tolist())

    def groups(self, dim: Dim, pp_rank: int | None = None) -> list[tuple[int, ...]]:
        """All ``dim`` groups (of one pipeline stage if ``pp_rank`` is given), ordered by the
        other coordinates in (tp, dp, pp) order."""
        grid = self.gpu_grid if pp_rank is None else self.gpu_grid[:, :, pp_rank:pp_rank + 1]
        members = np.moveaxis(grid, _AXIS[dim], -1).reshape(-1, self.size(dim))
        return [tuple(row) for row in members.tolist()]


_AXIS = {"tp": 0, "dp": 1, "pp": 2}


@lru_cache(maxsize=64)
def _gpu_grid(tp: int, dp: int, pp: int, placement: tuple[str, ...]) -> np.ndarray:
    sizes = {"tp": tp, "dp": dp, "pp": pp}
    strides, stride = {}, 1
    for dim in placement:
        strides[dim] = stride
        stride *= sizes[dim]
    t, d, p = np.ix_(np.arange(tp), np.arange(dp), np.arange(pp))
    grid = t * strides["tp"] + d * strides["dp"] + p * strides["pp"]
    grid.flags.writeable = False
    return grid


def check_plan_against(plan: ParallelPlan, *, n_heads: int, n_kv_heads: int, n_layers: int,
                       n_gpus: int, gpus_per_node: int) -> None:
    """Raise :class:`PlanError` (field named) if the plan cannot run this model on this fleet."""

    def divisors(n: int) -> str:
        return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0 and d <= 64)

    if plan.n_gpus != n_gpus:
        raise PlanError(
            f"tp x pp x dp = {plan.tp} x {plan.pp} x {plan.dp} = {plan.n_gpus} GPUs, but the fleet has {n_gpus}; "
            f"make dp = {n_gpus // (plan.tp * plan.pp)}" if n_gpus % (plan.tp * plan.pp) == 0
            else f"tp x pp = {plan.tp * plan.pp} does not divide the fleet of {n_gpus} GPUs",
            field="plan.dp",
        )
    if n_heads % plan.tp:
        raise PlanError(f"tp={plan.tp} does not divide n_heads={n_heads}; use one of {divisors(n_heads)}", field="plan.tp")
    if n_kv_heads % plan.tp and plan.tp % n_kv_heads:
        raise PlanError(
            f"tp={plan.tp} and n_kv_heads={n_kv_heads}: one must divide the other", field="plan.tp"
        )
    if n_layers % (plan.pp * plan.vpp):
        raise PlanError(
            f"n_layers={n_layers} is not divisible by pp x vpp = {plan.pp} x {plan.vpp}; "
            f"pp x vpp must be one of {divisors(n_layers)}",
            field="plan.pp",
        )
    if plan.schedule == "interleaved" and plan.n_microbatches % plan.pp:
        raise PlanError(
            f"the interleaved schedule needs the number of micro-batches ({plan.n_microbatches}) "
            f"to be a multiple of pp={plan.pp}",
            field="plan.global_batch",
        )
    if n_gpus % gpus_per_node and n_gpus > gpus_per_node:
        raise PlanError(f"{n_gpus} GPUs is not a whole number of {gpus_per_node}-GPU nodes", field="gpus")
