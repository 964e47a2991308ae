"""Memory per GPU: parameters, gradients, optimizer state, activations, buffers (bytes).

Notation: ``s`` seq_len, ``b`` micro-batch, ``h`` d_model, ``a`` query heads,
``k`` key/value heads, ``d = h / a`` head dim, ``f`` MLP inner size, ``V``
vocab, ``L`` layers, ``t`` tensor-parallel size, ``p`` pipeline stages, ``v``
virtual chunks per stage, ``m`` micro-batches per step, ``e`` bytes per
activation element (2 for 16-bit training).

Model states (Megatron-LM mixed-precision Adam, Rajbhandari et al. 2020 "ZeRO",
section 3.1): per parameter 2 bytes of bf16/fp16 weights (fp8 training keeps
bf16 weights, so also 2; fp32/tf32 training 4), the gradient buffer in the
plan's ``grad_reduce_precision`` (4 bytes fp32, Megatron's default main-grad
buffer; 2 bytes bf16, Megatron-Core with ``grad_reduce_in_fp32=False``) and 12
bytes of optimizer state (fp32 master weights + Adam ``m`` and ``v``; 8 in fp32
training, where the weights are the master copy). ZeRO stage 1 shards the
optimizer state over the ``dp`` replicas, stage 2 also the gradients, stage 3
also the weights. PyTorch-native frameworks (``Framework.fp32_master_parameters``:
FSDP2, FSDP, DDP with AMP) keep no separate 16-bit weights: the fp32 parameters
are the master copy (4 bytes), their gradients are fp32 (4: FSDP2 casts the
reduced shard to the parameter's dtype whatever its ``reduce_dtype``), Adam
keeps 8; the 16-bit copies the matmuls use are transient (buffers below).

Which parameters a rank holds: its stage's blocks (``L/p``, or as
:meth:`~simulator.workload.plan.ParallelPlan.layers` splits them when ``p`` does not divide
``L``), with the matrices
(and the biases of column-parallel layers) split ``1/t`` and the norms and the
biases of the two row-parallel layers (attention output, MLP down) replicated,
as in Megatron-LM. Key/value projections are replicated when ``t > k`` (each
rank keeps one kv head). The first stage also holds the token embedding
(vocab-parallel, ``V h / t``) and learned positions (replicated, ``s h``); the
last stage the final norm and the LM head (``V h / t``). A tied head on ``p > 1``
stages is a second copy on the last stage (Megatron keeps both and all-reduces
their gradients); with ``p = 1`` it is counted once.

Activations: :func:`activation_bytes_per_layer` (derivation there) times the
blocks of the stage times the micro-batches in flight (:func:`microbatches_in_flight`),
plus what the embedding and the LM head store; blocks whose activations are offloaded
to the host (``cpu_offload_layers``) keep none. Buffers are the transient peaks
on top: the fp32 logits of one micro-batch, the one block being recomputed (or
reloaded from the host), one DP gradient bucket, pipeline send/receive buffers and,
for ZeRO-3, the gathered weights (two blocks, current + prefetch; every block of the
stage when ``reshard_after_forward`` is off) and one block's unsharded gradients.

The total is **allocated** memory (the peak of live tensors). :class:`MemoryBreakdown` also
gives **reserved** (plus the caching allocator's slack) and **device** memory (plus the CUDA
context and NCCL's buffers), from :mod:`simulator.workload.allocator`; ``fits`` compares
what a job needs on the device (allocated plus context and NCCL buffers: the allocator's cached
slack is given back before an out-of-memory error) with the capacity. Not modelled: optimizer temporaries.

Context parallelism (``cp``): a rank keeps the activations of its ``s / cp`` tokens of each
sequence (everything above with ``s / cp`` for ``s``), and ZeRO shards over the ``dp x cp``
ranks that hold the same parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from simulator.core.errors import InputError
from simulator.core.units import GB, weight_bytes
from simulator.workload.activations import (
    Attention,
    activation_bytes_per_layer,
    microbatches_in_flight,
    per_op_saved_bytes,
)
from simulator.workload.allocator import AllocatorModel, allocator_model, communicators
from simulator.workload.counting import parameter_count
from simulator.workload.framework import get_framework
from simulator.workload.model import ModelConfig
from simulator.workload.plan import ParallelPlan

__all__ = ["Attention", "MemoryBreakdown", "activation_bytes_per_layer", "block_parameters_per_rank",
           "memory_per_gpu", "microbatches_in_flight", "parameters_on_stage", "parameters_on_virtual_stage",
           "per_op_saved_bytes"]


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes one GPU needs at its peak, by kind; ``capacity`` is the GPU's memory (bytes).

    The five kinds add up to the **allocated** peak (live tensors); ``allocator_slack`` is the
    caching allocator's reserved-but-free bytes on top, ``outside_allocator`` the CUDA context
    and NCCL buffers (:mod:`simulator.workload.allocator`)."""

    parameters: float
    gradients: float
    optimizer: float
    activations: float
    buffers: float
    capacity: float
    stage: int = 0
    """Pipeline stage (0-based) this breakdown is for."""
    allocator_slack: float = field(default=0.0, compare=False)
    outside_allocator: float = field(default=0.0, compare=False)

    @property
    def total(self) -> float:
        """Sum of all kinds, bytes: the allocated peak."""
        return self.parameters + self.gradients + self.optimizer + self.activations + self.buffers

    @property
    def allocated(self) -> float:
        """Peak of live tensors (``torch.cuda.max_memory_allocated``), bytes: :attr:`total`."""
        return self.total

    @property
    def reserved(self) -> float:
        """Allocated plus the caching allocator's slack (``torch.cuda.max_memory_reserved``), bytes."""
        return self.total + self.allocator_slack

    @property
    def device(self) -> float:
        """Reserved plus the CUDA context and NCCL buffers (what ``nvidia-smi`` shows), bytes."""
        return self.reserved + self.outside_allocator

    def statistic(self, name: str) -> float:
        """Bytes of the statistic ``name``: ``allocated``, ``reserved`` or ``device``."""
        if name not in ("allocated", "reserved", "device"):
            raise InputError(f"unknown memory statistic {name!r}; use allocated, reserved or device",
                             field="memory_statistic")
        return getattr(self, name)

    @property
    def required(self) -> float:
        """What the job needs on the device, bytes: allocated plus the CUDA context and NCCL
        buffers. The allocator's slack is not needed: when a ``cudaMalloc`` fails the caching
        allocator frees its cached blocks and retries before it reports out-of-memory
        (``c10/cuda/CUDACachingAllocator.cpp``, ``release_cached_blocks``; counted as
        ``num_alloc_retries``), so a job runs, more slowly, with less than its reserved peak."""
        return self.total + self.outside_allocator

    @property
    def fits(self) -> bool:
        """Whether the job can run: :attr:`required` (device memory without the allocator's
        reclaimable slack) ``<= capacity``."""
        return self.required <= self.capacity

    def to_dict(self) -> dict[str, float | int | bool]:
        """The five kinds, ``capacity`` and ``stage``, plus ``total`` (allocated) and ``fits``
        (bytes); the ``--json`` document's keys (reserved and device are not in it yet)."""
        keys = ("parameters", "gradients", "optimizer", "activations", "buffers", "capacity", "stage")
        return {**{k: getattr(self, k) for k in keys}, "total": self.total, "fits": self.fits}

    def summary(self) -> str:
        """One line for reports and errors, in GB (10^9 bytes)."""
        parts = ", ".join(f"{k} {getattr(self, k) / GB:.1f}"
                          for k in ("parameters", "gradients", "optimizer", "activations", "buffers"))
        verdict = "fits" if self.fits else "does NOT fit"
        return (f"stage {self.stage}: {self.total / GB:.1f} GB allocated, {self.required / GB:.1f} GB needed on the "
                f"device of {self.capacity / GB:.1f} GB, {verdict} ({parts} GB)")


