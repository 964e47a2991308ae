"""Per-rank operations of a micro-batch: FLOPs, bytes, GEMM shapes and TP collectives."""


import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.core.errors import InputError
from simulator.workload.counting import parameter_count
from simulator.workload.layer import layer_work
from simulator.workload.model import ModelConfig
from simulator.workload.ops import (
    Collective,
    LayerWork,
    embedding_work,
    head_work,
    pipeline_message_bytes,
)

LLAMA2_70B = ModelConfig(
    n_layers=80, d_model=8192, n_heads=64, n_kv_heads=8, d_ffn=28672, vocab=32000, seq_len=4096,
    gated_mlp=True, norm="rmsnorm", bias=False, position_embedding="rope",
)
GPT_SMALL = ModelConfig(n_layers=4, d_model=256, n_heads=8, vocab=1024, seq_len=128)


def layer(model=LLAMA2_70B, *, b=1, tp=1, sp=False, recompute="none", precision="bf16") -> LayerWork:
    return layer_work(model, micro_batch=b, tp=tp, sequence_parallel=sp, recompute=recompute, precision=precision)


def head(model=LLAMA2_70B, *, b=1, tp=1, sp=False) -> LayerWork:
    return head_work(model, micro_batch=b, tp=tp, sequence_parallel=sp, precision="bf16")


def flops_of(ops, kinds=("gemm", "attention")) -> float:
    return sum(op.flops for op in ops if op.kind in kinds)


def by_name(ops) -> dict[str, float]:
    return {op.name: op.flops for op in ops}


@pytest.mark.parametrize("model", [LLAMA2_70B, GPT_SMALL], ids=["llama2-70b", "gpt-small"])
def test_forward_matmul_flops_per_token_are_2n_plus_causal_attention(model):
    # Independent count: every matmul weight costs 2 FLOPs per token; causal
    # attention costs 2 s h per token and layer (half of Q K^T and P V).
    h, a, k, d, f, V, s, L = (model.d_model, model.n_heads, model.kv_heads, model.head_dim, model.ffn,
                              model.vocab, model.seq_len, model.n_layers)
    n_matmul = L * (h * (a + 2 * k) * d + h * h + (3 if model.gated_mlp else 2) * h * f) + V * h
    b = 2
    total = L * flops_of(layer(model, b=b).forward) + flops_of(head(model, b=b).forward)
    assert total / (b * s) == 2 * n_matmul + L * 2 * s * h


def test_backward_of_every_gemm_is_a_dgrad_and_a_wgrad_of_equal_flops():
    work = layer(LLAMA2_70B, b=2, tp=4)
    fwd, bwd = by_name(work.forward), by_name(work.backward)
    gemms = [op for op in work.forward if op.kind == "gemm"]
    assert {op.name for op in gemms} == {"qkv", "attn_proj", "mlp_gate_up", "mlp_down"}
    for op in gemms:
        assert bwd[f"{op.name}_dgrad"] == bwd[f"{op.name}_wgrad"] == fwd[op.name]
    assert flops_of(work.backward, ("gemm",)) == 2 * flops_of(work.forward, ("gemm",))
    assert bwd["attention_bwd"] == 2.5 * fwd["attention"]


def test_backward_runs_in_reverse_order_with_dgrad_first():
    names = [op.name for op in layer(GPT_SMALL).backward]
    assert names == [
        "mlp_residual_bwd", "mlp_down_dgrad", "mlp_down_wgrad", "gelu_bwd", "mlp_up_dgrad", "mlp_up_wgrad",
        "mlp_norm_bwd", "attn_residual_bwd", "attn_proj_dgrad", "attn_proj_wgrad", "attention_bwd",
        "qkv_dgrad", "qkv_wgrad", "input_norm_bwd",
    ]


def test_gemm_shapes_and_bytes_per_rank():
    # Llama-2-70B, b=1, t=8: T=4096 tokens, 8 query heads and 1 kv head per rank.
    work = layer(LLAMA2_70B, tp=8)
    ops = {op.name: op for op in work.forward + work.backward}
    assert ops["qkv"].gemm_mnk == (4096, (8 + 2) * 128, 8192)
    assert ops["attn_proj"].gemm_mnk == (4096, 8192, 1024)
    assert ops["mlp_gate_up"].gemm_mnk == (4096, 2 * 3584, 8192)
    assert ops["mlp_down"].gemm_mnk == (4096, 8192, 3584)
    assert ops["mlp_down_dgrad"].gemm_mnk == (4096, 3584, 8192)
    assert ops["mlp_down_wgrad"].gemm_mnk == (3584, 8192, 4096)
    m, n, k = ops["mlp_down"].gemm_mnk
    assert ops["mlp_down"].flops == 2 * m * n * k
    assert ops["mlp_down"].bytes == 2 * (m * k + k * n + m * n)
    assert ops["attention"].gemm_mnk is None
    assert ops["attention"].flops == 2 * 4096**2 * 8192 / 8


