"""Shape of a decoder-only transformer.

A :class:`ModelConfig` is pure shape: no parallelism, no hardware. Counting
(parameters, FLOPs, bytes, activation memory) lives in sibling modules and
takes a ``ModelConfig``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from simulator.core.bounds import Flag, Fraction, span, whole

MAX_LAYERS = 2**16
MAX_WIDTH = 2**18
"""The largest hidden size, and the most attention heads."""
MAX_FFN = 2**20
MAX_VOCAB = 2**24
MAX_SEQ_LEN = 2**24


class ModelConfig(BaseModel):
    """A decoder-only transformer (GPT, Llama, Mistral, GPT-NeoX families).

    Degenerate values: ``n_kv_heads = None`` means multi-head attention
    (``n_kv_heads = n_heads``); ``d_ffn = None`` means ``4 * d_model``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("custom", description="Display name.")
    n_layers: whole(1, MAX_LAYERS) = Field(description=f"Transformer blocks, in {span(1, MAX_LAYERS)}.")
    d_model: whole(1, MAX_WIDTH) = Field(description=f"Hidden size h, in {span(1, MAX_WIDTH)}.")
    n_heads: whole(1, MAX_WIDTH) = Field(description=f"Attention (query) heads a, in {span(1, MAX_WIDTH)}.")
    n_kv_heads: whole(1, MAX_WIDTH) | None = Field(None, description="Key/value heads (GQA); None = n_heads; in "
                                                   f"{span(1, MAX_WIDTH)}.")
    d_ffn: whole(1, MAX_FFN) | None = Field(None, description=f"MLP inner size; None = 4 * d_model; in {span(1, MAX_FFN)}.")
    vocab: whole(1, MAX_VOCAB) = Field(description=f"Vocabulary size V, in {span(1, MAX_VOCAB)}.")
    seq_len: whole(1, MAX_SEQ_LEN) = Field(description=f"Tokens per sequence s, in {span(1, MAX_SEQ_LEN)}.")
    gated_mlp: Flag = Field(False, description="SwiGLU-style MLP with gate, up and down projections.")
    tied_embeddings: Flag = Field(False, description="LM head shares the input embedding matrix.")
    norm: Literal["layernorm", "rmsnorm"] = Field("layernorm", description="LayerNorm has a bias, RMSNorm not.")
    bias: Flag = Field(True, description="Linear layers carry biases (GPT-2/3 yes, Llama no).")
    dropout: Flag = Field(
        True, description="Trained with dropout (GPT-2/3, Megatron GPT); Llama-family models are not. Affects memory."
    )
    position_embedding: Literal["learned", "rope", "alibi"] = Field(
        "learned", description="'learned' adds a seq_len x d_model table of parameters."
    )
    rotary_fraction: Fraction = Field(
        1.0, description="Share of each head's dimensions that rotary embedding rotates (partial rotary: "
        f"GPT-NeoX rotary_pct 0.25, Nemotron rotary_percent 0.5), in {span(0, 1, lo_open=True)}; 1 = all; "
        "only with position_embedding 'rope'. No parameters, and negligible work.")
    parallel_block: Flag = Field(
        False, description="Attention and MLP both read the block input and are added to the residual together "
        "(GPT-J / GPT-NeoX use_parallel_residual, PaLM), instead of the MLP reading the attention's output. "
        "Same parameters and FLOPs; without sequence parallelism one forward TP all-reduce instead of two. "
        "Memory is counted as for the sequential block.")

    @model_validator(mode="after")
    def _check_shape(self) -> "ModelConfig":
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.n_heads % self.kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not divisible by n_kv_heads={self.kv_heads}")
        if self.rotary_fraction != 1.0 and self.position_embedding != "rope":
            raise ValueError(f"rotary_fraction={self.rotary_fraction} needs position_embedding 'rope', "
                             f"not {self.position_embedding!r}")
        return self

    @property
    def kv_heads(self) -> int:
        """Key/value heads, with the MHA default filled in."""
        return self.n_kv_heads or self.n_heads

    @property
    def ffn(self) -> int:
        """MLP inner size, with the 4h default filled in."""
        return self.d_ffn or 4 * self.d_model

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads
