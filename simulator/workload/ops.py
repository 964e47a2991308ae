"""The work of one tensor-parallel rank for one micro-batch, operation by operation.

Each function returns a :class:`LayerWork`: the ordered operations of the
forward pass, the backward pass and the recomputation, each with its FLOPs and
HBM bytes, plus the tensor-parallel collectives each pass issues. The hardware
layer turns an :class:`Op` into time (roofline with shape-dependent efficiency);
the network layer turns a :class:`Collective` into time.

Notation: ``b`` micro-batch (sequences), ``s`` seq_len, ``T = b s`` tokens,
``h`` d_model, ``a`` query heads, ``k`` kv heads, ``d`` head dim, ``f`` MLP
inner size, ``V`` vocab, ``t`` tensor-parallel size, ``e`` bytes per activation
element (:data:`simulator.core.units.BYTES_PER_ELEMENT`; 2 in fp8 training).

FP8 training follows Transformer Engine's recipe (as Megatron-LM ``--fp8-format hybrid``
runs it): the GEMMs of the transformer blocks' linear layers run in fp8 (forward, data and
weight gradient), reading fp8 operands and writing bf16; before each, a cast kernel reads
its bf16 input (forward) or output gradient (backward) and writes the fp8 copy and its
transpose (``*_to_fp8``). Everything else stays bf16: activations, element-wise ops, the
attention core, the LM head, TP collectives and pipeline messages (such ops carry
``Op.precision = "bf16"`` where the FLOP rate matters). The per-step cast of the weights to
fp8 is not counted.

Tensor parallelism follows Megatron-LM (Shoeybi et al. 2019): QKV and the MLP
up (and gate) projections are column-parallel, the attention output and MLP
down projections row-parallel, so GEMM FLOPs and weights divide by ``t``. Each
rank holds ``a/t`` query heads and ``k/t`` kv heads; when ``t > k`` the kv
heads are replicated (one per rank), as Megatron does, so the QKV GEMM does
not split exactly by ``t``. The vocabulary is split in ``ceil(V/t)`` rows per
rank (padding; Megatron pads further to a multiple of ``128 t``).

Context parallelism (``cp``, Megatron-Core's ring attention): each rank of a context-
parallel group holds ``s / cp`` tokens of every sequence (two chunks of ``s / 2cp``, so the
causal work is balanced), so every per-token op, TP collective and pipeline message shrinks
by ``cp``, and so do the attention FLOPs (each rank's queries meet, on average, the same
share of the causal square). The keys and values travel round the ring: forward, each rank
receives the other ranks' K and V (all-gather volume, ``2 b s k_r d e`` bytes); backward, K and
V again and the gradients of K and V (twice that). The transfers run beside the attention
kernel of the previous chunk; only what they take beyond it is exposed (``cp_*``
collectives, ``overlaps_with`` the attention kernels).

Sequence parallelism (Korthikanti et al. 2022): norms, residual adds and the
position add run on ``T/t`` tokens; every all-reduce becomes an all-gather plus
a reduce-scatter of the same full size. The backward pass issues the conjugate
of each forward collective. Megatron's implementation additionally re-gathers
the sequence-sharded input of each column-parallel GEMM in backward for its
weight gradient (to save memory); that extra all-gather is not modelled here.

Byte counts: a GEMM reads both operands and writes its output once, all in the
activation precision (weights included; fp32 gradient accumulation not
modelled), except that fp8 GEMMs read fp8 operands. Element-wise ops read and write their tensors once. FLOPs of
element-wise ops are rough per-element counts (constants below); these ops are
memory-bound, so their bytes matter and their FLOPs hardly. Dropout is not
modelled (Llama-style pre-training uses none). Biases of column-parallel GEMMs
are taken as fused into the GEMM epilogue.

GEMM shapes are ``(M, N, K)``: output ``M x N``, reduction dimension ``K``,
``2 M N K`` FLOPs. A GEMM's backward is two GEMMs of the same FLOPs: the data
gradient ``dX = dY W^T`` (``(M, K, N)``) and the weight gradient
``dW = X^T dY`` (``(K, N, M)``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from simulator.core.errors import InputError
from simulator.core.units import BYTES_PER_ELEMENT
from simulator.workload.legality import (
    cp_splits_sequence,
    first,
    sp_splits_sequence,
)
from simulator.workload.model import ModelConfig

OpKind = Literal["gemm", "attention", "elementwise"]
CollectiveKind = Literal["all_reduce", "all_gather", "reduce_scatter"]

NORM_FLOPS_PER_ELEMENT = {"layernorm": 8.0, "rmsnorm": 4.0}
"""Forward FLOPs per element of a norm. LayerNorm: mean (1), variance (3),
normalise (2), scale and shift (2). RMSNorm: square-sum (2), normalise (1), scale (1)."""
GELU_FLOPS_PER_ELEMENT = 8.0
"""tanh-approximated GeLU, ~8 FLOPs per element (a tanh counted as a few)."""
SWIGLU_FLOPS_PER_ELEMENT = 5.0
"""SiLU(gate) * up per output element: sigmoid (~3), two multiplies."""
SOFTMAX_FLOPS_PER_ELEMENT = 5.0
"""Unfused attention's scale, mask and softmax per score: scale, max, subtract, exp, sum/divide."""
CROSS_ENTROPY_FLOPS_PER_LOGIT = 5.0
"""Softmax cross-entropy forward per logit: max, subtract, exp, sum, upcast."""
CROSS_ENTROPY_BACKWARD_FLOPS_PER_LOGIT = 2.0
"""Softmax cross-entropy backward per logit: softmax minus one-hot, scaled by the loss gradient."""
BACKWARD_ELEMENTWISE_FACTOR = 2.0
"""Backward FLOPs of an element-wise op per forward FLOP."""
FLASH_BACKWARD_FACTOR = 2.5
"""Flash-attention backward FLOPs per forward FLOP: it recomputes ``Q K^T`` and
then does ``dV``, ``dP``, ``dQ``, ``dK``: 5 matmuls against the forward's 2."""
SOFTMAX_STATS_BYTES = 4
"""Flash attention keeps one fp32 log-sum-exp per query row and head for backward."""
LOSS_BYTES = 4
"""Megatron computes the vocab-parallel cross-entropy on fp32 logits (``logits.float()``)."""


