"""The memory terms of issue 13: gradient-reduce precision, fp8 saved inputs, per-op and layer-level
checkpointing, CPU activation offload, ZeRO-3 without resharding, FSDP's model states, allocated vs
reserved vs device, and the recompute FLOPs and FLOP formulas that go with them.
Each known answer is worked by hand in its docstring."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.core.errors import InputError
from simulator.workload.allocator import (
    NONE,
    AllocatorModel,
    allocator_model,
    communicators,
)
from simulator.workload.counting import (
    framework_flops_per_step,
    model_flops_per_step,
    non_embedding_parameters,
    parameter_count,
    per_op_matmuls,
    recompute_flops_per_token,
    six_n_flops_per_token,
)
from simulator.workload.layer import layer_work
from simulator.workload.loading import get_preset
from simulator.workload.memory import (
    MemoryBreakdown,
    activation_bytes_per_layer,
    memory_per_gpu,
    parameters_on_stage,
    per_op_saved_bytes,
)
from simulator.workload.plan import ParallelPlan

LLAMA8 = get_preset("llama3-8b").model_copy(update={"seq_len": 8192})
GPT3 = get_preset("gpt3-175b")
SBH_GPT3 = 25_165_824  # 2048 x 12288
SBH_LLAMA = 33_554_432  # 8192 x 4096
CAP = 80e9


def mem(model=LLAMA8, allocator=NONE, **plan):
    plan.setdefault("global_batch", plan.get("dp", 1) * plan.get("micro_batch", 1))
    return memory_per_gpu(model, ParallelPlan(**plan), capacity_bytes=CAP, allocator=allocator)


# --------------------------------------------------------------------------- model states


def test_bf16_gradient_reduction_halves_the_gradient_buffer():
    """Megatron-Core with grad_reduce_in_fp32=False keeps a bf16 main-grad buffer: 2 B/param.
    Llama 3 8B on one GPU: 8,030,261,248 parameters -> 16,060,522,496 B (fp32: 32,121,044,992)."""
    n = parameter_count(LLAMA8).total
    assert n == 8_030_261_248
    assert mem(grad_reduce_precision="bf16").gradients == 2 * n == 16_060_522_496
    assert mem(grad_reduce_precision="fp32").gradients == 4 * n


def test_fsdp2_keeps_fp32_parameters_as_the_master_copy():
    """torchtitan (FSDP2) on 8 GPUs: fp32 sharded parameters 4/8, fp32 gradients 4/8, Adam 8/8 bytes
    per parameter: 4,015,130,624 + 4,015,130,624 + 8,030,261,248 B; Megatron's layout would be
    2/8 + 4/8 + 12/8."""
    n = parameter_count(LLAMA8).total
    fsdp = mem(dp=8, zero_stage=3, framework="torchtitan")
    assert (fsdp.parameters, fsdp.gradients, fsdp.optimizer) == (n * 4 / 8, n * 4 / 8, n * 8 / 8)
    assert fsdp.parameters == 4_015_130_624
    megatron = mem(dp=8, zero_stage=3, framework="megatron-lm")
    assert (megatron.parameters, megatron.gradients, megatron.optimizer) == (n * 2 / 8, n * 4 / 8, n * 12 / 8)


def test_reshard_after_forward_off_keeps_every_gathered_block():
    """ZeRO-3, dp 8, tp 1: resharding keeps 2 gathered blocks; without it all 32 stay from forward to
    backward: 30 more blocks x 218,112,000 parameters x 2 B = 13,086,720,000 B more buffers."""
    on = mem(dp=8, zero_stage=3, reshard_after_forward=True)
    off = mem(dp=8, zero_stage=3, reshard_after_forward=False)
    assert off.buffers - on.buffers == pytest.approx(30 * 218_112_000 * 2) == 13_086_720_000


def test_ddp_keeps_a_bucket_copy_of_every_gradient():
    """PyTorch DDP (gradient_as_bucket_view=False): buffers hold the fp32 gradients a second time
    (4 B/param) plus the autocast bf16 weight copies (2 B/param); megatron-lm only one bucket."""
    n = parameter_count(LLAMA8).total
    ddp, mlm = mem(dp=2, framework="ddp"), mem(dp=2, framework="megatron-lm")
    assert ddp.buffers - mlm.buffers == pytest.approx(4 * n + 2 * n - mlm_bucket(), rel=1e-9)


def mlm_bucket():
    return ParallelPlan(dp=2, global_batch=2).grad_bucket_bytes


# --------------------------------------------------------------------------- activations


def test_fp8_saved_inputs_store_the_four_linear_inputs_at_one_byte():
    """GPT-3 175B, t = 8 with SP, standard attention, e = 2: the saving is
    (e - 1)(2 sbh/8 + sbh/8 + sbf/8) = (2 + 1 + 4)/8 sbh = 0.875 x 25,165,824 = 22,020,096 B
    off Korthikanti's 358,612,992 B: 336,592,896 B."""
    kw = dict(micro_batch=1, tp=8, sequence_parallel=True, attention="standard")
    assert activation_bytes_per_layer(GPT3, **kw) == 358_612_992
    assert activation_bytes_per_layer(GPT3, fp8_inputs=True, **kw) == 336_592_896
    bf16 = mem(GPT3, tp=8, sequence_parallel=True, precision="fp8", fp8_saved_inputs=False)
    fp8 = mem(GPT3, tp=8, sequence_parallel=True, precision="fp8", fp8_saved_inputs=True)
    assert fp8.activations < bf16.activations
    assert mem(GPT3, tp=8, sequence_parallel=True, precision="bf16", fp8_saved_inputs=True).activations == \
        mem(GPT3, tp=8, sequence_parallel=True, precision="bf16", fp8_saved_inputs=False).activations


