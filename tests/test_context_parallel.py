"""Context parallelism (cp): rank layout, per-rank work, memory, step simulation, flags, planner."""

from __future__ import annotations

import pytest

from simulator.core.errors import InputError, PlanError
from simulator.core.units import BYTES_PER_ELEMENT
from simulator.inputs.resolve import resolve_fleet
from simulator.inputs.scenario import Scenario
from simulator.network.collectives import plan_collective
from simulator.results.assemble import simulate
from simulator.studies.space import candidate_plans
from simulator.system.workplan import build_step_plan
from simulator.workload.layer import layer_work
from simulator.workload.loading import load_model
from simulator.workload.megatron import megatron_flags, plan_from_megatron_flags
from simulator.workload.memory import memory_per_gpu
from simulator.workload.ops import pipeline_message_bytes
from simulator.workload.plan import ParallelPlan

LLAMA = load_model("llama3-8b").model_copy(update={"seq_len": 16384})


def scenario(gpus: int = 16, mode: str = "representative", **plan) -> Scenario:
    return Scenario(name="cp", model={"preset": "tiny", "seq_len": 8192}, topology="dgx-a100-superpod", gpus=gpus,
                    plan={"global_batch": 16, **plan}, simulation={"mode": mode})


def test_rank_layout_puts_context_peers_right_outside_tensor_peers():
    p = ParallelPlan(tp=2, cp=2, dp=2, pp=2, global_batch=4)
    assert p.n_gpus == 16 and p.width == 4 and p.dp_cp == 4
    # GPU = t + 2 c + 4 r + 8 p (Megatron-LM's tp-cp-dp-pp order)
    assert p.gpu_of(1, 1, 1, cp_rank=1) == 15 and p.gpu_of(1, 0, 0) == 1
    assert sorted(p.groups("tp", pp_rank=0)) == [(0, 1), (2, 3), (4, 5), (6, 7)]
    assert sorted(p.groups("cp", pp_rank=0)) == [(0, 2), (1, 3), (4, 6), (5, 7)]
    # gradients are reduced over the dp x cp ranks with the same TP rank, context peers innermost
    assert sorted(p.groups("dp", pp_rank=1)) == [(8, 10, 12, 14), (9, 11, 13, 15)]
    assert sorted(p.groups("pp")) == [(g, g + 8) for g in range(8)]
    every = sorted(g for grp in p.groups("tp") for g in grp)
    assert every == list(range(16))


def test_per_rank_work_divides_by_cp_and_the_ring_moves_the_whole_sequence_kv():
    kw = dict(micro_batch=2, tp=2, sequence_parallel=True, recompute="full", precision="bf16")
    one, two = layer_work(LLAMA, **kw), layer_work(LLAMA, **kw, cp=2)
    for a, b in zip(one.forward + one.backward, two.forward + two.backward):
        assert b.flops == pytest.approx(a.flops / 2), a.name  # GEMMs, attention and element-wise alike
    assert two.tp_forward_bytes == pytest.approx(one.tp_forward_bytes / 2)
    assert one.cp_forward == one.cp_backward == one.cp_recompute == ()
    e, k_r = BYTES_PER_ELEMENT["bf16"], LLAMA.kv_heads // 2
    kv = 2 * 2 * LLAMA.seq_len * k_r * LLAMA.head_dim * e  # K and V of both sequences, this rank's heads
    (fwd,), (bwd,) = two.cp_forward, two.cp_backward
    assert (fwd.kind, fwd.bytes, fwd.overlaps_with) == ("all_gather", kv, "attention")
    assert (bwd.bytes, bwd.overlaps_with) == (2 * kv, "attention_bwd")  # K, V and their gradients
    assert two.cp_recompute == two.cp_forward
    assert pipeline_message_bytes(LLAMA, cp=4, **{k: kw[k] for k in ("micro_batch", "tp", "sequence_parallel",
                                                                     "precision")}) == \
        pytest.approx(pipeline_message_bytes(LLAMA, **{k: kw[k] for k in ("micro_batch", "tp", "sequence_parallel",
                                                                          "precision")}) / 4)