@dataclass(frozen=True)
class Op:
    """One kernel on one rank.

    ``flops``: floating-point operations (FLOPs). ``bytes``: HBM bytes read
    plus written. ``gemm_mnk``: ``(M, N, K)`` of a GEMM as run on this rank
    (``None`` for other kinds).
    """

    name: str
    kind: OpKind
    flops: float
    bytes: float
    gemm_mnk: tuple[int, int, int] | None = None
    precision: str | None = None
    """Math precision when it differs from the plan's (bf16 attention and LM head in fp8 training)."""
    linear: bool = False
    """A linear layer's GEMM (made by :func:`gemm`), whose efficiency falls with its size; the
    batched per-head GEMMs of unfused attention are not (:mod:`simulator.hardware.compute`)."""
    kernels: int = 1
    """Kernel launches the op takes (more than one when an eager framework runs an element-wise op
    as a chain of kernels, :func:`run_eagerly`)."""


@dataclass(frozen=True)
class Collective:
    """One collective over the tensor-parallel group.

    ``bytes`` is the full buffer in the nccl-tests convention: an all-reduce's
    buffer, an all-gather's output, a reduce-scatter's input.
    """

    kind: CollectiveKind
    bytes: float
    name: str
    overlaps_with: str | None = None
    """Name of the GEMM of the same pass this collective can run beside (Megatron-LM's
    asynchronous communication), or None."""
    overlap_needs: Literal["backward", "full", "always"] = "full"
    """The plan's ``tp_overlap`` that enables the overlap: ``"backward"`` (Megatron-LM's default
    asynchronous input-gradient reduction beside the weight-gradient GEMM) or ``"full"``
    (Transformer Engine's ``--tp-comm-overlap``, every TP collective beside its GEMM);
    ``"always"``: the context-parallel ring, which Megatron-Core always overlaps."""


def _sum_flops(ops: tuple[Op, ...]) -> float:
    return float(sum(op.flops for op in ops))


def _sum_bytes(items: tuple[Op, ...] | tuple[Collective, ...]) -> float:
    return float(sum(item.bytes for item in items))