def test_per_op_checkpointing_keeps_every_second_matmul_output():
    """torchtitan per-op SAC, Llama 3 8B, s = 8192, b = 1, t = 1, e = 2 (in units of sbh = 33,554,432):
    block input 2, wq 2, wv 2 x 1024/4096 = 0.5, w1 2 x 14336/4096 = 7, w2 2, attention output 2:
    15.5 sbh = 520,093,696 B, plus the fp32 log-sum-exp 4 x 32 x 8192 = 1,048,576 B: 521,142,272 B."""
    assert [m[0] for m in per_op_matmuls(LLAMA8)] == ["wq", "wk", "wv", "wo", "w1", "w3", "w2"]
    assert per_op_saved_bytes(LLAMA8, micro_batch=1) == 15.5 * SBH_LLAMA + 1_048_576 == 521_142_272
    assert activation_bytes_per_layer(LLAMA8, micro_batch=1, recompute="per_op") == 521_142_272


def test_layer_level_checkpointing_checkpoints_one_block_in_n():
    """checkpoint_every = 4 on 32 blocks: 8 keep only their input, 24 keep everything:
    activations = 8 x full + 24 x none per micro-batch (one in flight), the embedding and head terms
    unchanged."""
    kw = dict(micro_batch=1, dropout=False)
    full = activation_bytes_per_layer(LLAMA8, recompute="full", **kw)
    none = activation_bytes_per_layer(LLAMA8, recompute="none", **kw)
    every4 = mem(recompute="full", checkpoint_every=4).activations
    all_full = mem(recompute="full").activations
    assert every4 - all_full == pytest.approx(24 * (none - full))


def test_cpu_offload_removes_the_offloaded_blocks_and_reloads_one():
    """8 of 32 blocks offloaded, no recompute: 8 blocks' activations fewer, one block's more buffers
    (the block being reloaded)."""
    none = activation_bytes_per_layer(LLAMA8, micro_batch=1, dropout=False)
    base, off = mem(), mem(cpu_offload_layers=8)
    assert base.activations - off.activations == pytest.approx(8 * none)
    assert off.buffers - base.buffers == pytest.approx(none)
    assert mem(cpu_offload_layers=1000).activations < off.activations  # capped at the stage's blocks


@settings(max_examples=40, deadline=None)
@given(tp=st.sampled_from([1, 2, 4, 8]), sp=st.booleans(), mb=st.integers(1, 8),
       attention=st.sampled_from(["flash", "standard"]), fp8=st.booleans())
def test_more_recompute_never_needs_more_activation_memory(tp, sp, mb, attention, fp8):
    kw = dict(micro_batch=mb, tp=tp, sequence_parallel=sp, attention=attention, fp8_inputs=fp8, dropout=False)
    a = {r: activation_bytes_per_layer(LLAMA8, recompute=r, **kw) for r in ("none", "selective", "per_op", "full")}
    assert a["none"] >= a["selective"] >= a["full"]
    assert a["per_op"] >= a["full"]
    if not fp8:  # per-op SAC also saves a row-parallel output (w2) that no-recompute never keeps; with
        assert a["none"] >= a["per_op"]  # fp8 inputs at t = 8 that can outweigh what it recomputes


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 32), zero=st.integers(0, 3), framework=st.sampled_from(["megatron-lm", "megatron-core"]))
def test_bf16_grads_never_need_more_and_fewer_checkpoints_never_less(n, zero, framework):
    kw = dict(dp=8, zero_stage=zero, framework=framework)
    assert mem(grad_reduce_precision="bf16", **kw).total <= mem(grad_reduce_precision="fp32", **kw).total
    assert mem(recompute="full", checkpoint_every=n).activations >= mem(recompute="full").activations


# --------------------------------------------------------------------------- allocated, reserved, device


