"""Whole-step simulations through the Python API: symmetry, invariants, variability."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.core.errors import InputError
from simulator.inputs.efficiency_file import default_efficiency
from simulator.inputs.scenario import Scenario, load_scenario
from simulator.results.assemble import simulate


def scenario(**plan) -> Scenario:
    """A small Llama-shaped model on DGX A100 nodes; plan fields override."""
    gpus = plan.pop("gpus", 16)
    fields = dict(micro_batch=1, global_batch=16)
    fields.update(plan)
    return Scenario(
        name="test", model={"preset": "tiny", "seq_len": 1024}, topology="dgx-a100-superpod",
        gpus=gpus, plan=fields,
    )


AGREEMENT_CASES = [
    dict(gpus=8, tp=1, pp=1, global_batch=16),
    dict(gpus=8, tp=2, pp=2, global_batch=8),
    dict(gpus=16, tp=2, pp=2, global_batch=32, zero_stage=1),
    dict(gpus=32, tp=4, pp=2, vpp=2, global_batch=32),
    dict(gpus=64, tp=8, pp=2, global_batch=64, sequence_parallel=True, recompute="selective"),
    dict(gpus=64, tp=1, pp=4, global_batch=64, schedule="gpipe"),
    dict(gpus=16, tp=1, pp=1, global_batch=32, zero_stage=3),
]


@pytest.mark.parametrize("case", AGREEMENT_CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_representative_and_full_fidelity_agree_exactly(case):
    sc = scenario(**case)
    rep = simulate(sc)
    full = simulate(sc.with_(simulation={"mode": "full"}))
    assert full.mode == "full" and rep.mode == "representative"
    assert full.step_time_s == rep.step_time_s
    for key in rep.breakdown_s:
        assert full.breakdown_s[key] == pytest.approx(rep.breakdown_s[key], rel=1e-9, abs=1e-12)


def test_step_time_grows_linearly_in_microbatches_without_a_pipeline():
    times = [simulate(scenario(gpus=8, tp=8, global_batch=m)).step_time_s for m in (1, 2, 3, 4, 5)]
    steps = [b - a for a, b in zip(times, times[1:])]
    assert all(s == pytest.approx(steps[0], rel=1e-9) for s in steps)
    assert steps[0] > 0


def test_a_simulated_step_moves_bytes_and_does_flops():
    r = simulate(scenario(gpus=16, tp=2, pp=2, global_batch=16))
    assert r.model_flops_per_step > 0 and r.hardware_flops_per_step > 0
    assert r.breakdown_s["forward"] > 0 and r.breakdown_s["backward"] > 0
    assert r.hidden_comm_s["dp_comm"] + r.breakdown_s["dp_comm"] > 0


def test_same_input_same_output_even_with_jitter():
    sc = scenario(gpus=16, tp=2, pp=2, global_batch=16).with_(variability={"seed": 7, "compute_jitter_cv": 0.1})
    a, b = simulate(sc), simulate(sc)
    assert a.step_time_s == b.step_time_s
    assert a.breakdown_s == b.breakdown_s


def test_jitter_creates_synchronisation_stalls_that_grow_with_jitter():
    base = scenario(gpus=32, tp=4, pp=2, global_batch=32)
    stalls = []
    for cv in (0.0, 0.05, 0.2):
        r = simulate(base.with_(variability={"seed": 1, "compute_jitter_cv": cv}))
        stalls.append(r.breakdown_s["stall"])
        assert sum(r.breakdown_s.values()) == pytest.approx(r.step_time_s, rel=1e-9)
    assert stalls[0] == 0.0
    assert 0 < stalls[1] < stalls[2]


@pytest.mark.parametrize("mode", ["representative", "full"])
def test_a_slow_gpu_slows_the_step_and_its_peers_wait(mode):
    base = scenario(gpus=16, tp=2, pp=2, global_batch=16).with_(simulation={"mode": mode})
    healthy = simulate(base)
    slow = simulate(base.with_(variability={"slow_gpus": {5: 1.5}}))
    assert slow.step_time_s > healthy.step_time_s
    assert slow.breakdown_s["stall"] > 0


def test_a_slow_node_is_a_slow_gpu_for_each_of_its_gpus():
    base = scenario(gpus=16, tp=2, pp=2, global_batch=16)
    by_node = simulate(base.with_(variability={"slow_nodes": {1: 1.3}}))
    by_gpus = simulate(base.with_(variability={"slow_gpus": {g: 1.3 for g in range(8, 16)}}))
    assert by_node.step_time_s == by_gpus.step_time_s


def _with_network_scale(factor: float):
    eff = default_efficiency()
    net = eff.network
    scaled = net.model_copy(update={k: min(1.0, getattr(net, k) * factor) for k in ("node_efficiency", "inter_efficiency")})
    return dataclasses.replace(eff, network=scaled)


PLANS = st.sampled_from([
    dict(gpus=16, tp=2, pp=2, global_batch=16),
    dict(gpus=32, tp=4, pp=2, vpp=2, global_batch=32),
    dict(gpus=16, tp=1, pp=1, global_batch=32, zero_stage=1),
    dict(gpus=16, tp=1, pp=1, global_batch=16, zero_stage=3),
    dict(gpus=16, tp=8, pp=2, global_batch=16, sequence_parallel=True),
    dict(gpus=16, tp=2, cp=2, pp=2, global_batch=16, sequence_parallel=True),  # context parallel
    dict(gpus=24, tp=8, pp=3, global_batch=16),  # 4 layers on 3 stages: 1, 2, 1
])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=PLANS, low=st.floats(0.2, 0.9), high=st.floats(0.0, 1.0))
def test_more_bandwidth_never_slows_a_step(plan, low, high):
    hi = low + (1.0 - low) * high
    sc = scenario(**plan)
    slow_net = simulate(sc, _with_network_scale(low), record_timeline=False).step_time_s
    fast_net = simulate(sc, _with_network_scale(hi), record_timeline=False).step_time_s
    assert fast_net <= slow_net * (1 + 1e-12)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=PLANS, gemm=st.floats(0.3, 0.9), more=st.floats(0.0, 1.0))
def test_a_faster_gpu_never_slows_a_step(plan, gemm, more):
    eff = default_efficiency()
    faster = gemm + (1.0 - gemm) * more
    sc = scenario(**plan)

    def with_gemm(g):
        return dataclasses.replace(eff, compute=eff.compute.model_copy(update={"gemm": g, "attention": g}))

    assert (simulate(sc, with_gemm(faster), record_timeline=False).step_time_s
            <= simulate(sc, with_gemm(gemm), record_timeline=False).step_time_s * (1 + 1e-12))


def test_a_plan_that_does_not_fit_is_reported_with_its_numbers():
    sc = load_scenario("gpt3-175b-1024-a100").with_(recompute="none", micro_batch=8, global_batch=1536, vpp=1)
    r = simulate(sc, record_timeline=False)
    assert not r.fits_in_memory
    assert r.memory.total > r.memory.capacity
    assert any("does not fit" in n for n in r.notes)


@pytest.mark.parametrize("case", [dict(gpus=64, tp=8, pp=1, global_batch=64), dict(gpus=64, tp=4, pp=2, global_batch=64)],
                         ids=["tp8", "tp4-pp2"])
def test_with_jitter_the_representative_replica_predicts_the_full_simulation_on_average(case):
    """Order statistics stand in for the other replicas: the mean slowdown over seeds agrees
    with simulating every replica to within a fifth of the jitter's effect."""
    base = scenario(**case)
    det = simulate(base, record_timeline=False).step_time_s

    def mean_slowdown(mode):
        runs = [base.with_(variability={"seed": s, "compute_jitter_cv": 0.1}, simulation={"mode": mode})
                for s in range(10)]
        return sum(simulate(sc, record_timeline=False).step_time_s for sc in runs) / len(runs) / det

    rep, full = mean_slowdown("representative"), mean_slowdown("full")
    assert full > 1.02
    assert abs(rep - full) < 0.2 * (full - 1)


