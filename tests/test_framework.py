"""Frameworks as data: every packaged framework loads with sources, and a scenario's plan takes
its framework's defaults for the options it leaves open, never for those it writes."""

import pytest

from simulator import load_scenario
from simulator.workload.framework import DEFAULT_FRAMEWORK, framework_names, get_framework
from simulator.workload.plan import ParallelPlan


@pytest.mark.parametrize("name", framework_names())
def test_every_framework_loads_and_cites_sources(name):
    fw = get_framework(name)
    assert fw.name == name
    for text in (fw.source, fw.attention_kernel.source, fw.checkpointing.source, fw.fsdp.source,
                 fw.pipeline_engine.source, fw.fused_elementwise_source, fw.fp8_saved_inputs_source,
                 fw.flop_formula_source):
        assert len(text) > 10
    assert set(fw.defaults) <= set(ParallelPlan.model_fields)


def test_the_default_framework_changes_nothing_in_the_plan():
    sc = load_scenario("llama3-70b-512-h100")
    assert sc.plan.framework == DEFAULT_FRAMEWORK
    plan = sc.parallel_plan()
    for name in ("sequence_parallel", "tp_overlap", "overlap_param_gather", "grad_reduce_precision"):
        assert getattr(plan, name) == getattr(sc.plan, name)


def test_megatron_core_turns_on_sequence_parallelism_and_its_overlaps_with_tp():
    base = load_scenario("gpt3-175b-1024-a100")
    plan = base.with_(framework="megatron-core").parallel_plan()
    assert plan.sequence_parallel and plan.tp_overlap == "full"
    assert plan.zero_stage == 0  # written in the scenario: kept
    assert plan.grad_reduce_precision == "bf16" and plan.overlap_param_gather
    tp1 = base.with_(framework="megatron-core", tp=1, dp=None).parallel_plan()
    assert not tp1.sequence_parallel and tp1.tp_overlap == "backward"  # "when: tp>1"


def test_a_written_option_beats_the_framework_default():
    plan = load_scenario("gpt3-175b-1024-a100").with_(framework="megatron-core", zero_stage=0,
                                                      grad_reduce_precision="fp32").parallel_plan()
    assert plan.zero_stage == 0 and plan.grad_reduce_precision == "fp32"


def test_torchtitan_selective_is_per_op_and_fsdp_keeps_parameters_gathered_with_pp():
    plan = load_scenario("llama3-70b-512-h100").with_(framework="torchtitan", zero_stage=3).parallel_plan()
    assert plan.recompute == "per_op"
    assert plan.reshard_after_forward is False  # pp > 1
    assert plan.fp8_saved_inputs is False and plan.fused_elementwise is False


def test_an_unknown_framework_is_a_one_line_error(tmp_path):
    from simulator.core.errors import InputError
    with pytest.raises(InputError) as err:
        load_scenario("gpt2xl-8-l40s-dp").with_(framework="jax")
    assert "framework" in str(err.value)


def test_the_readme_shows_the_frameworks_as_the_data_files_say():
    from pathlib import Path

    from simulator.workload.framework import traits_table
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert traits_table() in readme, "README's framework table is stale: paste traits_table()"