@dataclass(frozen=True)
class LayerWork:
    """Work of one rank for one micro-batch through one piece of the model.

    ``recompute`` is forward work redone just before the backward pass;
    ``tp_*`` are the tensor-parallel collectives of each pass, in issue order, and ``cp_*``
    the context-parallel ones.
    Two pieces combine with ``+`` (tuples concatenated, in order).
    """

    forward: tuple[Op, ...]
    backward: tuple[Op, ...]
    recompute: tuple[Op, ...] = ()
    tp_forward: tuple[Collective, ...] = ()
    tp_backward: tuple[Collective, ...] = ()
    tp_recompute: tuple[Collective, ...] = ()
    cp_forward: tuple[Collective, ...] = ()
    cp_backward: tuple[Collective, ...] = ()
    cp_recompute: tuple[Collective, ...] = ()

    def __add__(self, other: "LayerWork") -> "LayerWork":
        if not isinstance(other, LayerWork):
            return NotImplemented
        return LayerWork(
            forward=self.forward + other.forward,
            backward=self.backward + other.backward,
            recompute=self.recompute + other.recompute,
            tp_forward=self.tp_forward + other.tp_forward,
            tp_backward=self.tp_backward + other.tp_backward,
            tp_recompute=self.tp_recompute + other.tp_recompute,
            cp_forward=self.cp_forward + other.cp_forward,
            cp_backward=self.cp_backward + other.cp_backward,
            cp_recompute=self.cp_recompute + other.cp_recompute,
        )

    @property
    def forward_flops(self) -> float:
        return _sum_flops(self.forward)

    @property
    def backward_flops(self) -> float:
        return _sum_flops(self.backward)

    @property
    def recompute_flops(self) -> float:
        return _sum_flops(self.recompute)

    @property
    def total_flops(self) -> float:
        """Forward + backward + recompute FLOPs."""
        return self.forward_flops + self.backward_flops + self.recompute_flops

    @property
    def forward_bytes(self) -> float:
        return _sum_bytes(self.forward)

    @property
    def tp_forward_bytes(self) -> float:
        return _sum_bytes(self.tp_forward)

    @property
    def tp_backward_bytes(self) -> float:
        return _sum_bytes(self.tp_backward)


# --------------------------------------------------------------------------- building blocks


def gemm(name: str, m: int, n: int, k: int, e: int, *, operand_bytes: int | None = None,
          precision: str | None = None) -> Op:
    """``Y[M,N] = X[M,K] W[K,N]``: ``2 M N K`` FLOPs, reads ``X`` and ``W`` (``operand_bytes``
    per element, default ``e``), writes ``Y`` (``e``)."""
    ob = e if operand_bytes is None else operand_bytes
    return Op(name, "gemm", 2.0 * m * n * k, float((m * k + k * n) * ob + m * n * e), (m, n, k), precision,
              linear=True)


def gemm_backward(fwd: Op) -> tuple[Op, Op]:
    """Data and weight gradient GEMMs of ``fwd``; each has its FLOPs, bytes and precision."""
    assert fwd.gemm_mnk is not None
    m, n, k = fwd.gemm_mnk
    dgrad = Op(f"{fwd.name}_dgrad", "gemm", fwd.flops, fwd.bytes, (m, k, n), fwd.precision, fwd.linear)
    wgrad = Op(f"{fwd.name}_wgrad", "gemm", fwd.flops, fwd.bytes, (k, n, m), fwd.precision, fwd.linear)
    return dgrad, wgrad


def elementwise(name: str, flops: float, read_bytes: float, write_bytes: float) -> Op:
    return Op(name, "elementwise", float(flops), float(read_bytes + write_bytes))


def norm_ops(model: ModelConfig, name: str, tokens: float, e: int) -> tuple[Op, Op]:
    """Forward (read x, write y) and backward (read x and dy, write dx) of a norm over ``h``."""
    n = tokens * model.d_model
    fwd = elementwise(name, NORM_FLOPS_PER_ELEMENT[model.norm] * n, n * e, n * e)
    bwd = elementwise(f"{name}_bwd", BACKWARD_ELEMENTWISE_FACTOR * fwd.flops, 2 * n * e, n * e)
    return fwd, bwd