def test_exposed_plus_hidden_ring_time_is_the_ring_time():
    sc = scenario(cp=4, recompute="full")
    fleet = resolve_fleet(sc)
    plan = sc.parallel_plan()
    sp = build_step_plan(fleet.model, plan, fleet.topology, fleet.device, fleet.efficiency)
    eff = fleet.efficiency.network
    work = layer_work(fleet.model, recompute="full", **plan.split)
    groups = plan.groups("cp", pp_rank=0)
    ring = sum(plan_collective(fleet.topology, c.kind, groups, c.bytes, efficiency=eff,
                               generation=fleet.device.generation).standalone_time_s()
               for c in work.cp_forward + work.cp_backward + work.cp_recompute)
    chunk = sp.chunks[0]
    total = chunk.forward["cp_comm"] + chunk.backward["cp_comm"] + chunk.cp_hidden_s
    assert total == pytest.approx(fleet.model.n_layers * ring, rel=1e-12)
    assert chunk.cp_hidden_s > 0


def test_activations_shrink_like_a_shorter_sequence_and_zero_shards_over_dp_x_cp():
    plan = ParallelPlan(tp=2, cp=4, dp=2, global_batch=8, zero_stage=1, sequence_parallel=True)
    short = LLAMA.model_copy(update={"seq_len": LLAMA.seq_len // 4})
    as_dp = plan.model_copy(update={"cp": 1, "dp": 8})
    m = memory_per_gpu(LLAMA, plan, capacity_bytes=80e9)
    ref = memory_per_gpu(short, plan.model_copy(update={"cp": 1}), capacity_bytes=80e9)
    assert m.activations == pytest.approx(ref.activations)
    assert m.optimizer == pytest.approx(memory_per_gpu(LLAMA, as_dp, capacity_bytes=80e9).optimizer)


def test_splitting_sequences_keeps_the_total_work_and_shrinks_activations():
    runs = {cp: simulate(scenario(cp=cp), record_timeline=False) for cp in (1, 2, 4)}
    assert runs[2].plan.dp == 8 and runs[4].plan.dp == 4
    for cp in (2, 4):
        assert runs[cp].hardware_flops_per_step == pytest.approx(runs[1].hardware_flops_per_step, rel=1e-12)
        assert runs[cp].memory.activations < runs[1].memory.activations / cp * 1.01
        assert runs[cp].hidden_comm_s["cp_comm"] > 0
        assert sum(runs[cp].breakdown_s.values()) == pytest.approx(runs[cp].step_time_s)


@pytest.mark.parametrize("plan", [dict(cp=2, tp=2, pp=2), dict(cp=4, zero_stage=3), dict(cp=2, pp=2, vpp=2)])
def test_representative_and_full_fidelity_agree_exactly_with_cp(plan):
    rep = simulate(scenario(**plan), record_timeline=False)
    full = simulate(scenario(mode="full", **plan), record_timeline=False)
    assert full.step_time_s == pytest.approx(rep.step_time_s, rel=1e-9)


def test_bad_context_parallel_plans_are_clear_errors():
    with pytest.raises(ValueError, match="needs attention 'flash'"):
        ParallelPlan(cp=2, global_batch=2, attention="standard")
    with pytest.raises(InputError, match="2 x cp = 16") as err:
        layer_work(LLAMA.model_copy(update={"seq_len": 8200}), micro_batch=1, tp=1, sequence_parallel=False,
                   recompute="none", precision="bf16", cp=8)
    assert err.value.field == "plan.cp"
    with pytest.raises(PlanError, match=r"tp x cp x pp x dp = 1 x 2 x 1 x 16"):
        scenario(cp=2, dp=16).parallel_plan()


def test_megatron_flags_carry_cp_and_read_back():
    plan = ParallelPlan(tp=2, cp=4, pp=2, dp=2, global_batch=8, sequence_parallel=True, zero_stage=1)
    flags = megatron_flags(plan, LLAMA)
    assert flags[flags.index("--context-parallel-size") + 1] == "4"
    assert plan_from_megatron_flags(flags, 32) == plan
    assert "--context-parallel-size" not in megatron_flags(plan.model_copy(update={"cp": 1, "dp": 8}), LLAMA)


def test_planner_searches_cp_only_for_long_sequences():
    def plans(seq_len: int, **stated):
        sc = Scenario(name="p", model={"preset": "llama3-8b", "seq_len": seq_len}, topology="dgx-h100-superpod",
                      gpus=64, plan={"global_batch": 64, **stated})
        return candidate_plans(sc)

    assert {p.cp for p in plans(8192)} == {1}
    long = plans(65536)
    assert {p.cp for p in long} == {1, 2, 4, 8}  # at least 8,192 tokens per rank
    assert all(p.n_gpus == 64 and (65536 // p.cp) % p.tp == 0 for p in long)
    assert {p.cp for p in plans(8192, cp=2)} == {2}  # a stated cp is kept
    assert {p.cp for p in plans(65536, attention="standard")} == {1}