def _state_bytes(plan: ParallelPlan) -> tuple[int, int, int]:
    """Bytes per parameter of (weights, gradients, optimizer state) (module docstring)."""
    if plan.precision in ("fp32", "tf32") or get_framework(plan.framework).fp32_master_parameters:
        return 4, 4, 8
    return weight_bytes(plan.precision), 4 if plan.grad_reduce_precision == "fp32" else 2, 12


def block_parameters_per_rank(model: ModelConfig, tp: int) -> float:
    """Parameters (count) of one transformer block on one tensor-parallel rank.

    Matrices and column-parallel biases split ``1/t``; the two norms and the
    row-parallel biases (attention output, MLP down: ``2h``) replicated; the K
    and V projections split ``1/t`` for ``k >= t``, else one kv head per rank.
    """
    pc = parameter_count(model)
    h = model.d_model
    norm = 2 * h if model.norm == "layernorm" else h
    replicated = 2 * norm + (2 * h if model.bias else 0)
    kv_width = model.kv_heads * model.head_dim
    kv = 2 * h * kv_width + (2 * kv_width if model.bias else 0)
    split = pc.per_layer - replicated - kv
    kv_share = 1 / tp if model.kv_heads >= tp else 1 / model.kv_heads
    return split / tp + kv * kv_share + replicated