def test_reserved_and_device_add_the_allocator_slack_and_context():
    """fragmentation 0.1 of (activations + buffers), context 0.5 GiB, 0.25 GiB per communicator;
    dp 8 = one communicator: device = reserved + 0.75 GiB; fits compares allocated + 0.75 GiB."""
    alloc = AllocatorModel(0.1, 2**29, 2**28)
    mb = mem(dp=8, zero_stage=3, framework="torchtitan", recompute="per_op", allocator=alloc)
    assert mb.allocated == mb.total
    assert mb.reserved == pytest.approx(mb.total + 0.1 * (mb.activations + mb.buffers))
    assert mb.device == pytest.approx(mb.reserved + 2**29 + 2**28)
    assert mb.required == pytest.approx(mb.total + 2**29 + 2**28)
    assert mb.fits == (mb.required <= CAP)
    assert mb.statistic("reserved") == mb.reserved
    with pytest.raises(InputError, match="memory_statistic"):
        mb.statistic("peak")


def test_a_plan_just_under_capacity_does_not_fit_once_the_context_is_counted():
    mb = MemoryBreakdown(10e9, 0, 0, 69.5e9, 0, capacity=80e9, outside_allocator=0.6e9)
    assert mb.total < mb.capacity and not mb.fits


def test_packaged_allocator_and_communicators():
    model = allocator_model()
    assert 0 <= model.fragmentation <= 0.35 and 2**28 <= model.cuda_context_bytes <= 2**30
    assert communicators(tp=8, cp=1, pp=4, dp_cp=16) == 3
    assert communicators(tp=1, cp=1, pp=1, dp_cp=1) == 0
    assert communicators(tp=1, cp=2, pp=1, dp_cp=2) == 1  # dp = 1: the dp x cp group is the cp group


def test_the_old_breakdown_keys_stay_in_the_json_document():
    assert list(mem().to_dict()) == ["parameters", "gradients", "optimizer", "activations", "buffers", "capacity",
                                     "stage", "total", "fits"]


# --------------------------------------------------------------------------- recompute work and FLOP formulas


def test_per_op_recompute_flops_are_every_second_matmul():
    """Llama 3 8B: wk 1024 x 4096 + wo 4096 x 4096 + w3 14336 x 4096 = 79,691,776 weights, 2 FLOPs per
    token each, 32 layers: 5,100,273,664 FLOPs per token; the layer's recompute GEMMs agree."""
    assert recompute_flops_per_token(LLAMA8, "per_op") == 5_100_273_664
    work = layer_work(LLAMA8, micro_batch=1, tp=1, sequence_parallel=False, recompute="per_op", precision="bf16")
    gemm_flops = sum(op.flops for op in work.recompute if op.kind == "gemm")
    assert gemm_flops * 32 / 8192 == pytest.approx(5_100_273_664)
    assert all(op.kind != "attention" for op in work.recompute)


def test_layer_level_checkpointing_recomputes_its_share_of_blocks():
    """checkpoint_every 4 of 32 blocks: 8/32 of full recomputation, per block and in the per-token count."""
    kw = dict(micro_batch=1, tp=1, sequence_parallel=False, recompute="full", precision="bf16")
    full, quarter = layer_work(LLAMA8, **kw), layer_work(LLAMA8, checkpoint_every=4, **kw)
    assert sum(op.flops for op in quarter.recompute) == pytest.approx(sum(op.flops for op in full.recompute) / 4)
    assert recompute_flops_per_token(LLAMA8, "full", 4) == pytest.approx(recompute_flops_per_token(LLAMA8, "full") / 4)


def test_six_n_formulas():
    """Llama 3 8B, s = 8192: N = 8,030,261,248 - 2 x 525,336,576 = 6,979,588,096; 6N = 41,877,528,576;
    12 L h s = 12 x 32 x 4096 x 8192 = 12,884,901,888; causal half 6,442,450,944 (FLOPs per token)."""
    assert non_embedding_parameters(LLAMA8) == 6_979_588_096
    assert six_n_flops_per_token(LLAMA8, causal=False) == 41_877_528_576 + 12_884_901_888
    assert six_n_flops_per_token(LLAMA8, causal=True) == 41_877_528_576 + 6_442_450_944
    assert framework_flops_per_step(LLAMA8, 4, "6N+12Lhs") == 4 * 8192 * (41_877_528_576 + 12_884_901_888)
    assert framework_flops_per_step(GPT3, 8, "megatron_eq3", recompute_term=True) == \
        model_flops_per_step(GPT3, 8, recompute_term=True)
    with pytest.raises(ValueError, match="FLOP formula"):
        framework_flops_per_step(GPT3, 8, "5N")


def test_parameters_on_stage_is_unchanged_by_the_new_fields():
    plan = ParallelPlan(global_batch=1, recompute="per_op", checkpoint_every=3, cpu_offload_layers=2)
    assert parameters_on_stage(LLAMA8, plan, 0) == parameter_count(LLAMA8).total