def test_a_slow_gpu_gives_the_same_step_in_both_modes():
    base = scenario(gpus=16, tp=2, pp=2, global_batch=16).with_(variability={"slow_gpus": {0: 1.5, 9: 1.2}})
    rep = simulate(base)
    full = simulate(base.with_(simulation={"mode": "full"}))
    assert rep.step_time_s == pytest.approx(full.step_time_s, rel=1e-12)


def test_zero3_hides_part_of_its_parameter_traffic_behind_compute():
    r = simulate(scenario(gpus=16, tp=1, pp=1, global_batch=32, zero_stage=3))
    assert r.hidden_comm_s["dp_comm"] > 0
    assert r.breakdown_s["dp_comm"] > 0


def test_tied_embeddings_synchronise_first_and_last_stage():
    tied = scenario(gpus=16, tp=2, pp=2, global_batch=16).with_(model={"preset": "gpt2-small"})
    r = simulate(tied)
    syncs = r.timeline[r.timeline.name == "embedding_sync"]
    assert len(syncs) == 1 and (syncs.end_s > syncs.start_s).all()
    untied = simulate(scenario(gpus=16, tp=2, pp=2, global_batch=16))
    assert not (untied.timeline.name == "embedding_sync").any()


@pytest.mark.parametrize("sequence_parallel", [False, True])
def test_tp_communication_beside_gemms_is_hidden_not_lost(sequence_parallel):
    """Overlap moves TP time from exposed to hidden; the total on the wire stays the same."""
    base = scenario(gpus=8, tp=8, pp=1, global_batch=8, sequence_parallel=sequence_parallel)
    modes = ("none", "backward", "full") if sequence_parallel else ("none", "backward")
    runs = [simulate(base.with_(tp_overlap=mode), record_timeline=False) for mode in modes]
    assert runs[0].hidden_comm_s["tp_comm"] == 0
    for less, more in zip(runs, runs[1:]):
        assert less.hidden_comm_s["tp_comm"] < more.hidden_comm_s["tp_comm"]
        assert more.step_time_s < less.step_time_s
    for r in runs[1:]:
        assert r.breakdown_s["tp_comm"] + r.hidden_comm_s["tp_comm"] == pytest.approx(
            runs[0].breakdown_s["tp_comm"], rel=1e-9)


