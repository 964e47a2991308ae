"""The work of one transformer block on one tensor-parallel rank for one micro-batch
(:func:`layer_work`); the notation and conventions are those of :mod:`simulator.workload.ops`.

Forward ops, in order: ``input_norm``, ``qkv`` (GEMM ``T x (a/t + 2 k_r) d x h``
with ``k_r = max(k/t, 1)``), the attention core, ``attn_proj`` (GEMM
``T x h x h/t``), ``attn_residual``, ``mlp_norm``, then
``mlp_gate_up`` (``T x 2f/t x h``), ``swiglu`` when gated, else ``mlp_up``
(``T x f/t x h``), ``gelu``; then ``mlp_down`` (``T x h x f/t``) and
``mlp_residual``. Norms and residuals work on ``T/t`` tokens with sequence
parallelism, else on ``T``.

The attention core (``attention``, per ``b (a/t)`` heads of size ``d``):

* ``"flash"``: one fused kernel ``attention``, causal (half of the ``s x s``
  scores: ``2 b s^2 (a/t) d = 2 b s^2 h / t`` FLOPs), reading Q, K, V and writing
  the output and one fp32 log-sum-exp per row; ``attention_bwd`` costs 2.5x its
  forward because it recomputes the scores.
* ``"standard"`` (unfused, as Megatron-LM before fused attention): batched GEMMs
  ``attn_scores`` (``Q K^T``, ``s x s x d`` per head) and ``attn_values`` (``P V``,
  ``s x d x s``) over the *full* square (the causal mask is applied, not skipped:
  ``4 b s^2 h / t`` FLOPs), with ``softmax`` (scale, mask, softmax: reads and writes
  the ``e b (a/t) s^2`` scores) and, with dropout, ``attn_dropout`` (reads them,
  writes them and a 1-byte mask) between. Backward: two GEMMs per GEMM, and the
  dropout and softmax backward kernels on the scores.

Backward: each GEMM gives a ``_dgrad`` and a ``_wgrad`` GEMM of its forward
FLOPs (so 2x in total); element-wise ops cost 2x. In fp8 training (:mod:`simulator.workload.ops`) each
linear GEMM is preceded by ``<gemm>_input_to_fp8`` and its backward GEMMs by
``<gemm>_grad_to_fp8``, and the attention core runs in bf16.

Recomputation: ``"full"`` redoes the whole forward (ops and collectives).
``"selective"`` (Korthikanti et al. 2022) recomputes only the attention
core: with ``"standard"`` attention its forward ops run again before its
backward (the scores are not stored); with ``"flash"`` the scores are already
recomputed inside ``attention_bwd`` and never stored, so selective adds no
work and ``recompute`` is empty (its effect is on activation memory only).
``"per_op"`` (torchtitan's per-op selective checkpointing): the block's forward runs again
except the ops whose outputs are saved, the attention kernel and every second matmul
(:func:`~simulator.workload.counting.per_op_matmuls`): the element-wise ops (norms, residuals,
activation, fp8 casts) and the GEMMs ``wk``, ``wo`` and ``w3`` (gated; ``w2`` otherwise),
as torchtitan splits them (``wk`` alone of the fused ``qkv``, ``w3`` alone of the fused
gate/up); with sequence parallelism the forward all-gathers run again (their outputs are not
saved; the reduce-scatters' are). ``checkpoint_every = N`` with ``"full"``: ``floor(L / N)``
of the ``L`` blocks are checkpointed; each block's recomputation is the full one scaled by
``floor(L / N) / L`` (the average block; a stage's sum is right when ``N`` divides its blocks).
``"none"``: empty.

Context parallelism (``cp > 1``, flash attention only): ``T = b s / cp`` tokens per rank,
the attention kernels do ``1/cp`` of the causal FLOPs and stream the whole sequence's K
and V; ``cp_forward`` is an all-gather of ``2 b s k_r d e`` bytes (K and V), ``cp_backward``
an exchange of twice that (K and V, and their gradients), each beside its attention
kernel; full recomputation repeats the forward one.

TP collectives (``t > 1``), each of ``T h e`` bytes: forward 2 all-reduces
(after ``attn_proj`` and ``mlp_down``), backward 2 all-reduces (input
gradients of ``qkv`` and ``mlp_up``); with sequence parallelism forward
all-gather, reduce-scatter, all-gather, reduce-scatter and backward their
conjugates (all-gather, reduce-scatter, twice). Each names the GEMM it can
run beside (``Collective.overlaps_with``): the input-gradient reductions beside
the weight-gradient GEMM of ``qkv`` / ``mlp_up`` (Megatron-LM's asynchronous
default), the others beside the GEMM that produces or consumes them.
"""

