"""FP8 training as Transformer Engine runs it: fp8 linear-layer GEMMs, everything else bf16."""

from __future__ import annotations

import pytest

from simulator import load_scenario, simulate
from simulator.hardware.catalog import load_catalog
from simulator.hardware.compute import ops_time_s
from simulator.inputs.efficiency_file import default_efficiency
from simulator.workload.layer import layer_work
from simulator.workload.loading import load_model
from simulator.workload.ops import Op, head_work, pipeline_message_bytes

LLAMA = load_model("llama3-8b")
KW = dict(micro_batch=1, tp=2, sequence_parallel=True)


def test_linear_gemms_read_fp8_operands_after_a_cast_and_the_rest_stays_bf16():
    fp8 = layer_work(LLAMA, recompute="none", precision="fp8", **KW)
    bf16 = layer_work(LLAMA, recompute="none", precision="bf16", **KW)
    ops = {op.name: op for op in fp8.forward + fp8.backward}
    m, n, k = ops["qkv"].gemm_mnk
    assert ops["qkv"].bytes == (m * k + k * n) * 1 + m * n * 2 and ops["qkv"].precision is None
    assert ops["qkv_input_to_fp8"].bytes == m * k * (2 + 2)  # read bf16, write fp8 and its transpose
    assert ops["qkv_grad_to_fp8"].bytes == m * n * (2 + 2)
    assert ops["attention"].precision == ops["attention_bwd"].precision == "bf16"
    # same FLOPs in the GEMMs and the attention core; bf16 collectives
    gemm = [op for op in bf16.forward + bf16.backward if op.kind != "elementwise"]
    assert [ops[op.name].flops for op in gemm] == [op.flops for op in gemm]
    assert fp8.tp_forward_bytes == bf16.tp_forward_bytes and fp8.tp_backward_bytes == bf16.tp_backward_bytes
    assert head_work(LLAMA, precision="fp8", **KW).forward[1].precision == "bf16"  # the LM head
    assert pipeline_message_bytes(LLAMA, precision="fp8", **KW) == pipeline_message_bytes(LLAMA, precision="bf16", **KW)


def test_an_fp8_gemm_runs_at_the_fp8_peak_times_the_measured_fp8_to_bf16_ratio():
    h100 = load_catalog().get("h100-sxm")
    eff = default_efficiency().compute.model_copy(update={"kernel_overhead_s": 0.0})
    big = Op("g", "gemm", 2.0 * 8192**3, 1.0, (8192, 8192, 8192))
    top = eff.gemm_max(h100.generation, h100.mamf_fraction)
    assert ops_time_s([big], h100, "fp8", eff) == pytest.approx(big.flops / (1979e12 * top * 0.709 / 0.803))
    assert ops_time_s([big], h100, "bf16", eff) == pytest.approx(big.flops / (989e12 * top))
    attention = Op("a", "attention", 1e15, 1.0, precision="bf16")
    assert ops_time_s([attention], h100, "fp8", eff) == pytest.approx(1e15 / (989e12 * eff.attention))


def test_fp8_speeds_a_step_up_by_less_than_its_peak_ratio():
    sc = load_scenario("llama3-70b-512-h100")
    bf16 = simulate(sc, record_timeline=False)
    fp8 = simulate(sc.with_(precision="fp8"), record_timeline=False)
    assert 1.1 < bf16.step_time_s / fp8.step_time_s < 1.6
    assert fp8.memory.activations < bf16.memory.activations  # linear-layer inputs saved in fp8 (Transformer Engine)