def residual_ops(model: ModelConfig, name: str, tokens: float, e: int) -> tuple[Op, Op]:
    """Residual add (plus the row-parallel bias, added after the reduction).

    Forward reads branch and residual, writes the sum. Backward: the gradient
    reaches both inputs unchanged; the cost counted is the add where the two
    gradient paths rejoin (read 2, write 1) and, with a bias, its reduction.
    """
    n = tokens * model.d_model
    per_element = 2.0 if model.bias else 1.0
    fwd = elementwise(name, per_element * n, 2 * n * e, n * e)
    bwd = elementwise(f"{name}_bwd", per_element * n, 2 * n * e, n * e)
    return fwd, bwd


def activation_bytes(precision: str) -> int:
    """Bytes of one activation element: the precision's, bf16's in fp8 training; an
    :class:`InputError` for an unknown precision."""
    if precision not in BYTES_PER_ELEMENT:
        raise InputError(
            f"unknown precision {precision!r}; use one of {', '.join(BYTES_PER_ELEMENT)}", field="plan.precision"
        )
    return BYTES_PER_ELEMENT["bf16" if precision == "fp8" else precision]


def bf16_in_fp8(precision: str) -> str | None:
    """``Op.precision`` of ops that stay bf16 in fp8 training (None otherwise: the plan's)."""
    return "bf16" if precision == "fp8" else None


def tokens_on_rank(model: ModelConfig, micro_batch: int, tp: int, sequence_parallel: bool, cp: int) -> int:
    """Check the split of a micro-batch; return the tokens of one micro-batch on one rank (``b s / cp``)."""
    for name, value in (("micro_batch", micro_batch), ("tp", tp), ("cp", cp)):
        if value < 1:
            raise InputError(f"{name}={value} must be at least 1", field=f"plan.{name}")
    first(cp_splits_sequence(model.seq_len, cp), sp_splits_sequence(model.seq_len, cp, tp, sequence_parallel))
    return micro_batch * model.seq_len // cp


# --------------------------------------------------------------------------- eager frameworks

EAGER_CHAINS: dict[str, tuple[int, float]] = {
    "rmsnorm": (6, 9.0),
    "swiglu": (2, 5.0 / 3.0),
    "cross_entropy": (3, 7.0 / 3.0),
    "softmax": (3, 3.0),
}
"""Element-wise ops an eager framework (no fusion, no compile) runs as a chain of kernels: (kernels,
HBM bytes of the chain / bytes of the fused kernel), counted from the PyTorch code each runs, bf16
activations (2 B) and fp32 intermediates (4 B) per element:

* ``rmsnorm`` (Hugging Face / torchtitan ``RMSNorm`` eager): ``x.float()`` (read 2, write 4),
  ``pow(2)`` (4, 4), ``mean`` (4), ``x * rsqrt(var)`` (4, 4), ``.to(bf16)`` (4, 2), ``weight *``
  (2, 2): 36 B/element against the fused kernel's 4, 6 kernels. kernels.csv measures the ratio:
  liger-a100-rmsnorm-bf16-h4096-hf reaches 0.059 of HBM bandwidth, the fused
  liger-a100-rmsnorm-bf16-h4096-liger 0.529 (9.0x);
* ``swiglu``: ``silu(gate)`` (read 2, write 2), ``* up`` (4, 2): 10 B against 6, 2 kernels;
* ``cross_entropy``: ``logits.float()`` (read 2, write 4) then ``cross_entropy`` (log-softmax
  read 4, write 4; the gather is negligible): 14 B against 6, 3 kernels;
* ``softmax`` of unfused attention: scale, mask (``masked_fill``) and softmax as three passes over
  the scores instead of Megatron's fused scale-mask-softmax: 3x, 3 kernels.

LayerNorm, GeLU and residual adds are one native kernel in eager PyTorch too (``F.layer_norm``,
``F.gelu``, ``add``; biases go into the GEMM's ``addmm``): unchanged. A backward op takes its
forward's chain (assumption: autograd replays the chain, each node reading its saved input and
the incoming gradient)."""


