"""Memory per GPU: activations (Korthikanti et al. 2022), model states with ZeRO, pipeline in-flight counts."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from simulator.core.errors import InputError, PlanError
from simulator.workload.counting import parameter_count
from simulator.workload.loading import get_preset
from simulator.workload.memory import (
    MemoryBreakdown,
    activation_bytes_per_layer,
    block_parameters_per_rank,
    memory_per_gpu,
    microbatches_in_flight,
    parameters_on_stage,
)
from simulator.workload.model import ModelConfig
from simulator.workload.plan import ParallelPlan

GPT3 = get_preset("gpt3-175b")
# s b h for GPT-3 175B with s = 2048, b = 1: 2048 * 12288 = 25,165,824; and 5 a s / h = 5 * 96 * 2048 / 12288 = 80.
SBH = 25_165_824


def act(model=GPT3, **kw):
    kw.setdefault("micro_batch", 1)
    kw.setdefault("attention", "standard")
    return activation_bytes_per_layer(model, **kw)


# --------------------------------------------------------------------------- Korthikanti Table 2


def test_no_parallelism_stores_sbh_34_plus_5as_over_h():
    # 114 s b h = 2,868,903,936 bytes
    assert act(tp=1) == 2_868_903_936 == SBH * (34 + 80)


def test_tensor_parallel_stores_10_plus_24_over_t_plus_scores_over_t():
    # s b h (10 + 24/8 + 80/8) = 23 s b h = 578,813,952 bytes
    assert act(tp=8) == 578_813_952


def test_tensor_and_sequence_parallel_split_everything():
    # s b h (34/8 + 80/8) = 14.25 s b h = 358,612,992 bytes
    assert act(tp=8, sequence_parallel=True) == 358_612_992


def test_selective_recompute_drops_the_attention_scores():
    # with SP: 34/8 s b h = 106,954,752; TP only: (10 + 24/8) s b h = 327,155,712
    assert act(tp=8, sequence_parallel=True, recompute="selective") == 106_954_752
    assert act(tp=8, recompute="selective") == 327_155_712


def test_full_recompute_keeps_only_the_block_input():
    # 2 s b h = 50,331,648; split 8 ways with SP: 6,291,456
    assert act(tp=8, recompute="full") == 50_331_648
    assert act(tp=8, sequence_parallel=True, recompute="full") == 6_291_456
    assert act(tp=8, recompute="full", attention="flash") == 50_331_648


@settings(max_examples=60, deadline=None)
@given(
    heads=st.sampled_from([1, 2, 4, 8, 16]),
    head_dim=st.sampled_from([16, 64, 128]),
    s=st.integers(1, 4096),
    b=st.integers(1, 8),
    t=st.sampled_from([1, 2, 4, 8]),
    sp=st.booleans(),
)
def test_gpt_blocks_follow_the_paper_formulas_for_any_shape(heads, head_dim, s, b, t, sp):
    assume(heads % t == 0)  # a legal plan: tp divides the heads
    h = heads * head_dim
    m = ModelConfig(n_layers=2, d_model=h, n_heads=heads, vocab=1000, seq_len=s)
    sbh, scores = s * b * h, 5 * heads * s * s * b
    got = activation_bytes_per_layer(m, micro_batch=b, tp=t, sequence_parallel=sp, recompute="none",
                                     attention="standard")
    want = sbh * 34 / t + scores / t if sp else sbh * (10 + 24 / t) + scores / t
    assert got == pytest.approx(want, rel=1e-12)


def test_flash_attention_keeps_softmax_statistics_instead_of_the_score_matrix():
    s, b, a, t = 2048, 1, 96, 8
    standard, flash = act(tp=t), act(tp=t, attention="flash")
    assert standard - flash == pytest.approx((5 * a * s * s * b - 4 * a * s * b) / t)
    # selective recomputation gives the same with either kernel
    assert act(tp=t, recompute="selective") == act(tp=t, recompute="selective", attention="flash")


def test_gqa_and_swiglu_change_only_the_kv_and_mlp_terms():
    # Llama 3 8B, s = 8192, b = 1, t = 1, flash, dropout masks kept:
    # outside 10 sbh; Q 2 sbh, K + V 2 * 2 * sb * 1024 = 1 sbh, attention output 2 sbh,
    # SwiGLU 3 * 2 * sbf = 6 * 3.5 sbh = 21 sbh -> 36 sbh; plus log-sum-exp 4 a s b.
    m = get_preset("llama3-8b")
    s, h, a = 8192, 4096, 32
    assert activation_bytes_per_layer(m, micro_batch=1) == 36 * s * h + 4 * a * s
    # without dropout the two masks (2 sbh) go
    assert activation_bytes_per_layer(m, micro_batch=1, dropout=False) == 34 * s * h + 4 * a * s
    # tp = 16 > k = 8: each rank keeps one whole kv head (head_dim 128), so K + V = 2 * 2 * s * 128
    t16 = activation_bytes_per_layer(m, micro_batch=1, tp=16, sequence_parallel=True)
    assert t16 == 10 * s * h / 16 + (4 * s * h + 6 * s * 14336) / 16 + 4 * s * 128 + 4 * a * s / 16


def test_activations_grow_linearly_with_micro_batch():
    one = act(tp=8, sequence_parallel=True)
    assert act(tp=8, sequence_parallel=True, micro_batch=3) == pytest.approx(3 * one)


def test_unknown_recompute_or_attention_is_an_input_error():
    with pytest.raises(InputError, match="selective"):
        act(recompute="some")
    with pytest.raises(InputError, match="flash"):
        act(attention="sparse")


# --------------------------------------------------------------------------- pipeline in-flight counts


def plan(**kw) -> ParallelPlan:
    kw.setdefault("global_batch", kw.get("dp", 1) * kw.get("micro_batch", 1) * 8)
    return ParallelPlan(**kw)


def test_1f1b_stage_i_holds_pp_minus_i_microbatches():
    p = plan(pp=4)  # m = 8
    assert [microbatches_in_flight(p, i) for i in range(4)] == [4, 3, 2, 1]
    few = plan(pp=4, global_batch=2)  # m = 2 < pp
    assert [microbatches_in_flight(few, i) for i in range(4)] == [2, 2, 2, 1]


def test_gpipe_holds_every_microbatch_on_every_stage():
    p = plan(pp=4, schedule="gpipe")
    assert [microbatches_in_flight(p, i) for i in range(4)] == [8] * 4


def test_interleaved_first_stage_holds_korthikantis_count():
    for pp, vpp in [(4, 2), (8, 3), (2, 4)]:
        p = plan(pp=pp, vpp=vpp, schedule="interleaved", global_batch=8 * pp)
        assert microbatches_in_flight(p, 0) == pytest.approx(pp * (1 + (pp - 1) / (pp * vpp)))
        counts = [microbatches_in_flight(p, i) for i in range(pp)]
        assert counts == sorted(counts, reverse=True)


def test_stage_activations_are_in_flight_times_layers_times_per_layer():
    m = get_preset("llama3-70b")
    p = plan(tp=8, pp=4, sequence_parallel=True)
    per_layer = activation_bytes_per_layer(m, micro_batch=1, tp=8, sequence_parallel=True, dropout=m.dropout)
    middle = memory_per_gpu(m, p, capacity_bytes=80e9, stage=1)  # no embedding, no head
    assert middle.activations == pytest.approx(3 * 20 * per_layer)


# --------------------------------------------------------------------------- parameters and ZeRO


def test_stages_together_hold_the_model_once_untied_and_twice_the_embedding_tied():
    llama = get_preset("llama3-8b")
    p = plan(pp=4)
    assert sum(parameters_on_stage(llama, p, i) for i in range(4)) == parameter_count(llama).total
    pc = parameter_count(GPT3)
    p8 = plan(pp=8)
    assert sum(parameters_on_stage(GPT3, p8, i) for i in range(8)) == pc.total + pc.embedding
    assert parameters_on_stage(GPT3, plan(), 0) == pc.total  # pp = 1: tied head counted once


def test_tensor_parallelism_splits_matrices_and_replicates_norms_and_row_biases():
    h = GPT3.d_model
    replicated = 2 * 2 * h + 2 * h  # two LayerNorms (weight + bias) and two row-parallel biases
    per_layer = parameter_count(GPT3).per_layer
    assert block_parameters_per_rank(GPT3, 8) == pytest.approx((per_layer - replicated) / 8 + replicated)


def test_mixed_precision_adam_costs_2_4_12_bytes_per_parameter():
    m = get_preset("llama3-8b")
    n = parameter_count(m).total
    mb = memory_per_gpu(m, plan(), capacity_bytes=80e9)
    assert (mb.parameters, mb.gradients, mb.optimizer) == (2 * n, 4 * n, 12 * n)
    fp32 = memory_per_gpu(m, plan(precision="fp32"), capacity_bytes=80e9)
    assert (fp32.parameters, fp32.gradients, fp32.optimizer) == (4 * n, 4 * n, 8 * n)


def test_zero_stages_divide_the_right_terms_by_dp_exactly():
    m = get_preset("llama3-70b")
    dp = 16
    z = [memory_per_gpu(m, plan(tp=8, pp=4, dp=dp, zero_stage=k), capacity_bytes=80e9, stage=0) for k in range(4)]
    assert z[1].optimizer == z[0].optimizer / dp
    assert (z[1].parameters, z[1].gradients) == (z[0].parameters, z[0].gradients)
    assert z[2].gradients == z[0].gradients / dp and z[2].optimizer == z[0].optimizer / dp
    assert z[2].parameters == z[0].parameters
    assert z[3].parameters == z[0].parameters / dp
    assert z[3].gradients == z[0].gradients / dp and z[3].optimizer == z[0].optimizer / dp
    assert z[0].activations == z[1].activations == z[2].activations == z[3].activations


# --------------------------------------------------------------------------- the breakdown


def test_a_plan_that_does_not_fit_says_so_with_the_numbers():
    m = get_preset("llama3-70b")  # 70.6B parameters x 18 bytes on one GPU
    mb = memory_per_gpu(m, plan(), capacity_bytes=80e9)
    assert not mb.fits and mb.total > mb.capacity == 80e9
    assert "NOT fit" in mb.summary()
    d = mb.to_dict()
    assert d["fits"] is False and d["total"] == mb.total
    assert set(d) >= {"parameters", "gradients", "optimizer", "activations", "buffers", "capacity", "total", "fits"}


def test_a_sharded_plan_fits():
    m = get_preset("llama3-70b")
    p = plan(tp=8, pp=4, dp=8, sequence_parallel=True, recompute="selective", zero_stage=1)
    mb = memory_per_gpu(m, p, capacity_bytes=80e9)
    assert mb.fits and 0 < mb.total <= 80e9


def test_the_default_stage_is_the_one_that_needs_the_most():
    p = plan(tp=8, pp=8)
    stages = [memory_per_gpu(GPT3, p, capacity_bytes=80e9, stage=i) for i in range(8)]
    worst = memory_per_gpu(GPT3, p, capacity_bytes=80e9)
    assert worst.total == max(s.total for s in stages)
    assert worst.stage == 0  # 1F1B: the first stage holds pp micro-batches


def test_total_is_the_sum_of_the_parts():
    mb = MemoryBreakdown(parameters=1, gradients=2, optimizer=3, activations=4, buffers=5, capacity=15)
    assert mb.total == 15 and mb.fits
    assert not MemoryBreakdown(1, 2, 3, 4, 5, 14.9).fits


def test_the_last_stage_holds_the_fp32_logits_of_one_microbatch():
    m = get_preset("llama3-8b")
    p = plan(tp=4, pp=2, dp=1)
    last = memory_per_gpu(m, p, capacity_bytes=80e9, stage=1)
    first = memory_per_gpu(m, p, capacity_bytes=80e9, stage=0)
    logits = 4 * 8192 * 128256 / 4
    send_recv = 2 * 8192 * 4096  # one neighbour each
    assert last.buffers == pytest.approx(logits + send_recv)
    assert first.buffers == pytest.approx(send_recv)


def test_layers_that_do_not_divide_over_stages_go_fewer_to_the_first_and_last():
    p = plan(pp=5)
    assert p.layers(96) == (19, 19, 20, 19, 19)
    middle = memory_per_gpu(GPT3, p, capacity_bytes=80e9, stage=2)
    second = memory_per_gpu(GPT3, p, capacity_bytes=80e9, stage=1)
    assert middle.parameters / second.parameters == pytest.approx(20 / 19)
    assert middle.activations / second.activations == pytest.approx(20 / 19 * 3 / 4)  # 3 vs 4 in flight
    with pytest.raises(PlanError) as err:
        memory_per_gpu(GPT3.model_copy(update={"n_layers": 4}), p, capacity_bytes=80e9)
    assert err.value.field == "plan.pp"
    with pytest.raises(InputError, match="stage 8"):
        memory_per_gpu(GPT3, plan(pp=8), capacity_bytes=80e9, stage=8)