@pytest.mark.parametrize("model", [LLAMA2_70B, GPT_SMALL], ids=["llama2-70b", "gpt-small"])
@pytest.mark.parametrize("tp", [2, 4, 8])
def test_tensor_parallel_splits_gemm_and_attention_flops_exactly(model, tp):
    single = layer(model, b=2)
    split = layer(model, b=2, tp=tp)
    unsplit, per_rank = by_name(single.forward + single.backward), by_name(split.forward + split.backward)
    for op in single.forward + single.backward:
        if op.kind != "elementwise":
            assert tp * per_rank[op.name] == unsplit[op.name], op.name
    head1, head_t = head(model), head(model, tp=tp)
    assert tp * flops_of(head_t.forward + head_t.backward) == flops_of(head1.forward + head1.backward)


def test_kv_heads_are_replicated_when_tp_exceeds_them():
    m = ModelConfig(n_layers=2, d_model=1024, n_heads=16, n_kv_heads=2, d_ffn=4096, vocab=512, seq_len=64,
                    gated_mlp=True)
    qkv = {op.name: op for op in layer(m, tp=8).forward}["qkv"]
    assert qkv.gemm_mnk == (64, (2 + 2 * 1) * 64, 1024)  # 2 query heads, 1 replicated kv head
    unsplit = {op.name: op for op in layer(m).forward}["qkv"]
    assert 8 * qkv.flops > unsplit.flops


def test_sequence_parallel_shrinks_norm_and_residual_work_not_gemms():
    plain, sp = layer(LLAMA2_70B, tp=8), layer(LLAMA2_70B, tp=8, sp=True)
    for a, b in zip(plain.forward, sp.forward):
        assert a.name == b.name
        if a.name in ("input_norm", "mlp_norm", "attn_residual", "mlp_residual"):
            assert b.bytes == a.bytes / 8 and b.flops == a.flops / 8
        else:
            assert b == a


def test_no_collectives_without_tensor_parallelism():
    for sp in (False, True):
        work = layer(tp=1, sp=sp, recompute="full") + head(tp=1, sp=sp)
        assert work.tp_forward == work.tp_backward == work.tp_recompute == ()


def test_tensor_parallel_all_reduces_without_sequence_parallelism():
    b, s, h = 2, 4096, 8192
    work = layer(b=b, tp=8)
    full = b * s * h * 2
    assert [c.kind for c in work.tp_forward] == ["all_reduce"] * 2
    assert [c.kind for c in work.tp_backward] == ["all_reduce"] * 2
    assert all(c.bytes == full for c in work.tp_forward + work.tp_backward)


def test_sequence_parallel_turns_each_all_reduce_into_gather_and_scatter():
    b, s, h = 2, 4096, 8192
    work = layer(b=b, tp=8, sp=True)
    assert [c.kind for c in work.tp_forward] == ["all_gather", "reduce_scatter"] * 2
    assert sorted(c.kind for c in work.tp_backward) == ["all_gather"] * 2 + ["reduce_scatter"] * 2
    assert all(c.bytes == b * s * h * 2 for c in work.tp_forward + work.tp_backward)
    # Ring volumes: an all-reduce moves what an all-gather plus a reduce-scatter of the same buffer move.
    assert work.tp_forward_bytes == 2 * layer(b=b, tp=8).tp_forward_bytes


def test_recompute_modes():
    full = layer(tp=4, recompute="full")
    assert full.recompute == full.forward and full.tp_recompute == full.tp_forward
    assert full.recompute_flops == full.forward_flops > 0
    for mode in ("none", "selective"):  # selective: flash attention already recomputes scores in backward
        work = layer(tp=4, recompute=mode)
        assert work.recompute == () and work.tp_recompute == ()
        assert work.backward == full.backward


def test_head_has_lm_head_gemm_and_three_small_loss_all_reduces():
    T, h = 4096, 8192
    work = head(tp=8)
    lm = {op.name: op for op in work.forward}["lm_head"]
    assert lm.gemm_mnk == (T, 4000, h)
    assert [c.bytes for c in work.tp_forward] == [4 * T] * 3
    assert [(c.kind, c.bytes) for c in work.tp_backward] == [("all_reduce", T * h * 2)]
    sp = head(tp=8, sp=True)
    assert [c.kind for c in sp.tp_forward] == ["all_gather"] + ["all_reduce"] * 3
    assert [c.kind for c in sp.tp_backward] == ["reduce_scatter"]