def eager_chain(op: Op, norm: str) -> tuple[int, float]:
    """(kernels, byte factor) of ``op`` run eagerly (:data:`EAGER_CHAINS`); ``norm`` is the model's
    norm ("rmsnorm" or "layernorm"), which the ops ``*_norm`` and ``*_norm_bwd`` are."""
    if op.kind != "elementwise":
        return 1, 1.0
    base = op.name[: -len("_bwd")] if op.name.endswith("_bwd") else op.name
    key = norm if base.endswith("_norm") else base
    return EAGER_CHAINS.get(key, (1, 1.0))


def run_eagerly(ops: tuple[Op, ...], norm: str) -> tuple[Op, ...]:
    """``ops`` as an eager framework runs them: each element-wise op of :data:`EAGER_CHAINS` takes
    its chain's kernels and bytes."""
    out = []
    for op in ops:
        kernels, factor = eager_chain(op, norm)
        out.append(op if kernels == 1 and factor == 1.0 else
                   dataclasses.replace(op, bytes=op.bytes * factor, kernels=kernels))
    return tuple(out)


def eager_work(work: LayerWork, norm: str) -> LayerWork:
    """``work`` with every pass run eagerly (:func:`run_eagerly`); collectives unchanged."""
    return dataclasses.replace(work, forward=run_eagerly(work.forward, norm),
                               backward=run_eagerly(work.backward, norm), recompute=run_eagerly(work.recompute, norm))


# --------------------------------------------------------------------------- public


def vocab_per_rank(model: ModelConfig, tp: int) -> int:
    """Rows of the embedding / LM head on one TP rank: ``ceil(V / t)`` (vocab padded to a multiple of ``t``)."""
    return math.ceil(model.vocab / tp)


def embedding_work(
    model: ModelConfig, *, micro_batch: int, tp: int, sequence_parallel: bool, precision: str, cp: int = 1
) -> LayerWork:
    """Input embedding on the first pipeline stage, one TP rank, one micro-batch
    (``T = b s / cp`` tokens per rank; with ``cp > 1`` the position table rows are the rank's).

    Forward: ``embedding_lookup`` (vocab-parallel: each rank copies the rows it
    owns, on average ``T h / t`` elements read, and writes a full ``T x h``
    output with zeros elsewhere; 0 FLOPs), then, when ``t > 1``, an all-reduce
    of ``T h e`` bytes (a reduce-scatter with sequence parallelism), then
    ``position_add`` for learned positions (on ``T/t`` tokens with sequence
    parallelism).

    Backward: ``position_grad`` (sum over the micro-batch into the ``s x h``
    table), the conjugate collective (an all-gather with sequence parallelism;
    nothing without, since an all-reduce's backward is the identity) and
    ``embedding_grad`` (scatter-add of the owned tokens' gradients into the
    table: read gradients and rows, write rows, ``T h / t`` each on average).
    Nothing is recomputed. With tied embeddings on several pipeline stages the
    first and last stage also all-reduce the embedding gradient; that is a
    per-step collective, not part of this micro-batch work.
    """
    e = activation_bytes(precision)
    T = tokens_on_rank(model, micro_batch, tp, sequence_parallel, cp)
    s, h, t = model.seq_len // cp, model.d_model, tp
    act_bytes = float(T * h * e)
    owned = T * h / t

    forward: list[Op] = [elementwise("embedding_lookup", 0.0, owned * e, T * h * e)]
    backward: list[Op] = []
    tp_fwd: tuple[Collective, ...] = ()
    tp_bwd: tuple[Collective, ...] = ()
    if t > 1:
        if sequence_parallel:
            tp_fwd = (Collective("reduce_scatter", act_bytes, "embedding_reduce_scatter"),)
            tp_bwd = (Collective("all_gather", act_bytes, "embedding_output_grad_all_gather"),)
        else:
            tp_fwd = (Collective("all_reduce", act_bytes, "embedding_all_reduce"),)
    if model.position_embedding == "learned":
        Tn = T / t if sequence_parallel else T
        sn = s / t if sequence_parallel else s
        n = Tn * h
        forward.append(elementwise("position_add", n, 2 * n * e, n * e))
        backward.append(elementwise("position_grad", n, n * e, sn * h * e))
    backward.append(elementwise("embedding_grad", owned, 2 * owned * e, owned * e))
    return LayerWork(forward=tuple(forward), backward=tuple(backward), tp_forward=tp_fwd, tp_backward=tp_bwd)


