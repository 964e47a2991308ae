"""Parameter and model-FLOP counts against published model sizes and closed forms."""

import pytest

from simulator.workload.counting import (
    ParameterCount,
    matmul_parameters_per_layer,
    model_flops_per_step,
    model_flops_per_token,
    parameter_count,
)
from simulator.workload.model import ModelConfig

# GPT-3 175B (Brown et al. 2020, table 2.1). GPT-3 ties its input and output
# embeddings (as GPT-2 does): tied gives 174.60e9, untied would give 175.22e9.
GPT3 = ModelConfig(
    name="gpt3-175b", n_layers=96, d_model=12288, n_heads=96, vocab=50257, seq_len=2048,
    tied_embeddings=True, norm="layernorm", bias=True, position_embedding="learned",
)
LLAMA2_70B = ModelConfig(
    name="llama2-70b", n_layers=80, d_model=8192, n_heads=64, n_kv_heads=8, d_ffn=28672, vocab=32000,
    seq_len=4096, gated_mlp=True, norm="rmsnorm", bias=False, position_embedding="rope",
)
LLAMA3_8B = ModelConfig(
    name="llama3-8b", n_layers=32, d_model=4096, n_heads=32, n_kv_heads=8, d_ffn=14336, vocab=128256,
    seq_len=8192, gated_mlp=True, norm="rmsnorm", bias=False, position_embedding="rope",
)


@pytest.mark.parametrize(
    "model, published",
    [(GPT3, 174.6e9), (LLAMA2_70B, 68.98e9), (LLAMA3_8B, 8.03e9)],
    ids=["gpt3-175b", "llama2-70b", "llama3-8b"],
)
def test_published_model_sizes_are_matched_within_half_a_percent(model, published):
    assert parameter_count(model).total == pytest.approx(published, rel=5e-3)


def test_gpt3_matches_174_6_billion_only_with_tied_embeddings():
    tied = parameter_count(GPT3).total
    untied = parameter_count(GPT3.model_copy(update={"tied_embeddings": False})).total
    assert tied == pytest.approx(174.6e9, rel=1e-4)
    assert untied - tied == 50257 * 12288
    assert abs(untied - 174.6e9) / 174.6e9 > 3e-3


def test_gpt3_block_is_twelve_h_squared_plus_thirteen_h():
    h = 12288
    count = parameter_count(GPT3)
    assert count.per_layer == 12 * h * h + 13 * h
    assert count.position == 2048 * h
    assert count.final_norm == 2 * h
    assert count.lm_head == 0
    assert count.layers == 96 * count.per_layer


def test_small_model_counted_by_hand():
    # h=8, a=4 (d=2), k=2, f=12, V=10, s=5, gated, biases, layernorm, learned, untied.
    m = ModelConfig(n_layers=3, d_model=8, n_heads=4, n_kv_heads=2, d_ffn=12, vocab=10, seq_len=5,
                    gated_mlp=True, bias=True, norm="layernorm", position_embedding="learned")
    qkv = 8 * (4 + 2 * 2) * 2 + (4 + 2 * 2) * 2  # weights + bias = 128 + 16
    out = 8 * 8 + 8
    mlp = 3 * 8 * 12 + (2 * 12 + 8)
    norms = 2 * (2 * 8)
    expected = ParameterCount(embedding=80, position=40, per_layer=qkv + out + mlp + norms,
                              final_norm=16, lm_head=80, n_layers=3)
    assert parameter_count(m) == expected
    assert expected.total == 80 + 40 + 3 * (144 + 72 + 320 + 32) + 16 + 80


def test_rmsnorm_without_bias_has_weight_only_norms():
    count = parameter_count(LLAMA2_70B)
    h = 8192
    assert count.final_norm == h
    assert count.per_layer == matmul_parameters_per_layer(LLAMA2_70B) + 2 * h
    assert count.position == 0
    assert count.lm_head == count.embedding == 32000 * h


def test_megatron_formula_closed_forms():
    m = GPT3
    B, s, L, h, V = 1536, 2048, 96, 12288, 50257
    no_rc = model_flops_per_step(m, B, recompute_term=False)
    rc = model_flops_per_step(m, B, recompute_term=True)
    assert no_rc == pytest.approx(72 * B * s * L * h**2 * (1 + s / (6 * h) + V / (12 * h * L)), rel=1e-12)
    # Recomputation adds one forward pass of the blocks, not of the LM head.
    assert rc - no_rc == pytest.approx(24 * B * s * L * h**2 * (1 + s / (6 * h)), rel=1e-12)
    assert rc == pytest.approx(96 * B * s * L * h**2 * (1 + s / (6 * h) + V / (16 * h * L)), rel=1e-12)


@pytest.mark.parametrize("untied", [False, True])
def test_model_flops_per_token_equals_megatron_for_gpt_shapes(untied):
    m = GPT3.model_copy(update={"tied_embeddings": not untied})
    B = 8
    per_token = model_flops_per_token(m)
    assert per_token == pytest.approx(model_flops_per_step(m, B, recompute_term=False) / (B * m.seq_len), rel=1e-12)


def test_model_flops_per_token_counts_gqa_and_gated_matmuls():
    m = LLAMA2_70B
    L, h, s, V = 80, 8192, 4096, 32000
    matmul = h * (64 + 2 * 8) * 128 + h * h + 3 * h * 28672
    assert model_flops_per_token(m) == 6 * (L * matmul + V * h) + 12 * L * h * s
    # The same as 6 x (all parameters except the embedding table and the norms) + attention.
    count = parameter_count(m)
    non_matmul = count.embedding + count.final_norm + L * 2 * h
    assert model_flops_per_token(m) == 6 * (count.total - non_matmul) + 12 * L * h * s
