"""Efficiency per kernel family and GPU generation, eager element-wise chains, the compute
slowdown beside NCCL kernels and blocking pipeline engines (issue 13, deliverable 3)."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest

from simulator.hardware.catalog import load_catalog
from simulator.hardware.compute import ops_time_s, overlapped_s
from simulator.inputs.efficiency_file import default_efficiency
from simulator.inputs.scenario import Scenario
from simulator.results.assemble import simulate
from simulator.system.workplan import attention_kernel, prefetched_pass_s
from simulator.workload.model import ModelConfig
from simulator.workload.ops import EAGER_CHAINS, Op, eager_work, gemm, head_work, run_eagerly
from simulator.workload.plan import ParallelPlan

KERNELS_CSV = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "kernels.csv"


def eff_with(**update):
    base = default_efficiency()
    return dataclasses.replace(base, compute=base.compute.model_copy(update=update))


def scenario(plan: dict, gpus: int = 8, **fields) -> Scenario:
    return Scenario(**{"name": "k", "model": {"preset": "tiny", "seq_len": 1024}, "topology": "dgx-a100-superpod",
                       "plan": {"global_batch": 8, **plan}, "gpus": gpus, **fields})


def test_the_attention_kernel_is_the_frameworks_on_that_generation():
    plan = ParallelPlan(global_batch=8, framework="megatron-core")
    assert attention_kernel(plan, "hopper") == "cudnn" and attention_kernel(plan, "ampere") == "flash2"
    assert attention_kernel(plan.model_copy(update={"attention": "standard"}), "hopper") is None
    assert attention_kernel(ParallelPlan(global_batch=8, framework="torchtitan"), "hopper") == "flash2"


def test_attention_runs_at_its_kernels_benchmark_times_the_scale():
    c = eff_with(kernel_overhead_s=0.0, attention_scale=0.8).compute
    h100 = load_catalog().get("h100-sxm")
    op = Op("attention", "attention", 1e15, 1.0)
    for kernel in ("flash2", "flash3", "cudnn"):
        fraction = 0.8 * c.attention_by_kernel[kernel]["hopper"]
        assert ops_time_s([op], h100, "bf16", c, kernel) == pytest.approx(1e15 / (989e12 * fraction))
    # FlashAttention-2 reaches a smaller share of Hopper's peak than of Ampere's (kernels.csv)
    assert c.attention_by_kernel["flash2"]["hopper"] < c.attention_by_kernel["flash2"]["ampere"]
    assert ops_time_s([op], h100, "bf16", c, "no-such-kernel") == pytest.approx(1e15 / (989e12 * c.attention))


def test_the_size_effect_slows_linear_gemms_only():
    c = eff_with(kernel_overhead_s=0.0, gemm_half_dim_by_generation={"ampere": 512.0}).compute
    a100 = load_catalog().get("a100-80gb")
    linear = gemm("qkv", 8192, 512, 4096, 2)
    batched = dataclasses.replace(linear, name="attn_scores", linear=False)
    top = c.gemm_max("ampere")
    assert ops_time_s([batched], a100, "bf16", c) == pytest.approx(linear.flops / (312e12 * top))
    assert ops_time_s([linear], a100, "bf16", c) == pytest.approx(linear.flops / (312e12 * top * 512 / 1024))
    assert ops_time_s([linear], load_catalog().get("h100-sxm"), "bf16", c) == pytest.approx(
        linear.flops / (989e12 * c.gemm_max("hopper") * 512 / (512 + c.half_dim("hopper"))))


def test_eager_frameworks_run_element_wise_ops_as_kernel_chains():
    model = ModelConfig(name="m", n_layers=2, d_model=1024, n_heads=8, vocab=32000, seq_len=1024, norm="rmsnorm")
    work = head_work(model, micro_batch=1, tp=1, sequence_parallel=False, precision="bf16")
    eager = eager_work(work, "rmsnorm")
    by_name = {op.name: op for op in eager.forward + eager.backward}
    fused = {op.name: op for op in work.forward + work.backward}
    kernels, factor = EAGER_CHAINS["rmsnorm"]
    assert by_name["final_norm"].bytes == fused["final_norm"].bytes * factor and by_name["final_norm"].kernels == kernels
    assert by_name["final_norm_bwd"].kernels == kernels
    assert by_name["cross_entropy"].bytes > fused["cross_entropy"].bytes
    assert by_name["lm_head"] == fused["lm_head"]  # GEMMs unchanged
    layer_norm = run_eagerly(work.forward, "layernorm")
    assert layer_norm[0] == work.forward[0]  # F.layer_norm is one native kernel


def test_an_unfused_framework_is_slower_on_the_same_plan():
    fused = simulate(scenario({"dp": 8}))
    eager = simulate(scenario({"dp": 8, "fused_elementwise": False}))
    assert eager.step_time_s > fused.step_time_s


def test_compute_beside_nccl_is_slowed_for_the_overlap_only():
    assert overlapped_s(1.0, 0.5, 0.2) == pytest.approx(1.1)
    assert overlapped_s(1.0, 3.0, 0.2) == pytest.approx(3.0)  # communication-bound: the slowdown is hidden
    assert overlapped_s(1.0, 0.5, 0.0) == 1.0
    assert prefetched_pass_s(1.0, 0.5, 0.0, 4, 0.2) == pytest.approx(0.5 + 3 * 1.1 + 1.0)


@pytest.mark.parametrize("plan", [{"dp": 8}, {"dp": 8, "zero_stage": 3}, {"tp": 8, "tp_overlap": "full",
                                                                             "sequence_parallel": True}])
def test_the_overlap_slowdown_lengthens_steps_that_hide_communication(plan):
    sc = scenario(plan, model={"preset": "gpt3-2.7b", "seq_len": 2048})
    none = simulate(sc, eff_with(overlap_slowdown=0.0))
    slowed = simulate(sc, eff_with(overlap_slowdown=0.3))
    assert slowed.step_time_s > none.step_time_s
    hidden = sum(none.hidden_comm_s.values())
    assert slowed.step_time_s - none.step_time_s <= 0.3 * hidden + 1e-12  # at most the slowdown of the overlap


def test_a_blocking_pipeline_engine_waits_for_its_sends_and_dispatches_each_pass():
    plan = {"pp": 4, "dp": 2, "global_batch": 16, "zero_stage": 1, "tp_overlap": "none"}
    megatron = simulate(scenario({**plan, "framework": "megatron-lm"}), eff_with(pipeline_dispatch_s=0.0))
    blocking = simulate(scenario({**plan, "framework": "megatron-deepspeed"}), eff_with(pipeline_dispatch_s=0.0))
    dispatched = simulate(scenario({**plan, "framework": "megatron-deepspeed"}), eff_with(pipeline_dispatch_s=1e-3))
    assert megatron.step_time_s < blocking.step_time_s < dispatched.step_time_s


@pytest.mark.skipif(not KERNELS_CSV.is_file(), reason="../shared/reference/kernels.csv not beside the checkout")
def test_the_packaged_attention_priors_are_the_benchmarks():
    spec = importlib.util.spec_from_file_location("kernel_priors", Path(__file__).parents[1] / "benchmarks" /
                                                  "kernel_priors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    derived = module.priors(str(KERNELS_CSV))
    packaged = default_efficiency().compute.attention_by_kernel
    assert {f: set(g) for f, g in packaged.items()} == {f: set(g) for f, g in derived.items()}
    for family, gens in derived.items():
        for gen, (value, _) in gens.items():
            assert packaged[family][gen] == pytest.approx(value, abs=5e-4), (family, gen)
