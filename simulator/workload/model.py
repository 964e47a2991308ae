"""Shape of a decoder-only transformer.

A :class:`ModelConfig` is pure shape: no parallelism, no hardware. Counting
(parameters, FLOPs, bytes, activation memory) lives in sibling modules and
takes a ``ModelConfig``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ModelConfig(BaseModel):
    """A decoder-only transformer (GPT, Llama, Mistral, GPT-NeoX families).

    Degenerate values: ``n_kv_heads = None`` means multi-head attention
    (``n_kv_heads = n_heads``); ``d_ffn = None`` means ``4 * d_model``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("custom", description="Display name.")
    n_layers: int = Field(gt=0, description="Transformer blocks.")
    d_model: int = Field(gt=0, description="Hidden size h.")
    n_heads: int = Field(gt=0, description="Attention (query) heads a.")
    n_kv_heads: int | None = Field(None, gt=0, description="Key/value heads (GQA); None = n_heads.")
    d_ffn: int | None = Field(None, gt=0, description="MLP inner size; None = 4 * d_model.")
    vocab: int = Field(gt=0, description="Vocabulary size V.")
    seq_len: int = Field(gt=0, description="Tokens per sequence s.")
    gated_mlp: bool = Field(False, description="SwiGLU-style MLP with gate, up and down projections.")
    tied_embeddings: bool = Field(False, description="LM head shares the input embedding matrix.")
    norm: Literal["layernorm", "rmsnorm"] = Field("layernorm", description="LayerNorm has a bias, RMSNorm not.")
    bias: bool = Field(True, description="Linear layers carry biases (GPT-2/3 yes, Llama no).")
    dropout: bool = Field(
        True, description="Trained with dropout (GPT-2/3, Megatron GPT); Llama-family models are not. Affects memory."
    )
    position_embedding: Literal["learned", "rope", "alibi"] = Field(
        "learned", description="'learned' adds a seq_len x d_model table of parameters."
    )

    @model_validator(mode="after")
    def _check_shape(self) -> "ModelConfig":
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.n_heads % self.kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not divisible by n_kv_heads={self.kv_heads}")
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
