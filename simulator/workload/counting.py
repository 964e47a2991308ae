"""Parameter and model-FLOP counts of a decoder-only transformer.

Notation: ``B`` global batch (sequences), ``s`` seq_len, ``h`` d_model, ``a``
query heads, ``k`` key/value heads, ``d = h / a`` head dim, ``f`` MLP inner
size, ``V`` vocab, ``L`` layers.

The FLOP counts here are for a whole training step (forward + backward), none
depending on the parallel plan:

* :func:`model_flops_per_step` is Megatron-LM's closed form (Narayanan et al.
  2021, "Efficient Large-Scale Language Model Training on GPU Clusters Using
  Megatron-LM", eq. 3). It assumes the GPT shape the paper assumes.
* :func:`model_flops_per_token` is the general "6N + attention" count (PaLM,
  Chowdhery et al. 2022, appendix B) that also holds for GQA and gated MLPs.
  It is the "model FLOPs" of MFU: work the model needs, not work a given
  implementation does (no recomputation, causal masking not exploited).

* :func:`six_n_flops_per_token` is the "6N + 12 L h s" (or causal "6N + 6 L h s") count that
  torchtitan and llm-foundry print, ``N`` without the embedding tables;
  :func:`framework_flops_per_step` picks a framework's formula by name.

The FLOPs a rank actually executes per operation are in :mod:`simulator.workload.ops`;
:func:`recompute_flops_per_token` counts what recomputation adds (Megatron's selective and full,
torchtitan's per-op and layer-level checkpointing, :func:`per_op_matmuls`).
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.workload.model import ModelConfig


@dataclass(frozen=True)
class ParameterCount:
    """Trainable parameters of a model, by part (counts, not bytes).

    * ``embedding = V * h`` (token embedding table).
    * ``position = s * h`` for learned position embeddings, 0 for RoPE/ALiBi.
    * ``per_layer``, one transformer block:

      - attention: QKV ``h * (a + 2k) * d`` plus output projection ``h * h``;
      - MLP: ``2 * h * f`` (up, down) or ``3 * h * f`` when gated (gate, up, down);
      - biases if ``bias``: QKV ``(a + 2k) * d``, output ``h``, MLP ``f + h``
        (``2f + h`` when gated);
      - two norms (before attention, before MLP): LayerNorm ``2h`` each
        (weight + bias), RMSNorm ``h`` each (weight only).

    * ``final_norm``: one more norm after the last block (``2h`` or ``h``).
    * ``lm_head = V * h``, or 0 when the head is tied to the embedding.

    ``n_layers`` is ``L``; ``layers = L * per_layer``; ``total`` is the sum of all parts.
    """

    embedding: int
    position: int
    per_layer: int
    final_norm: int
    lm_head: int
    n_layers: int

    @property
    def layers(self) -> int:
        """Parameters of all ``L`` transformer blocks."""
        return self.n_layers * self.per_layer

    @property
    def total(self) -> int:
        """All trainable parameters (a tied embedding counted once)."""
        return self.embedding + self.position + self.layers + self.final_norm + self.lm_head


def _norm_params(model: ModelConfig) -> int:
    return 2 * model.d_model if model.norm == "layernorm" else model.d_model


def attention_matmul_parameters(model: ModelConfig) -> int:
    """Weights of the attention GEMMs of one block: ``h (a + 2k) d + h^2`` (no biases)."""
    h, d = model.d_model, model.head_dim
    return h * (model.n_heads + 2 * model.kv_heads) * d + h * h


def mlp_matmul_parameters(model: ModelConfig) -> int:
    """Weights of the MLP GEMMs of one block: ``3 h f`` gated, ``2 h f`` otherwise (no biases)."""
    return (3 if model.gated_mlp else 2) * model.d_model * model.ffn


def matmul_parameters_per_layer(model: ModelConfig) -> int:
    """Weights of one block that take part in a matrix multiply (no biases, no norms).

    Each contributes ``2`` FLOPs per token in the forward pass.
    """
    return attention_matmul_parameters(model) + mlp_matmul_parameters(model)


def parameter_count(model: ModelConfig) -> ParameterCount:
    """Count the trainable parameters of ``model`` by part (formulas in :class:`ParameterCount`)."""
    h, f, d = model.d_model, model.ffn, model.head_dim
    per_layer = matmul_parameters_per_layer(model) + 2 * _norm_params(model)
    if model.bias:
        per_layer += (model.n_heads + 2 * model.kv_heads) * d + h
        per_layer += (2 * f if model.gated_mlp else f) + h
    return ParameterCount(
        embedding=model.vocab * h,
        position=model.seq_len * h if model.position_embedding == "learned" else 0,
        per_layer=per_layer,
        final_norm=_norm_params(model),
        lm_head=0 if model.tied_embeddings else model.vocab * h,
        n_layers=model.n_layers,
    )


def model_flops_per_step(model: ModelConfig, global_batch: int, *, recompute_term: bool) -> float:
    """Megatron-LM's FLOPs per training step (Narayanan et al. 2021, eq. 3), in FLOPs.

    Per block and sequence the forward pass does ``24 s h^2`` GEMM FLOPs (QKV
    ``6 s h^2``, output ``2 s h^2``, MLP ``16 s h^2``) plus ``4 s^2 h`` for the
    attention scores and the weighted values; the LM head does ``2 s h V``.
    Backward costs twice the forward. With full activation recomputation the
    blocks (not the head) run their forward a second time:

    * ``recompute_term=True`` (4 passes over the blocks, as in the paper's eq. 3)::

          96 B s L h^2 (1 + s / (6h) + V / (16 h L))

    * ``recompute_term=False`` (3 passes)::

          72 B s L h^2 (1 + s / (6h) + V / (12 h L))

    The two differ by exactly ``24 B s L h^2 (1 + s/(6h))``; the ratio is not
    exactly 4/3 because the head is not recomputed.

    Assumes, as published: multi-head attention (``k = a``), a non-gated MLP of
    inner size ``4h``, no causal-mask saving in the attention, and it ignores
    biases, norms, softmax and other element-wise work. ``model``'s
    ``n_kv_heads``, ``d_ffn`` and ``gated_mlp`` are therefore ignored here; use
    :func:`model_flops_per_token` for other shapes.
    """
    B, s, L, h, V = global_batch, model.seq_len, model.n_layers, model.d_model, model.vocab
    if recompute_term:
        return 96.0 * B * s * L * h * h * (1 + s / (6 * h) + V / (16 * h * L))
    return 72.0 * B * s * L * h * h * (1 + s / (6 * h) + V / (12 * h * L))


def model_flops_per_token(model: ModelConfig) -> float:
    """Model FLOPs per trained token (forward + backward), the numerator of MFU::

        6 * (L * N_matmul + V h) + 12 L h s

    ``N_matmul`` is :func:`matmul_parameters_per_layer` (GQA and gated MLPs
    included); ``V h`` is the LM head GEMM, counted even when its weight is
    tied to the embedding (the lookup itself is not a matmul). Each matmul
    weight costs 2 FLOPs per token forward and 4 backward. The attention term:
    forward, per layer and token, ``Q K^T`` and ``P V`` each cost ``2 s h``
    FLOPs over all query heads (independent of ``k``), so ``4 s h``; times 3
    for training gives ``12 L h s``. The full ``s x s`` score matrix is
    counted (non-causal), as in PaLM's MFU definition.

    Not counted: biases, norms, embedding lookup, position embeddings, softmax,
    activations, residuals, the loss, the optimizer and recomputation. For a
    GPT-shaped model (MHA, non-gated ``4h`` MLP) this equals
    ``model_flops_per_step(model, B, recompute_term=False) / (B s)`` exactly,
    since the Megatron formula drops the same terms.
    """
    L, h, s, V = model.n_layers, model.d_model, model.seq_len, model.vocab
    return 6.0 * (L * matmul_parameters_per_layer(model) + V * h) + 12.0 * L * h * s


def per_op_matmuls(model: ModelConfig) -> tuple[tuple[str, int, int, bool], ...]:
    """The matrix multiplies of one block in the order torchtitan's Llama block runs them, as
    ``(name, output width, input width, column-parallel)``: ``wq`` (``a d`` x ``h``), ``wk``, ``wv``
    (``k d`` x ``h``), ``wo`` (``h`` x ``a d``), then ``w1`` (``f`` x ``h``), ``w3`` (gated MLPs only,
    ``f`` x ``h``) and ``w2`` (``h`` x ``f``) (``torchtitan/models/llama3/model.py``: ``w2(silu(w1(x)) *
    w3(x))``). Per-op selective checkpointing saves the 1st, 3rd, ... of them and recomputes the
    others (:func:`~simulator.workload.memory.per_op_saved_bytes`)."""
    h, d, a, k, f = model.d_model, model.head_dim, model.n_heads, model.kv_heads, model.ffn
    mlp = [("w1", f, h, True)] + ([("w3", f, h, True)] if model.gated_mlp else []) + [("w2", h, f, False)]
    return (("wq", a * d, h, True), ("wk", k * d, h, True), ("wv", k * d, h, True), ("wo", h, a * d, False), *mlp)


def per_op_recomputed_matmul_parameters(model: ModelConfig) -> int:
    """Weights of the matmuls per-op checkpointing recomputes in one block (every second one of
    :func:`per_op_matmuls`); each costs 2 FLOPs per token."""
    return sum(width * k for i, (_, width, k, _) in enumerate(per_op_matmuls(model)) if i % 2)


def recompute_flops_per_token(model: ModelConfig, recompute: str, checkpoint_every: int = 1) -> float:
    """FLOPs per trained token that recomputation adds, counted as :func:`model_flops_per_token`
    counts (matmuls only, non-causal attention), so that hardware FLOPs >= model FLOPs:

    * ``"full"``: the forward of the checkpointed blocks again, ``2 L_c N_matmul + 4 L_c h s``,
      ``L_c = floor(L / checkpoint_every)`` (torchtitan checkpoints the N-th, 2N-th, ... block);
    * ``"selective"``: the attention core's forward, ``Q K^T`` and ``P V``: ``4 L h s``;
    * ``"per_op"``: every second matmul of each block, ``2 L`` times
      :func:`per_op_recomputed_matmul_parameters` (the attention kernel's output is saved);
    * ``"none"``: 0.
    """
    L, h, s = model.n_layers, model.d_model, model.seq_len
    if recompute == "full":
        checkpointed = L // checkpoint_every
        return 2.0 * checkpointed * matmul_parameters_per_layer(model) + 4.0 * checkpointed * h * s
    if recompute == "selective":
        return 4.0 * L * h * s
    if recompute == "per_op":
        return 2.0 * L * per_op_recomputed_matmul_parameters(model)
    return 0.0


def non_embedding_parameters(model: ModelConfig) -> int:
    """Parameters without the token embedding, the learned positions and an untied LM head: the
    ``N`` of the ``6N`` formulas (torchtitan's ``get_dense_model_nparams_and_flops`` subtracts the
    embedding table; the head GEMM's FLOPs are then not in ``6N``)."""
    pc = parameter_count(model)
    return pc.total - pc.embedding - pc.position - pc.lm_head


def six_n_flops_per_token(model: ModelConfig, *, causal: bool) -> float:
    """FLOPs per trained token by the "6N + attention" formulas frameworks print:

    * ``causal=False`` (torchtitan, llm-foundry: ``6N + 12 L h s``): ``6 N`` for the weights
      (``N`` = :func:`non_embedding_parameters`), ``12 L h s`` for ``Q K^T`` and ``P V`` over the
      whole ``s x s`` square, forward and backward;
    * ``causal=True`` (``6N + 6 L h s``): half of that attention term, the causal triangle.

    Known answer, Llama 3 8B (``N = 6,979,588,096`` without its two ``128256 x 4096`` tables,
    ``L = 32, h = 4096, s = 8192``): ``6 N = 41.88e9`` and ``12 L h s = 12.88e9``.
    """
    L, h, s = model.n_layers, model.d_model, model.seq_len
    return 6.0 * non_embedding_parameters(model) + (6.0 if causal else 12.0) * L * h * s


def framework_flops_per_step(model: ModelConfig, global_batch: int, formula: str, *, recompute_term: bool = False
                             ) -> float:
    """FLOPs per step as a framework counts them: ``"megatron_eq3"`` (:func:`model_flops_per_step`,
    with or without its recomputation term), ``"6N+12Lhs"`` or ``"6N+6Lhs"``
    (:func:`six_n_flops_per_token` times the step's tokens). ``ValueError`` for another name."""
    if formula == "megatron_eq3":
        return model_flops_per_step(model, global_batch, recompute_term=recompute_term)
    if formula in ("6N+12Lhs", "6N+6Lhs"):
        return six_n_flops_per_token(model, causal=formula == "6N+6Lhs") * global_batch * model.seq_len
    raise ValueError(f"unknown FLOP formula {formula!r}; known: megatron_eq3, 6N+12Lhs, 6N+6Lhs")