def parameters_on_virtual_stage(model: ModelConfig, plan: ParallelPlan, v: int) -> float:
    """Parameters (count) one tensor-parallel rank holds for virtual stage ``v`` (model chunk
    ``v // pp`` of stage ``v % pp``), before ZeRO sharding: its blocks (:meth:`ParallelPlan.layers`), the
    embedding on the first virtual stage, the final norm and LM head on the last (layout as in
    the module docstring)."""
    n_virtual = plan.pp * plan.vpp
    pc = parameter_count(model)
    t = plan.tp
    n = plan.layers(model.n_layers)[v] * block_parameters_per_rank(model, t)
    if v == 0:
        n += pc.embedding / t + pc.position
    if v == n_virtual - 1:
        n += pc.final_norm
        if not model.tied_embeddings:
            n += pc.lm_head / t
        elif n_virtual > 1:
            n += pc.embedding / t
    return n


def parameters_on_stage(model: ModelConfig, plan: ParallelPlan, stage: int) -> float:
    """Parameters (count) one tensor-parallel rank of pipeline stage ``stage`` holds, before ZeRO
    sharding: the sum over its ``vpp`` model chunks.

    Raises :class:`PlanError` with fewer layers than ``pp x vpp``.
    """
    if not 0 <= stage < plan.pp:
        raise InputError(f"stage {stage} does not exist; stages are 0 to {plan.pp - 1}", field="stage")
    return sum(parameters_on_virtual_stage(model, plan, c * plan.pp + stage) for c in range(plan.vpp))


def _activation_element_bytes(precision: str) -> int:
    # fp8 training (Transformer Engine) still keeps most saved activations in bf16.
    return 4 if precision in ("fp32", "tf32") else 2


