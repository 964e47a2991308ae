"""Pipelines whose stages do not divide the layers: fewer layers on the first and last stages."""

from __future__ import annotations

import pytest

from simulator.core.errors import InputError
from simulator.inputs.scenario import Scenario
from simulator.results.assemble import simulate
from simulator.workload.loading import load_model
from simulator.workload.megatron import megatron_flags, plan_from_megatron_flags
from simulator.workload.plan import ParallelPlan


def scenario(n_layers: int, mode: str = "representative", **plan) -> Scenario:
    return Scenario(name="split", model={"preset": "tiny", "n_layers": n_layers}, topology="dgx-a100-superpod",
                    gpus=8, plan={"global_batch": 16, **plan}, simulation={"mode": mode})


def test_layers_go_one_fewer_to_the_ends_first():
    p = ParallelPlan(pp=16, global_batch=16)
    assert p.layers(126) == (7,) + (8,) * 14 + (7,)  # Llama 3 405B's training (arXiv:2407.21783)
    assert p.layers(128) == (8,) * 16
    assert ParallelPlan(pp=4, global_batch=4).layers(9) == (2, 2, 3, 2)
    assert ParallelPlan(pp=2, vpp=2, schedule="interleaved", global_batch=4).layers(10) == (2, 3, 3, 2)


def test_an_uneven_pipeline_simulates_its_stages_with_their_own_layers():
    even = simulate(scenario(8, pp=4), record_timeline=False)
    uneven = simulate(scenario(10, pp=4), record_timeline=False)  # 2, 3, 3, 2 layers
    full = simulate(scenario(10, mode="full", pp=4), record_timeline=False)
    assert full.step_time_s == pytest.approx(uneven.step_time_s, rel=1e-9)
    # the whole model's work is done once, whatever the split (10 layers on 2 stages divide evenly)
    two = simulate(scenario(10, pp=2), record_timeline=False)
    assert uneven.hardware_flops_per_step == pytest.approx(two.hardware_flops_per_step, rel=1e-12)
    assert uneven.hardware_flops_per_step > even.hardware_flops_per_step
    middle, first = uneven.stage_breakdown_s[1], uneven.stage_breakdown_s[0]
    assert middle["forward"] > first["forward"]  # 3 layers against 2 (plus the embedding)


def test_megatron_flags_state_the_first_and_last_stage_sizes():
    model = load_model("llama3-70b").model_copy(update={"n_layers": 126})
    plan = ParallelPlan(tp=8, pp=16, dp=2, global_batch=32, sequence_parallel=True)
    flags = megatron_flags(plan, model)
    assert flags[flags.index("--decoder-first-pipeline-num-layers") + 1] == "7"
    assert flags[flags.index("--decoder-last-pipeline-num-layers") + 1] == "7"
    assert plan_from_megatron_flags(flags, 256) == plan
    with pytest.raises(InputError, match="cannot split 96 layers as 19, 19, 20, 19, 19"):
        megatron_flags(ParallelPlan(pp=5, global_batch=5), model.model_copy(update={"n_layers": 96}))