from __future__ import annotations

from dataclasses import replace

from simulator.core.errors import InputError
from simulator.workload.counting import per_op_matmuls
from simulator.workload.legality import (
    cp_has_flash,
    first,
    tp_splits_ffn,
    tp_splits_heads,
    tp_splits_kv_heads,
)
from simulator.workload.model import ModelConfig
from simulator.workload.ops import (
    BACKWARD_ELEMENTWISE_FACTOR,
    FLASH_BACKWARD_FACTOR,
    GELU_FLOPS_PER_ELEMENT,
    SOFTMAX_FLOPS_PER_ELEMENT,
    SOFTMAX_STATS_BYTES,
    SWIGLU_FLOPS_PER_ELEMENT,
    Collective,
    LayerWork,
    Op,
    activation_bytes,
    bf16_in_fp8,
    elementwise,
    gemm,
    gemm_backward,
    norm_ops,
    residual_ops,
    tokens_on_rank,
)


def layer_work(
    model: ModelConfig, *, micro_batch: int, tp: int, sequence_parallel: bool, recompute: str, precision: str,
    attention: str = "flash", cp: int = 1, checkpoint_every: int = 1,
) -> LayerWork:
    """Work of one transformer block on one TP rank for one micro-batch (module docstring).

    Raises :class:`InputError` if ``tp`` does not split heads or ``d_ffn``, if sequence
    parallelism cannot split ``seq_len``, or for an unknown ``precision``, ``recompute`` or
    ``attention``."""
    e = activation_bytes(precision)
    T = tokens_on_rank(model, micro_batch, tp, sequence_parallel, cp)
    first(tp_splits_heads(tp, model.n_heads), tp_splits_kv_heads(tp, model.kv_heads), tp_splits_ffn(tp, model.ffn))
    if recompute not in ("none", "selective", "per_op", "full"):
        raise InputError(f"unknown recompute {recompute!r}; use none, selective, per_op or full",
                         field="plan.recompute")
    if attention not in ("flash", "standard"):
        raise InputError(f"unknown attention {attention!r}; use flash or standard", field="plan.attention")
    first(cp_has_flash(cp, attention))

    h, d, t = model.d_model, model.head_dim, tp
    Tn = T / t if sequence_parallel else T  # tokens seen by norms and residuals
    a_r = model.n_heads // t
    k_r = model.kv_heads // t if model.kv_heads % t == 0 else 1
    block = _Block(e, precision == "fp8")
    block.add(*norm_ops(model, "input_norm", Tn, e))
    block.linear("qkv", T, (a_r + 2 * k_r) * d, h)
    core_start = len(block.forward)
    for pair in _attention_core(model, micro_batch, T, a_r, k_r, e, cp, precision, attention):
        block.add(*pair)
    core = tuple(block.forward[core_start:])
    block.linear("attn_proj", T, h, a_r * d)
    block.add(*residual_ops(model, "attn_residual", Tn, e))
    block.add(*norm_ops(model, "mlp_norm", Tn, e))
    _mlp(block, model, T, model.ffn // t, e)
    block.add(*residual_ops(model, "mlp_residual", Tn, e))

    forward = tuple(block.forward)
    backward = tuple(op for group in reversed(block.backward_groups) for op in group)
    tp_fwd, tp_bwd = _tp_collectives(float(T * h * e), t, sequence_parallel,
                                     "mlp_gate_up" if model.gated_mlp else "mlp_up", model.parallel_block)
    cp_fwd, cp_bwd = _cp_collectives(float(2 * micro_batch * model.seq_len * k_r * d * e), cp)
    full = recompute == "full"
    selective = recompute == "selective" and attention == "standard"
    recomputed, tp_recomputed = (forward, tp_fwd) if full else (core, ()) if selective else ((), ())
    if recompute == "per_op":
        recomputed = _per_op_recompute(block, model, T, a_r, k_r, model.ffn // t)
        tp_recomputed = tuple(c for c in tp_fwd if c.kind == "all_gather")
    if full and checkpoint_every > 1:
        share = (model.n_layers // checkpoint_every) / model.n_layers
        recomputed = tuple(replace(op, flops=op.flops * share, bytes=op.bytes * share) for op in recomputed)
        tp_recomputed = tuple(replace(c, bytes=c.bytes * share) for c in tp_recomputed)
    return LayerWork(
        forward=forward,
        backward=backward,
        recompute=recomputed,
        tp_forward=tp_fwd,
        tp_backward=tp_bwd,
        tp_recompute=tp_recomputed,
        cp_forward=cp_fwd,
        cp_backward=cp_bwd,
        cp_recompute=cp_fwd if full else (),
    )


def _per_op_recompute(block: _Block, model: ModelConfig, T: int, a_r: int, k_r: int, f_r: int) -> tuple[Op, ...]:
    """What per-op checkpointing runs again (module docstring): the forward's element-wise ops and
    the GEMMs of every second matmul of :func:`per_op_matmuls`, on this rank's shapes."""
    h, d = model.d_model, model.head_dim
    shapes = {"wq": (a_r * d, h), "wk": (k_r * d, h), "wv": (k_r * d, h), "wo": (h, a_r * d),
              "w1": (f_r, h), "w3": (f_r, h), "w2": (h, f_r)}
    elementwise_ops = tuple(op for op in block.forward if op.kind not in ("gemm", "attention"))
    gemms = tuple(gemm(f"{name}_recompute", T, *shapes[name], block.e, operand_bytes=1 if block.fp8 else None)
                  for i, (name, *_) in enumerate(per_op_matmuls(model)) if i % 2)
    return elementwise_ops + gemms


class _Block:
    """The forward ops of a block in order, and the backward ops of each (backward runs them reversed)."""

    def __init__(self, e: int, fp8: bool):
        self.e, self.fp8 = e, fp8
        self.forward: list[Op] = []
        self.backward_groups: list[tuple[Op, ...]] = []

    def add(self, f_op: Op, *b_ops: Op) -> None:
        self.forward.append(f_op)
        self.backward_groups.append(b_ops)

    def linear(self, name: str, m: int, n: int, k: int) -> None:
        """A linear layer's GEMM ``(m, n, k)`` and its backward; in fp8 training Transformer Engine
        casts the input (forward) and the output gradient (backward) to fp8, writing the fp8
        tensor and its transpose."""
        e = self.e
        op = gemm(name, m, n, k, e, operand_bytes=1 if self.fp8 else None)
        if not self.fp8:
            self.add(op, *gemm_backward(op))
            return
        self.add(elementwise(f"{name}_input_to_fp8", m * k, m * k * e, 2 * m * k))
        self.add(op, elementwise(f"{name}_grad_to_fp8", m * n, m * n * e, 2 * m * n), *gemm_backward(op))


def _attention_core(model: ModelConfig, b: int, T: int, a_r: int, k_r: int, e: int, cp: int, precision: str,
                    attention: str) -> list[tuple[Op, ...]]:
    """Forward op and its backward ops, in forward order, of the attention core (module docstring)."""
    if attention != "flash":
        return _standard_attention(model, b, a_r, e, bf16_in_fp8(precision))
    s, d = model.seq_len, model.head_dim
    q_elems, kv_elems = T * a_r * d, b * s * k_r * d  # K and V of the whole sequence stream through
    stats = T * a_r * SOFTMAX_STATS_BYTES
    attn_flops = 2.0 * b * s * s * a_r * d / cp
    bf16 = bf16_in_fp8(precision)
    attn = Op("attention", "attention", attn_flops, float((q_elems + 2 * kv_elems + q_elems) * e + stats),
              precision=bf16)
    # Backward reads Q, K, V, O, dO and the stats; writes dQ, dK, dV.
    attn_bwd = Op("attention_bwd", "attention", FLASH_BACKWARD_FACTOR * attn_flops,
                  float((3 * q_elems + 2 * kv_elems) * e + stats + (q_elems + 2 * kv_elems) * e), precision=bf16)
    return [(attn, attn_bwd)]


def _standard_attention(model: ModelConfig, b: int, heads: int, e: int, precision: str | None = None
                        ) -> list[tuple[Op, ...]]:
    """Forward op and its backward ops, in forward order, of unfused attention over ``heads``
    heads on one rank (module docstring). The batched GEMMs read and write per head:
    ``Q K^T`` reads Q and K (``s d`` each) and writes the ``s^2`` scores; ``P V`` reads the
    probabilities and V, writes the output."""
    s, d = model.seq_len, model.head_dim
    n = b * heads  # independent (batch, head) GEMMs
    scores = n * s * s  # elements of the score matrices
    flops = 2.0 * n * s * s * d
    qk = Op("attn_scores", "gemm", flops, float(n * (2 * s * d + s * s) * e), (s, s, d), precision)
    pv = Op("attn_values", "gemm", flops, float(n * (s * s + 2 * s * d) * e), (s, d, s), precision)
    softmax = elementwise("softmax", SOFTMAX_FLOPS_PER_ELEMENT * scores, scores * e, scores * e)
    softmax_bwd = elementwise("softmax_bwd", BACKWARD_ELEMENTWISE_FACTOR * softmax.flops, 2 * scores * e, scores * e)
    ops = [(qk, *gemm_backward(qk)), (softmax, softmax_bwd)]
    if model.dropout:
        drop = elementwise("attn_dropout", scores, scores * e, scores * (e + 1))
        ops.append((drop, elementwise("attn_dropout_bwd", scores, scores * (e + 1), scores * e)))
    ops.append((pv, *gemm_backward(pv)))
    return ops


def _mlp(block: _Block, model: ModelConfig, T: int, f_r: int, e: int) -> None:
    """The MLP's up (and gate) projection, activation and down projection."""
    n_out = T * f_r
    if model.gated_mlp:
        block.linear("mlp_gate_up", T, 2 * f_r, model.d_model)
        act = elementwise("swiglu", SWIGLU_FLOPS_PER_ELEMENT * n_out, 2 * n_out * e, n_out * e)
        act_bwd = elementwise("swiglu_bwd", BACKWARD_ELEMENTWISE_FACTOR * act.flops, 3 * n_out * e, 2 * n_out * e)
    else:
        block.linear("mlp_up", T, f_r, model.d_model)
        act = elementwise("gelu", GELU_FLOPS_PER_ELEMENT * n_out, n_out * e, n_out * e)
        act_bwd = elementwise("gelu_bwd", BACKWARD_ELEMENTWISE_FACTOR * act.flops, 2 * n_out * e, n_out * e)
    block.add(act, act_bwd)
    block.linear("mlp_down", T, model.d_model, f_r)


def _tp_collectives(act_bytes: float, t: int, sequence_parallel: bool, mlp_in: str, parallel_block: bool = False
                    ) -> tuple[tuple[Collective, ...], tuple[Collective, ...]]:
    """Forward and backward TP collectives of a block, each of ``act_bytes`` (module docstring).
    A parallel block without sequence parallelism reduces the summed attention and MLP outputs
    with one forward all-reduce (GPT-NeoX's gpt_j_residual); its backward keeps one per branch."""
    if t == 1:
        return (), ()
    if sequence_parallel:
        return (
            Collective("all_gather", act_bytes, "attn_all_gather", "qkv"),
            Collective("reduce_scatter", act_bytes, "attn_reduce_scatter", "attn_proj"),
            Collective("all_gather", act_bytes, "mlp_all_gather", mlp_in),
            Collective("reduce_scatter", act_bytes, "mlp_reduce_scatter", "mlp_down"),
        ), (
            Collective("all_gather", act_bytes, "mlp_output_grad_all_gather", "mlp_down_dgrad"),
            Collective("reduce_scatter", act_bytes, "mlp_input_grad_reduce_scatter", f"{mlp_in}_wgrad", "backward"),
            Collective("all_gather", act_bytes, "attn_output_grad_all_gather", "attn_proj_dgrad"),
            Collective("reduce_scatter", act_bytes, "attn_input_grad_reduce_scatter", "qkv_wgrad", "backward"),
        )
    if parallel_block:
        forward = (Collective("all_reduce", act_bytes, "block_all_reduce", "mlp_down"),)
    else:
        forward = (Collective("all_reduce", act_bytes, "attn_all_reduce", "attn_proj"),
                   Collective("all_reduce", act_bytes, "mlp_all_reduce", "mlp_down"))
    return forward, (
        Collective("all_reduce", act_bytes, "mlp_input_grad_all_reduce", f"{mlp_in}_wgrad", "backward"),
        Collective("all_reduce", act_bytes, "attn_input_grad_all_reduce", "qkv_wgrad", "backward"),
    )


def _cp_collectives(kv_bytes: float, cp: int) -> tuple[tuple[Collective, ...], tuple[Collective, ...]]:
    """The K/V ring of context parallelism: forward an all-gather of K and V (``kv_bytes``),
    backward twice that (K and V, and their gradients), each beside its attention kernel."""
    if cp == 1:
        return (), ()
    return ((Collective("all_gather", kv_bytes, "cp_kv_all_gather", "attention", "always"),),
            (Collective("all_gather", 2 * kv_bytes, "cp_kv_and_grad_exchange", "attention_bwd", "always"),))