def memory_per_gpu(
    model: ModelConfig,
    plan: ParallelPlan,
    *,
    capacity_bytes: float,
    stage: int | None = None,
    attention: Attention | None = None,
    dropout: bool | None = None,
    allocator: AllocatorModel | None = None,
) -> MemoryBreakdown:
    """Peak bytes on one GPU of pipeline stage ``stage`` (default: the stage that needs the most).

    * parameters, gradients, optimizer: :func:`parameters_on_stage` times the bytes per
      parameter of the module docstring, divided by ``dp x cp`` per the ZeRO stage.
    * activations: ``microbatches_in_flight x`` (the stage's blocks not offloaded to the host)
      ``x activation_bytes_per_layer`` (with recompute ``"full"`` and ``checkpoint_every = N``,
      ``floor(blocks / N)`` blocks keep their input only, the others everything, averaged over the
      blocks); plus, on the first stage, the embedding-dropout mask ``sbh`` (``/t`` with SP)
      per micro-batch in flight; on the last stage the final-norm and LM-head
      inputs ``2 e sbh`` (``/t`` with SP) per micro-batch whose loss is pending
      (``m`` for GPipe, else 1), and for GPipe the fp32 logits of the other
      ``m - 1`` micro-batches (the cross-entropy keeps its softmax for backward).
    * buffers (:func:`_buffers`): last stage: fp32 logits of one micro-batch ``4 s b V / t``;
      with recomputation, the difference between one block's full activations and its
      checkpointed ones (the block being recomputed); with offload, one block's activations
      (being reloaded); ``dp > 1``: one gradient bucket (``plan.grad_bucket_bytes``, capped at
      the stage's gradients); ``pp > 1``: one ``e sbh`` buffer (``/t`` with SP) per neighbour
      stage; ZeRO-3: the gathered 16-bit weights of two blocks (current + prefetch), or of every
      block of the stage without ``reshard_after_forward``, and one DP gradient bucket as above; FSDP (``Framework.fp32_master_parameters``) reduce-scatters a whole block at once:
      one block's unsharded gradients (16-bit, plus their copy when reduced in fp32) instead, and
      it keeps the root module's (embedding, head) parameters gathered (FSDP2 never reshards the
      root after forward); DDP with autocast keeps a 16-bit copy of every weight and its reducer a copy of
      every gradient (``Framework.gradient_bucket_copy``).

    ``attention`` (default: the plan's) selects the score term of
    :func:`activation_bytes_per_layer`. ``allocator`` (default: the packaged
    :func:`~simulator.workload.allocator.allocator_model`) gives the reserved and device memory.

    Raises :class:`PlanError` with fewer layers than ``pp x vpp`` and
    :class:`InputError` for a stage that does not exist.
    """
    plan.layers(model.n_layers)  # raises for fewer layers than virtual stages
    if dropout is None:
        dropout = model.dropout
    if attention is None:
        attention = plan.attention
    allocator = allocator or allocator_model()
    if stage is None:
        candidates = [_stage_memory(model, plan, capacity_bytes, i, attention, dropout, allocator)
                      for i in range(plan.pp)]
        return max(candidates, key=lambda mb: (mb.total, -mb.stage))
    return _stage_memory(model, plan, capacity_bytes, stage, attention, dropout, allocator)


def _blocks_on_stage(model: ModelConfig, plan: ParallelPlan, stage: int) -> int:
    split = plan.layers(model.n_layers)
    return sum(split[c * plan.pp + stage] for c in range(plan.vpp))