def head_work(
    model: ModelConfig, *, micro_batch: int, tp: int, sequence_parallel: bool, precision: str, cp: int = 1
) -> LayerWork:
    """Final norm, LM head and loss on the last pipeline stage, one TP rank, one micro-batch
    (``T = b s / cp`` tokens per rank).

    Forward: ``final_norm`` (``T/t`` tokens with sequence parallelism), an
    all-gather of ``T h e`` bytes first when sequence-parallel, ``lm_head``
    (GEMM ``T x ceil(V/t) x h``), ``cross_entropy`` (vocab-parallel softmax
    cross-entropy on fp32 logits: reads the logits, writes the fp32 softmax
    kept for backward) with three all-reduces of ``T`` fp32 values each (max
    logit, target logit, sum of exponentials) when ``t > 1``.

    Backward: ``cross_entropy_bwd`` (softmax minus one-hot: read fp32 softmax,
    write the logit gradient), ``lm_head_dgrad`` and ``lm_head_wgrad``, the
    input-gradient all-reduce of ``T h e`` bytes (a reduce-scatter with
    sequence parallelism) when ``t > 1``, and ``final_norm_bwd``. The head is
    never recomputed, and runs in bf16 in fp8 training. With tied embeddings the weight gradient is still
    computed here (same FLOPs).
    """
    e = activation_bytes(precision)
    T = tokens_on_rank(model, micro_batch, tp, sequence_parallel, cp)
    h, t = model.d_model, tp
    Tn = T / t if sequence_parallel else T
    v_r = vocab_per_rank(model, t)
    act_bytes = float(T * h * e)

    norm, norm_bwd = norm_ops(model, "final_norm", Tn, e)
    head = gemm("lm_head", T, v_r, h, e, precision=bf16_in_fp8(precision))
    head_dgrad, head_wgrad = gemm_backward(head)
    logits = T * v_r
    ce = elementwise("cross_entropy", CROSS_ENTROPY_FLOPS_PER_LOGIT * logits, logits * e, logits * LOSS_BYTES)
    ce_bwd = elementwise(
        "cross_entropy_bwd", CROSS_ENTROPY_BACKWARD_FLOPS_PER_LOGIT * logits, logits * LOSS_BYTES, logits * e
    )

    tp_fwd: tuple[Collective, ...] = ()
    tp_bwd: tuple[Collective, ...] = ()
    if t > 1:
        loss_bytes = float(T * LOSS_BYTES)
        loss = tuple(
            Collective("all_reduce", loss_bytes, f"loss_{what}_all_reduce") for what in ("max", "target", "sum_exp")
        )
        if sequence_parallel:
            tp_fwd = (Collective("all_gather", act_bytes, "head_all_gather"),) + loss
            tp_bwd = (Collective("reduce_scatter", act_bytes, "head_input_grad_reduce_scatter"),)
        else:
            tp_fwd = loss
            tp_bwd = (Collective("all_reduce", act_bytes, "head_input_grad_all_reduce"),)

    return LayerWork(
        forward=(norm, head, ce),
        backward=(ce_bwd, head_dgrad, head_wgrad, norm_bwd),
        tp_forward=tp_fwd,
        tp_backward=tp_bwd,
    )


def pipeline_message_bytes(
    model: ModelConfig,
    *,
    micro_batch: int,
    tp: int,
    sequence_parallel: bool,
    precision: str,
    scatter_gather: bool = True,
    cp: int = 1,
) -> float:
    """Bytes one rank sends to the next pipeline stage per micro-batch (activation forward, gradient backward).

    The tensor is ``b s h / cp`` elements (a context-parallel rank's share of the tokens).
    Each TP rank sends ``b s h e / t`` when sequence parallelism already shards it, or with Megatron's scatter/gather
    optimisation (Narayanan et al. 2021, sec. 4.1: send ``1/t`` over the
    network, all-gather on the receiving side over NVLink; that all-gather is
    not included here); otherwise the full ``b s h e``.
    """
    e = activation_bytes(precision)
    full = float(tokens_on_rank(model, micro_batch, tp, sequence_parallel, cp) * model.d_model * e)
    return full / tp if (sequence_parallel or scatter_gather) else full