def test_vocab_not_divisible_by_tp_is_padded():
    m = GPT_SMALL.model_copy(update={"vocab": 1001})
    lm = {op.name: op for op in head(m, tp=8).forward}["lm_head"]
    assert lm.gemm_mnk[1] == 126  # ceil(1001 / 8)


def test_embedding_collectives_and_position_add():
    b, s, h = 1, 128, 256
    plain = embedding_work(GPT_SMALL, micro_batch=b, tp=4, sequence_parallel=False, precision="bf16")
    assert [(c.kind, c.bytes) for c in plain.tp_forward] == [("all_reduce", b * s * h * 2)]
    assert plain.tp_backward == ()
    assert [op.name for op in plain.forward] == ["embedding_lookup", "position_add"]
    sp = embedding_work(GPT_SMALL, micro_batch=b, tp=4, sequence_parallel=True, precision="bf16")
    assert [c.kind for c in sp.tp_forward] == ["reduce_scatter"]
    assert [c.kind for c in sp.tp_backward] == ["all_gather"]
    rope = embedding_work(LLAMA2_70B, micro_batch=1, tp=1, sequence_parallel=False, precision="bf16")
    assert [op.name for op in rope.forward] == ["embedding_lookup"]
    assert rope.tp_forward == () and rope.forward_bytes > 0


def test_pipeline_message_bytes():
    kw = dict(micro_batch=2, precision="bf16")
    full = 2 * 4096 * 8192 * 2
    assert pipeline_message_bytes(LLAMA2_70B, tp=8, sequence_parallel=False, scatter_gather=False, **kw) == full
    assert pipeline_message_bytes(LLAMA2_70B, tp=8, sequence_parallel=False, **kw) == full / 8
    assert pipeline_message_bytes(LLAMA2_70B, tp=8, sequence_parallel=True, scatter_gather=False, **kw) == full / 8
    assert pipeline_message_bytes(LLAMA2_70B, tp=1, sequence_parallel=False, **kw) == full


def test_precision_scales_bytes_not_flops():
    bf16, fp32 = layer(tp=2, precision="bf16"), layer(tp=2, precision="fp32")
    assert fp32.forward_flops == bf16.forward_flops
    gemm16 = [op.bytes for op in bf16.forward if op.kind == "gemm"]
    gemm32 = [op.bytes for op in fp32.forward if op.kind == "gemm"]
    assert gemm32 == [2 * x for x in gemm16]
    assert fp32.tp_forward_bytes == 2 * bf16.tp_forward_bytes


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(tp=3), "plan.tp"),  # does not divide 64 heads
        (dict(tp=16, sp=False, model=GPT_SMALL), "plan.tp"),  # 16 > 8 heads
        (dict(precision="int4"), "plan.precision"),
        (dict(recompute="some"), "plan.recompute"),
        (dict(b=0), "plan.micro_batch"),
    ],
)
def test_bad_inputs_raise_input_error_naming_the_field(kwargs, field):
    with pytest.raises(InputError) as err:
        layer(**kwargs)
    assert err.value.field == field


def test_sequence_parallel_needs_tp_to_divide_seq_len():
    m = GPT_SMALL.model_copy(update={"seq_len": 100})
    with pytest.raises(InputError, match="seq_len=100"):
        head(m, tp=8, sp=True)
    assert head(m, tp=8, sp=False).forward_flops > 0


def test_layers_combine_with_plus():
    a, b = layer(tp=2), head(tp=2)
    both = a + b
    assert both.forward == a.forward + b.forward
    assert both.forward_flops == pytest.approx(a.forward_flops + b.forward_flops)
    assert both.tp_backward_bytes == a.tp_backward_bytes + b.tp_backward_bytes


def test_full_model_flops_are_close_to_parameter_based_estimate():
    # Sanity link to counting: forward GEMM FLOPs ~ 2 x parameters x tokens (within 2%: embeddings, norms).
    b, s = 1, LLAMA2_70B.seq_len
    L = LLAMA2_70B.n_layers
    gemm = L * flops_of(layer(b=b).forward, ("gemm",)) + flops_of(head(b=b).forward, ("gemm",))
    n = parameter_count(LLAMA2_70B)
    assert gemm / (b * s) == pytest.approx(2 * (n.total - n.embedding), rel=2e-3)


@st.composite
def shapes(draw):
    kv = draw(st.sampled_from([1, 2, 4, 8]))
    group = draw(st.sampled_from([1, 2, 4]))
    heads = kv * group
    head_dim = draw(st.sampled_from([8, 16, 64]))
    tp = draw(st.sampled_from([t for t in (1, 2, 4, 8) if heads % t == 0 and (kv % t == 0 or t % kv == 0)]))
    ffn = tp * draw(st.integers(1, 64))
    model = ModelConfig(
        n_layers=1, d_model=heads * head_dim, n_heads=heads, n_kv_heads=kv, d_ffn=ffn,
        vocab=draw(st.integers(1, 5000)), seq_len=tp * draw(st.integers(1, 64)),
        gated_mlp=draw(st.booleans()), bias=draw(st.booleans()),
        norm=draw(st.sampled_from(["layernorm", "rmsnorm"])),
        position_embedding=draw(st.sampled_from(["learned", "rope"])),
    )
    return model, tp, draw(st.booleans()), draw(st.sampled_from(["none", "selective", "full"]))