def _stage_memory(model: ModelConfig, plan: ParallelPlan, capacity_bytes: float, stage: int, attention: Attention,
                  dropout: bool, allocator: AllocatorModel) -> MemoryBreakdown:
    """:func:`memory_per_gpu` of one stage."""
    n_params = parameters_on_stage(model, plan, stage)
    w_b, g_b, o_b = _state_bytes(plan)
    dp, z = plan.dp_cp, plan.zero_stage
    parameters = n_params * w_b / (dp if z >= 3 else 1)
    gradients = n_params * g_b / (dp if z >= 2 else 1)
    optimizer = n_params * o_b / (dp if z >= 1 else 1)

    e = _activation_element_bytes(plan.precision)
    t, sp = plan.tp, plan.sequence_parallel
    s, b, h, V = model.seq_len // plan.cp, plan.micro_batch, model.d_model, model.vocab  # s: tokens on this rank
    sbh = s * b * h
    outside = t if sp else 1
    layers = _blocks_on_stage(model, plan, stage)
    act_kwargs = dict(micro_batch=b, tp=t, sequence_parallel=sp, attention=attention, element_bytes=e,
                      dropout=dropout, fp8_inputs=plan.precision == "fp8" and plan.fp8_saved_inputs)
    local = model if plan.cp == 1 else model.model_copy(update={"seq_len": s})
    full_block = activation_bytes_per_layer(local, recompute="none", **act_kwargs)
    per_layer = activation_bytes_per_layer(local, recompute=plan.recompute, **act_kwargs)
    if plan.recompute == "full" and plan.checkpoint_every > 1:  # floor(L/N) checkpointed, the rest kept whole
        checkpointed = layers // plan.checkpoint_every
        per_layer = (checkpointed * per_layer + (layers - checkpointed) * full_block) / layers
    kept = layers - min(plan.cpu_offload_layers, layers)
    in_flight = microbatches_in_flight(plan, stage)
    activations = in_flight * kept * per_layer

    first, last = stage == 0, stage == plan.pp - 1
    logits = 4.0 * s * b * V / t
    head_pending = plan.n_microbatches if plan.schedule == "gpipe" else 1
    if first and dropout:
        activations += in_flight * sbh / outside
    if last:
        activations += head_pending * 2 * e * sbh / outside
        activations += (head_pending - 1) * logits

    buffers = (logits if last else 0.0) + max(full_block - per_layer, 0.0)  # the block being recomputed
    if kept < layers:
        buffers += per_layer  # the block being reloaded from the host
    if plan.pp > 1:
        buffers += (int(not first) + int(not last)) * e * sbh / outside
    buffers += _state_buffers(model, plan, n_params, gradients, layers)

    mb = MemoryBreakdown(parameters=parameters, gradients=gradients, optimizer=optimizer,
                         activations=activations, buffers=buffers, capacity=float(capacity_bytes), stage=stage)
    return replace(mb, allocator_slack=allocator.slack(activations + buffers),
                   outside_allocator=allocator.outside(communicators(plan.tp, plan.cp, plan.pp, plan.dp_cp)))


def _state_buffers(model: ModelConfig, plan: ParallelPlan, n_params: float, gradients: float, layers: int) -> float:
    """Transient bytes of model states: the DP gradient bucket, or under ZeRO-3 the gathered
    weights and one block's unsharded gradients; 16-bit weight copies (:func:`memory_per_gpu`)."""
    dp, t = plan.dp_cp, plan.tp
    w16 = weight_bytes(plan.precision)  # the bytes of a weight as the matmuls use it
    fp32_params = get_framework(plan.framework).fp32_master_parameters
    block = block_parameters_per_rank(model, t)
    if plan.zero_stage < 3:
        bucket = min(plan.grad_bucket_bytes, gradients) if dp > 1 else 0.0
        if get_framework(plan.framework).gradient_bucket_copy and dp > 1:
            bucket = gradients  # a second copy of every gradient, in the reducer's buckets
        return bucket + (w16 * n_params if fp32_params and w16 < 4 else 0.0)
    in_blocks = min(layers * block, n_params)  # the stage's parameters that are in its blocks
    blocks_gathered = min(2 * block, in_blocks) if plan.reshard_after_forward else in_blocks
    buffers = w16 * blocks_gathered
    reduce_b = 4 if plan.grad_reduce_precision == "fp32" else 2
    if not fp32_params:  # DeepSpeed ZeRO-3: gradients reduce-scattered in buckets as they are produced
        return buffers + (min(plan.grad_bucket_bytes, gradients) if dp > 1 else 0.0)
    # FSDP: one block's unsharded gradients (16-bit, plus the copy in the reduce precision), and the
    # root module (embedding, head) kept gathered
    buffers += block * (w16 + (reduce_b if reduce_b > w16 else 0))
    return buffers + w16 * (n_params - in_blocks)