def test_full_tp_overlap_needs_sequence_parallelism():
    with pytest.raises(InputError, match="sequence_parallel"):
        simulate(scenario(gpus=8, tp=8, pp=1, global_batch=8, tp_overlap="full"))


def test_overlapping_the_parameter_gather_removes_it_from_the_step():
    base = scenario(gpus=16, tp=1, pp=1, global_batch=32, zero_stage=1)
    at_end = simulate(base)
    overlapped = simulate(base.with_(overlap_param_gather=True))
    assert (at_end.timeline.name == "param_gather").sum() == 1
    assert not (overlapped.timeline.name == "param_gather").any()
    assert overlapped.step_time_s < at_end.step_time_s


@pytest.mark.parametrize("case", AGREEMENT_CASES + [dict(gpus=16, tp=2, pp=2, global_batch=16, zero_stage=1)],
                         ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_without_variability_nothing_is_a_synchronisation_stall(case):
    tied = scenario(**case).with_(model={"preset": "tiny", "seq_len": 1024, "tied_embeddings": True})  # embedding sync
    for sc in (scenario(**case), tied):
        r = simulate(sc, record_timeline=False)
        assert all(row["stall"] == 0 for row in r.stage_breakdown_s)


def test_the_memory_frame_adds_up_to_the_total():
    r = simulate(scenario(gpus=16, tp=2, pp=2, global_batch=16), record_timeline=False)
    frame = r.memory_frame()
    assert frame["bytes"].sum() == pytest.approx(r.memory.total)
    assert frame["share_of_capacity"].sum() == pytest.approx(r.memory.total / r.memory.capacity)


@pytest.mark.parametrize("recompute", ["none", "selective"])
def test_unfused_attention_costs_time_and_memory_and_selective_recompute_trades_one_for_the_other(recompute):
    base = scenario(gpus=8, tp=2, pp=2, global_batch=8, sequence_parallel=True, recompute=recompute)
    flash, std = simulate(base), simulate(base.with_(attention="standard"))
    assert std.step_time_s > flash.step_time_s
    if recompute == "none":  # the s x s scores are stored for backward
        assert std.memory.activations > flash.memory.activations
    else:  # not stored, recomputed instead
        assert std.memory.activations == pytest.approx(flash.memory.activations, rel=0.01)
        assert std.breakdown_s["recompute"] > flash.breakdown_s["recompute"] == 0
