"""Activations one transformer block keeps for its backward pass, and how many micro-batches
of them a pipeline stage holds (bytes; notation of :mod:`simulator.workload.memory`).

The Korthikanti et al. 2022 terms (:func:`activation_bytes_per_layer`), with Megatron's
selective and full recomputation, torchtitan's per-op checkpointing
(:func:`per_op_saved_bytes`) and Transformer Engine's fp8 saved inputs; the in-flight counts
of the pipeline schedules (:func:`microbatches_in_flight`).
"""

from __future__ import annotations

from typing import Literal

from simulator.core.errors import InputError
from simulator.workload.counting import per_op_matmuls
from simulator.workload.model import ModelConfig
from simulator.workload.plan import ParallelPlan, Recompute

Attention = Literal["flash", "standard"]

_RECOMPUTE = ("none", "selective", "per_op", "full")
_ATTENTION = ("flash", "standard")


def _kv_width_per_rank(model: ModelConfig, tp: int) -> float:
    """Columns of K (or V) a tensor-parallel rank holds: ``k d / t``, or ``d`` when ``t > k`` (replicated heads)."""
    k, d = model.kv_heads, model.head_dim
    return k * d / tp if k >= tp else d


def activation_bytes_per_layer(
    model: ModelConfig, *, micro_batch: int, tp: int = 1, sequence_parallel: bool = False,
    recompute: Recompute = "none", attention: Attention = "flash", element_bytes: float = 2, dropout: bool = True,
    fp8_inputs: bool = False,
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
    the block input ``e sbh`` (split by sequence parallelism); ``"per_op"`` is
    torchtitan's per-op selective checkpointing (:func:`per_op_saved_bytes`). ``fp8_inputs``
    (Transformer Engine fp8, plan field ``fp8_saved_inputs``): the inputs of QKV, output
    projection, MLP up and down are saved at 1 byte per element instead of ``e``:
    ``(e - 1) (2 sbh / t_sp + sbh / t + sbf / t)`` fewer (``t_sp = t`` with SP, else 1).
    ``dropout=False``
    (models trained without dropout, e.g. Llama) removes the masks (``2 sbh``) and
    the standard path's dropout output. Sequence parallelism only matters for ``tp > 1``.

    ``element_bytes`` is ``e`` (2 for bf16/fp16, 4 for fp32). Returns bytes; raises
    :class:`InputError` for an unknown ``recompute`` or ``attention``.
    """
    _check_activation_options(recompute, attention, micro_batch, tp)
    s, b, h, a, f = model.seq_len, micro_batch, model.d_model, model.n_heads, model.ffn
    t, e = tp, element_bytes
    sbh = s * b * h
    outside_split = t if sequence_parallel else 1

    if recompute == "full":
        return e * sbh / outside_split
    if recompute == "per_op":
        return per_op_saved_bytes(model, micro_batch=b, tp=t, sequence_parallel=sequence_parallel, element_bytes=e)

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
    fp8_saving = (e - 1) * (2 * sbh / outside_split + sbh / t + s * b * f / t) if fp8_inputs else 0.0
    return outside + inside + scores - fp8_saving


def per_op_saved_bytes(model: ModelConfig, *, micro_batch: int, tp: int = 1, sequence_parallel: bool = False,
                       element_bytes: float = 2) -> float:
    """Bytes one block keeps under torchtitan's per-op selective activation checkpointing, per
    micro-batch, on one rank.

    torchtitan (``torchtitan/distributed/activation_checkpoint.py``, ``selective_ac_option =
    "op"``) checkpoints every block with a policy that saves the outputs of the attention kernel
    and of the matrix multiplies except every second one, counted in the order the block runs
    them (:func:`~simulator.workload.counting.per_op_matmuls`: ``wq, wk, wv, wo, w1, (w3,) w2``,
    so ``wq, wv, w1, w2`` saved for a gated MLP), and recomputes everything else in backward.
    What stays is the block input ``e sbh`` (``/t`` with sequence parallelism), the saved
    matmul outputs (column-parallel ones ``1/t`` of their width, K and V one head per rank when
    ``t > k``; row-parallel ones, ``wo`` and ``w2``, their whole ``h`` partial sums), the
    attention output ``e sbh / t`` and its fp32 log-sum-exp ``4 a s b / t``. Llama 3 8B
    (``h = 4096, k d = 1024, f = 14336``, ``t = 1``): ``sbh (2 + 2 + 0.5 + 7 + 2 + 2) e/2`` =
    15.5 sbh bytes with ``e = 2``."""
    s, b, h, a, t, e = model.seq_len, micro_batch, model.d_model, model.n_heads, tp, element_bytes
    saved = e * s * b * h / (t if sequence_parallel else 1)
    for i, (name, width, _, column) in enumerate(per_op_matmuls(model)):
        if i % 2:
            continue  # every second matmul is recomputed
        if name in ("wk", "wv"):
            width_r = _kv_width_per_rank(model, t)
        else:
            width_r = width / t if column else width
        saved += e * s * b * width_r
    return saved + e * s * b * h / t + 4.0 * a * s * b / t


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
