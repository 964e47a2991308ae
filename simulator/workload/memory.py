"""Memory per GPU: parameters, gradients, optimizer state, activations, buffers (bytes).

Notation: ``s`` seq_len, ``b`` micro-batch, ``h`` d_model, ``a`` query heads,
``k`` key/value heads, ``d = h / a`` head dim, ``f`` MLP inner size, ``V``
vocab, ``L`` layers, ``t`` tensor-parallel size, ``p`` pipeline stages, ``v``
virtual chunks per stage, ``m`` micro-batches per step, ``e`` bytes per
activation element (2 for 16-bit training).

Model states (Megatron-LM mixed-precision Adam, Rajbhandari et al. 2020 "ZeRO",
section 3.1): per parameter 2 bytes of bf16/fp16 weights (fp8 training keeps
bf16 weights, so also 2; fp32/tf32 training 4), 4 bytes of fp32 gradients
(Megatron accumulates into an fp32 main-grad buffer) and 12 bytes of optimizer
state (fp32 master weights + Adam ``m`` and ``v``; 8 in fp32 training, where the
weights are the master copy). ZeRO stage 1 shards the optimizer state over the
``dp`` replicas, stage 2 also the gradients, stage 3 also the weights.

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
plus what the embedding and the LM head store. Buffers are the transient peaks
on top: the fp32 logits of one micro-batch, the one block being recomputed,
one DP gradient bucket, pipeline send/receive buffers and, for ZeRO-3, two
gathered blocks of weights. Not modelled: the CUDA context and allocator
fragmentation (typically a few GB; pass a ``capacity_bytes`` that leaves room
for them if you want a conservative ``fits``), NCCL's internal buffers,
optimizer temporaries.

Context parallelism (``cp``): a rank keeps the activations of its ``s / cp`` tokens of each
sequence (everything above with ``s / cp`` for ``s``), and ZeRO shards over the ``dp x cp``
ranks that hold the same parameters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from simulator.core.errors import InputError
from simulator.core.units import GB, weight_bytes
from simulator.workload.counting import parameter_count
from simulator.workload.model import ModelConfig
from simulator.workload.plan import ParallelPlan, Recompute

Attention = Literal["flash", "standard"]

_RECOMPUTE = ("none", "selective", "full")
_ATTENTION = ("flash", "standard")


def _kv_width_per_rank(model: ModelConfig, tp: int) -> float:
    """Columns of K (or V) a tensor-parallel rank holds: ``k d / t``, or ``d`` when ``t > k`` (replicated heads)."""
    k, d = model.kv_heads, model.head_dim
    return k * d / tp if k >= tp else d


def activation_bytes_per_layer(
    model: ModelConfig,
    *,
    micro_batch: int,
    tp: int = 1,
    sequence_parallel: bool = False,
    recompute: Recompute = "none",
    attention: Attention = "flash",
    element_bytes: float = 2,
    dropout: bool = True,
) -> float:
    """Bytes of activations one transformer block keeps for its backward pass, per micro-batch, on one rank.

    Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
    Transformer Models", section 4 and Table 2, give for a GPT block (MHA,
    4h GeLU MLP, dropout, 16-bit activations, 1-byte dropout masks)::

        no parallelism               s b h (34 + 5 a s / h)
        tensor parallel              s b h (10 + 24/t + 5 a s / (h t))
        tensor + sequence parallel   s b h (34/t + 5 a s / (h t))
        selective recompute, TP+SP   s b h 34 / t         (TP only: s b h (10 + 24/t))
        full recompute               2 s b h              (/t with sequence parallelism)

    Derivation (the tensor list of the paper's section 4.1, with ``e = 2``),
    generalised here to ``k`` kv heads and an inner size ``f``:

    * outside the tensor-parallel regions (kept whole under TP, split ``1/t``
      by sequence parallelism): the inputs of the two norms ``2 e sbh``, the
      QKV input ``e sbh``, the MLP input ``e sbh``, the attention-output and
      MLP-output dropout masks ``2 sbh``. With ``e = 2``: **10 sbh**.
    * inside them (split ``1/t``): Q ``e sbh`` and K ``e sb kd`` for ``QK^T``,
      V ``e sb kd`` for the weighted sum, the output-projection input ``e sbh``;
      the MLP keeps its activation-function input and output, ``2 e sbf``; a gated
      (SwiGLU) MLP keeps gate and up outputs and the down-projection input,
      ``3 e sbf`` (Megatron's fused SwiGLU recomputes ``silu`` in backward).
      For ``k = a``, ``f = 4h``, ``e = 2``: 4 + 4 + 16 = **24 sbh**. GQA shrinks
      the K and V terms to ``k/a`` of MHA's; with ``t > k`` a rank holds one kv head.
    * attention scores, per head and split ``1/t``:

      - ``attention="standard"``: softmax output ``e a s^2 b``, its dropout
        mask ``a s^2 b`` and the dropout output ``e a s^2 b``: **5 a s^2 b**.
        These are the paper's numbers exactly.
      - ``attention="flash"`` (default; FlashAttention-2, cuDNN and other fused
        kernels): the ``s x s`` matrix is never stored; the kernel keeps only
        the fp32 log-sum-exp per query and head, ``4 a s b``, and regenerates the
        dropout mask from the RNG state. Q, K, V and the output are kept as above.

    Selective recomputation drops the score term; full recomputation keeps only
    the block input ``e sbh`` (split by sequence parallelism). ``dropout=False``
    (models trained without dropout, e.g. Llama) removes the masks (``2 sbh``) and
    the standard path's dropout output. Sequence parallelism only matters for ``tp > 1``.

    ``element_bytes`` is ``e`` (2 for bf16/fp16, 4 for fp32). Returns bytes.
    Raises :class:`InputError` for an unknown ``recompute`` or ``attention``.
    """
    _check_activation_options(recompute, attention, micro_batch, tp)
    s, b, h, a, f = model.seq_len, micro_batch, model.d_model, model.n_heads, model.ffn
    t, e = tp, element_bytes
    sbh = s * b * h
    outside_split = t if sequence_parallel else 1

    if recompute == "full":
        return e * sbh / outside_split

    mask = 1 if dropout else 0
    outside = (4 * e + 2 * mask) * sbh / outside_split
    kd = _kv_width_per_rank(model, t)
    inside = 2 * e * sbh / t + 2 * e * s * b * kd + (3 if model.gated_mlp else 2) * e * s * b * f / t
    if recompute == "selective":
        scores = 0.0
    elif attention == "standard":
        scores = ((2 * e + mask) if dropout else e) * a * s * s * b / t
    else:
        scores = 4.0 * a * s * b / t
    return outside + inside + scores


def _check_activation_options(recompute: str, attention: str, micro_batch: int, tp: int) -> None:
    if recompute not in _RECOMPUTE:
        raise InputError(f"unknown recompute {recompute!r}; use one of {', '.join(_RECOMPUTE)}", field="plan.recompute")
    if attention not in _ATTENTION:
        raise InputError(f"unknown attention {attention!r}; use one of {', '.join(_ATTENTION)}", field="attention")
    if micro_batch < 1 or tp < 1:
        raise InputError(f"micro_batch and tp must be >= 1, got {micro_batch} and {tp}", field="plan")


def microbatches_in_flight(plan: ParallelPlan, stage: int) -> float:
    """Micro-batches whose activations stage ``stage`` (0-based) holds at its peak, in units of its ``L/p`` blocks.

    * GPipe: all ``m`` (every forward runs before any backward).
    * 1F1B (Narayanan et al. 2021, section 2.2.1): ``min(p - i, m)``; the first
      stage holds ``p``.
    * Interleaved 1F1B with ``v`` chunks per stage: Megatron-LM's schedule
      (``forward_backward_pipelining_with_interleaving``) runs
      ``2 (p - i - 1) + (v - 1) p`` warm-up chunk-forwards plus one in the
      steady state before the first backward, capped at the ``m v`` chunk-forwards
      there are; a chunk is ``1/v`` of the stage's blocks, so the count is
      ``min(2 (p - i - 1) + (v - 1) p + 1, m v) / v``. For the first stage this is
      ``p (1 + (p - 1)/(p v))``, Korthikanti et al. 2022's figure (section 4.2.3).
      When ``m == p`` Megatron-LM runs all forwards first: all ``m``.
    """
    p, m, v = plan.pp, plan.n_microbatches, plan.vpp
    if not 0 <= stage < p:
        raise InputError(f"stage {stage} does not exist; stages are 0 to {p - 1}", field="stage")
    if plan.schedule == "gpipe":
        return float(m)
    if plan.schedule == "1f1b":
        return float(min(p - stage, m))
    if m == p:  # Megatron-LM runs every forward first when m == pp
        return float(m)
    return min(2 * (p - stage - 1) + (v - 1) * p + 1, m * v) / v


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes one GPU needs at its peak, by kind; ``capacity`` is the GPU's memory (bytes)."""

    parameters: float
    gradients: float
    optimizer: float
    activations: float
    buffers: float
    capacity: float
    stage: int = 0
    """Pipeline stage (0-based) this breakdown is for."""

    @property
    def total(self) -> float:
        """Sum of all kinds, bytes."""
        return self.parameters + self.gradients + self.optimizer + self.activations + self.buffers

    @property
    def fits(self) -> bool:
        """Whether ``total <= capacity``."""
        return self.total <= self.capacity

    def to_dict(self) -> dict[str, float | int | bool]:
        """All fields plus ``total`` and ``fits`` (bytes)."""
        return {**asdict(self), "total": self.total, "fits": self.fits}

    def summary(self) -> str:
        """One line for reports and errors, in GB (10^9 bytes)."""
        parts = ", ".join(f"{k} {getattr(self, k) / GB:.1f}"
                          for k in ("parameters", "gradients", "optimizer", "activations", "buffers"))
        verdict = "fits" if self.fits else "does NOT fit"
        return (f"stage {self.stage}: {self.total / GB:.1f} GB of {self.capacity / GB:.1f} GB, {verdict} "
                f"({parts} GB)")


def _state_bytes(precision: str) -> tuple[int, int, int]:
    """Bytes per parameter of (weights, gradients, optimizer state)."""
    if precision in ("fp32", "tf32"):
        return weight_bytes(precision), 4, 8
    return weight_bytes(precision), 4, 12


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
) -> MemoryBreakdown:
    """Peak bytes on one GPU of pipeline stage ``stage`` (default: the stage that needs the most).

    * parameters, gradients, optimizer: :func:`parameters_on_stage` times 2/4/12
      bytes (4/4/8 in fp32), divided by ``dp x cp`` per the ZeRO stage (module docstring).
    * activations: ``microbatches_in_flight x (blocks of the stage) x activation_bytes_per_layer``;
      plus, on the first stage, the embedding-dropout mask ``sbh`` (``/t`` with SP)
      per micro-batch in flight; on the last stage the final-norm and LM-head
      inputs ``2 e sbh`` (``/t`` with SP) per micro-batch whose loss is pending
      (``m`` for GPipe, else 1), and for GPipe the fp32 logits of the other
      ``m - 1`` micro-batches (the cross-entropy keeps its softmax for backward).
    * buffers: last stage: fp32 logits of one micro-batch ``4 s b V / t``;
      with recomputation, the difference between one block's full activations and
      its checkpointed ones (the block being recomputed); ``dp > 1``: one gradient
      bucket (``plan.grad_bucket_bytes``, capped at the stage's gradients);
      ``pp > 1``: one ``e sbh`` buffer (``/t`` with SP) per neighbour stage for
      send/receive; ZeRO-3: two blocks of gathered weights (current + prefetch).

    ``attention`` (default: the plan's) selects the score term of
    :func:`activation_bytes_per_layer`.

    Raises :class:`PlanError` with fewer layers than ``pp x vpp`` and
    :class:`InputError` for a stage that does not exist.
    """
    plan.layers(model.n_layers)  # raises for fewer layers than virtual stages
    if dropout is None:
        dropout = model.dropout
    if attention is None:
        attention = plan.attention
    if stage is None:
        candidates = [_stage_memory(model, plan, capacity_bytes, i, attention, dropout) for i in range(plan.pp)]
        return max(candidates, key=lambda mb: (mb.total, -mb.stage))
    return _stage_memory(model, plan, capacity_bytes, stage, attention, dropout)


def _stage_memory(model: ModelConfig, plan: ParallelPlan, capacity_bytes: float, stage: int, attention: Attention,
                  dropout: bool) -> MemoryBreakdown:
    """:func:`memory_per_gpu` of one stage."""
    n_params = parameters_on_stage(model, plan, stage)
    w_b, g_b, o_b = _state_bytes(plan.precision)
    dp, z = plan.dp_cp, plan.zero_stage
    parameters = n_params * w_b / (dp if z >= 3 else 1)
    gradients = n_params * g_b / (dp if z >= 2 else 1)
    optimizer = n_params * o_b / (dp if z >= 1 else 1)

    e = _activation_element_bytes(plan.precision)
    t, sp = plan.tp, plan.sequence_parallel
    s, b, h, V = model.seq_len // plan.cp, plan.micro_batch, model.d_model, model.vocab  # s: tokens on this rank
    sbh = s * b * h
    outside = t if sp else 1
    split = plan.layers(model.n_layers)
    layers = sum(split[c * plan.pp + stage] for c in range(plan.vpp))  # blocks on this stage
    act_kwargs = dict(micro_batch=b, tp=t, sequence_parallel=sp, attention=attention,
                      element_bytes=e, dropout=dropout)
    local = model if plan.cp == 1 else model.model_copy(update={"seq_len": s})
    per_layer = activation_bytes_per_layer(local, recompute=plan.recompute, **act_kwargs)
    in_flight = microbatches_in_flight(plan, stage)
    activations = in_flight * layers * per_layer

    first, last = stage == 0, stage == plan.pp - 1
    logits = 4.0 * s * b * V / t
    head_pending = plan.n_microbatches if plan.schedule == "gpipe" else 1
    if first and dropout:
        activations += in_flight * sbh / outside
    if last:
        activations += head_pending * 2 * e * sbh / outside
        activations += (head_pending - 1) * logits

    buffers = logits if last else 0.0
    if plan.recompute != "none":
        buffers += activation_bytes_per_layer(local, recompute="none", **act_kwargs) - per_layer
    if dp > 1:
        buffers += min(plan.grad_bucket_bytes, gradients)
    if plan.pp > 1:
        buffers += (int(not first) + int(not last)) * e * sbh / outside
    if z >= 3:
        buffers += 2 * w_b * block_parameters_per_rank(model, t)

    return MemoryBreakdown(
        parameters=parameters, gradients=gradients, optimizer=optimizer,
        activations=activations, buffers=buffers, capacity=float(capacity_bytes), stage=stage,
    )
