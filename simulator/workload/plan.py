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

from simulator.core.bounds import MAX_GPUS, Flag, GpuCount, real, span, whole
from simulator.core.cache import sized_cache
from simulator.core.units import BYTES_PER_ELEMENT, Precision
from simulator.workload.framework import DEFAULT_FRAMEWORK, FrameworkName
from simulator.workload.legality import (
    batch_splits,
    cp_has_flash,
    cp_splits_sequence,
    enough_layers,
    first,
    fleet_filled,
    full_tp_overlap_has_sp,
    interleaving_fits,
    placement_complete,
    schedule_matches_vpp,
    sp_splits_sequence,
    tp_splits_ffn,
    tp_splits_heads,
    tp_splits_kv_heads,
    whole_nodes,
)
from simulator.workload.model import ModelConfig

Dim = Literal["tp", "dp", "pp"]
GroupDim = Literal["tp", "cp", "dp", "pp"]
Recompute = Literal["none", "selective", "per_op", "full"]
Schedule = Literal["gpipe", "1f1b", "interleaved"]
MAX_BATCH = 2**24
"""The most sequences in one step (and in one micro-batch), and the most virtual pipeline chunks."""
_RANKS = span(1, MAX_GPUS)


class ParallelPlan(BaseModel):
    """Parallel plan of one training job. Sizes are counts; ``1`` means that kind of parallelism is off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tp: GpuCount = Field(1, description=f"Tensor-parallel size, in {_RANKS}.")
    pp: GpuCount = Field(1, description=f"Pipeline-parallel stages, in {_RANKS}.")
    dp: GpuCount = Field(1, description=f"Data-parallel replicas, in {_RANKS}.")
    cp: GpuCount = Field(1, description="Context-parallel size: each sequence split over cp ranks "
                         f"(Megatron-Core ring attention); 1 = off; in {_RANKS}.")
    vpp: whole(1, MAX_BATCH) = Field(1, description="Virtual pipeline chunks per stage (interleaved 1F1B); "
                                     f"1 = off; in {span(1, MAX_BATCH)}.")
    micro_batch: whole(1, MAX_BATCH) = Field(1, description="Sequences per micro-batch per pipeline, in "
                                             f"{span(1, MAX_BATCH)}.")
    global_batch: whole(1, MAX_BATCH) = Field(description="Sequences per optimizer step, all replicas together, "
                                              f"in {span(1, MAX_BATCH)}.")
    schedule: Schedule = Field("1f1b", description="Pipeline schedule; 'interleaved' needs vpp > 1.")
    sequence_parallel: Flag = Field(False, description="Megatron sequence parallelism (needs tp > 1 to matter).")
    recompute: Recompute = Field(
        "none", description="Activation recomputation: 'selective' = Megatron's (the attention core); 'per_op' = "
        "torchtitan's per-op selective AC (element-wise ops and every second matmul recomputed); 'full' = blocks "
        "checkpointed at their input (one in every checkpoint_every).")
    checkpoint_every: whole(1, 1024) = Field(
        1, description="With recompute 'full': one block in every N is checkpointed, the others keep their "
        f"activations (torchtitan's layer-level selective AC); 1 = every block; in {span(1, 1024)}.")
    cpu_offload_layers: whole(0, 1024) = Field(
        0, description="Blocks per stage whose saved activations are offloaded to host memory during the forward "
        f"pass (Megatron-Core --cpu-offloading-num-layers); in {span(0, 1024)}.")
    reshard_after_forward: Flag = Field(
        True, description="ZeRO-3: free the gathered parameters after each block's forward and gather them again for "
        "its backward (FSDP2 reshard_after_forward); false keeps them gathered from forward to backward.")
    fp8_saved_inputs: Flag = Field(
        True, description="fp8 training saves each linear layer's input in fp8, 1 byte per element (Transformer "
        "Engine); false keeps it in bf16 (torchao float8).")
    fused_elementwise: Flag = Field(
        True, description="Element-wise ops fused or compiled (Megatron's fusions, torch.compile); false runs them "
        "eagerly, one kernel each.")
    framework: FrameworkName = Field(
        DEFAULT_FRAMEWORK, description="The training framework (simulator/workload/frameworks/): its defaults fill "
        "the plan options a scenario leaves open, and its kernels and engine set how the step runs.")
    zero_stage: whole(0, 3) = Field(0, description="ZeRO stage: 1 shards optimizer, 2 also gradients, 3 also "
                                    f"parameters; in {span(0, 3)}.")
    precision: Precision = Field("bf16", description="Math precision of GEMMs and stored activations.")
    placement: tuple[Dim, Dim, Dim] = Field(("tp", "dp", "pp"), description="Rank dimensions innermost first.")
    dp_bucket_bytes: real(1e6, 1e12) | None = Field(
        None,
        description=f"Gradient bucket for DP reduction, bytes of reduced gradients, in {span(1e6, 1e12)} (1 MB to "
        "1 TB); None: Megatron-LM's default (see grad_bucket_bytes).",
    )
    overlap_grad_reduce: Flag = Field(True, description="Overlap DP gradient reduction with the last backward pass.")
    overlap_param_gather: Flag = Field(
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
        for violation in (placement_complete(self.placement), schedule_matches_vpp(self.schedule, self.vpp, self.pp),
                          cp_has_flash(self.cp, self.attention),
                          full_tp_overlap_has_sp(self.tp_overlap, self.sequence_parallel, self.tp),
                          batch_splits(self.global_batch, self.dp, self.micro_batch)):
            if violation is not None:
                raise ValueError(violation.message)
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
    first(enough_layers(n_layers, n_virtual))
    q, r = divmod(n_layers, n_virtual)
    counts = [q + 1] * n_virtual
    ends = sorted(range(n_virtual), key=lambda v: (min(v, n_virtual - 1 - v), v != 0))  # first, last, inwards
    for v in ends[: n_virtual - r]:
        counts[v] = q
    return tuple(counts)


@sized_cache(lambda grid: grid.nbytes)  # 8 bytes a GPU: bounded in bytes, not in fleets
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


def check_plan(plan: ParallelPlan, model: ModelConfig, *, n_gpus: int, gpus_per_node: int) -> None:
    """Raise :class:`PlanError` (field named) if the plan cannot run ``model`` on ``n_gpus`` GPUs in
    nodes of ``gpus_per_node`` (the rules of :mod:`simulator.workload.legality`)."""
    first(
        fleet_filled(plan.tp, plan.cp, plan.pp, plan.dp, n_gpus),
        tp_splits_heads(plan.tp, model.n_heads),
        tp_splits_kv_heads(plan.tp, model.kv_heads),
        enough_layers(model.n_layers, plan.pp * plan.vpp),
        interleaving_fits(plan.schedule, plan.n_microbatches, plan.pp),
        whole_nodes(n_gpus, gpus_per_node),
        tp_splits_ffn(plan.tp, model.ffn),
        cp_splits_sequence(model.seq_len, plan.cp),
        sp_splits_sequence(model.seq_len, plan.cp, plan.tp, plan.sequence_parallel),
    )