@settings(max_examples=60, deadline=None)
@given(shape=shapes(), b=st.integers(1, 8))
def test_flops_are_linear_in_micro_batch_and_positive(shape, b):
    model, tp, sp, rc = shape
    one = layer_work(model, micro_batch=1, tp=tp, sequence_parallel=sp, recompute=rc, precision="bf16")
    many = layer_work(model, micro_batch=b, tp=tp, sequence_parallel=sp, recompute=rc, precision="bf16")
    assert flops_of(many.forward + many.backward, ("gemm",)) == b * flops_of(one.forward + one.backward, ("gemm",))
    assert many.total_flops == pytest.approx(b * one.total_flops, rel=1e-12)
    for work in (many, head(model, b=b, tp=tp, sp=sp)):
        assert all(op.flops > 0 and op.bytes > 0 for op in work.forward + work.backward)
    emb = embedding_work(model, micro_batch=b, tp=tp, sequence_parallel=sp, precision="bf16")
    assert all(op.bytes > 0 for op in emb.forward + emb.backward)
    assert all(isinstance(c, Collective) and c.bytes > 0 for c in many.tp_forward + many.tp_backward)
    assert (len(many.tp_forward) > 0) == (tp > 1)


def test_collective_sizes_sum_over_ranks_like_nccl_tests():
    # The recorded size is the full buffer, independent of tp (per-rank traffic is the network layer's job).
    sizes = {tp: {c.bytes for c in layer(tp=tp, sp=True).tp_forward} for tp in (2, 4, 8)}
    assert sizes[2] == sizes[4] == sizes[8] == {4096 * 8192 * 2}


GPT3_LIKE = ModelConfig(n_layers=4, d_model=4096, n_heads=32, vocab=51200, seq_len=2048)  # MHA, dropout


@pytest.mark.parametrize("tp", [1, 4])
def test_standard_attention_computes_the_full_square_with_unfused_softmax(tp):
    """Unfused attention: Q K^T and P V over the whole s x s square, 4 b s^2 h / t FLOPs (flash,
    causal: half of it); softmax and dropout stream the e b (a/t) s^2 scores."""
    m, b, e = GPT3_LIKE, 2, 2
    s, h, a = m.seq_len, m.d_model, m.n_heads
    std = layer_work(m, micro_batch=b, tp=tp, sequence_parallel=False, recompute="none", precision="bf16",
                     attention="standard")
    flash = layer_work(m, micro_batch=b, tp=tp, sequence_parallel=False, recompute="none", precision="bf16")
    f = by_name(std.forward)
    assert f["attn_scores"] + f["attn_values"] == 4 * b * s * s * h / tp
    assert by_name(flash.forward)["attention"] == 2 * b * s * s * h / tp
    backward = by_name(std.backward)
    for gemm in ("attn_scores", "attn_values"):
        assert backward[f"{gemm}_dgrad"] == backward[f"{gemm}_wgrad"] == f[gemm]
    scores = b * (a // tp) * s * s
    ops = {op.name: op for op in std.forward}
    assert ops["softmax"].bytes == 2 * e * scores  # read and write the scores
    assert ops["attn_dropout"].bytes == (2 * e + 1) * scores  # and a 1-byte mask
    assert ops["attn_scores"].gemm_mnk == (s, s, m.head_dim)
    # everything outside the attention core is the same
    rest = {k: v for k, v in f.items() if not k.startswith(("attn_scores", "attn_values", "softmax", "attn_dropout"))}
    assert rest == {k: v for k, v in by_name(flash.forward).items() if k != "attention"}


def test_selective_recompute_reruns_the_unfused_attention_core_only():
    kw = dict(micro_batch=1, tp=2, sequence_parallel=True, precision="bf16", attention="standard")
    sel = layer_work(GPT3_LIKE, recompute="selective", **kw)
    assert [op.name for op in sel.recompute] == ["attn_scores", "softmax", "attn_dropout", "attn_values"]
    assert sel.tp_recompute == ()
    assert layer_work(GPT3_LIKE, recompute="none", **kw).recompute == ()
    with pytest.raises(InputError, match="attention"):
        layer_work(GPT3_LIKE, recompute="none", **{**kw, "attention": "sparse"})
