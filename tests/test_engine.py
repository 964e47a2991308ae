"""The step engine against answers theory gives exactly.

With free communication and equal stages, a pipeline schedule's makespan and
bubble are textbook formulas; the engine must reproduce them to the last bit
of floating point arithmetic.
"""

from __future__ import annotations

import pytest

from simulator.core.errors import SimulationError
from simulator.network.collectives import CollectivePlan
from simulator.network.efficiency import NetworkEfficiency
from simulator.network.fabric import closed_form_fabric, flow_fabric
from simulator.network.topology import load_topology
from simulator.system.engine import StepSimulation
from simulator.system.workplan import ChunkWork, StepPlan
from simulator.workload.model import ModelConfig
from simulator.workload.plan import ParallelPlan
from simulator.workload.schedules import Action, bubble_fraction_1f1b, build_schedule

TOY = ModelConfig(name="toy", n_layers=8, d_model=64, n_heads=4, vocab=100, seq_len=16)
FREE = CollectivePlan(kind="send_recv", algorithm="p2p", protocol="", channels=0, bytes=0.0, group_size=2, phases=())


class FreeCommPlan(StepPlan):
    """A step plan whose pipeline transfers take no time."""

    def p2p(self, v_from, v_to, replicas):
        return FREE


def synthetic(pp: int, m: int, tf: float, tb: float, schedule: str = "1f1b", vpp: int = 1) -> StepPlan:
    """Equal stages: every virtual stage's forward takes tf/vpp and backward tb/vpp seconds."""
    plan = ParallelPlan(pp=pp, vpp=vpp, global_batch=m, schedule=schedule)
    chunk = ChunkWork(forward={"forward": tf / vpp}, backward={"backward": tb / vpp},
                      params_local=1, flops_forward=1.0, flops_backward=2.0, flops_recompute=0.0)
    return FreeCommPlan(
        model=TOY, plan=plan, topology=load_topology("dgx-a100-superpod", 8),
        net_efficiency=NetworkEfficiency(),
        actions=build_schedule(schedule, pp, m, vpp), chunks=[chunk] * (pp * vpp),
        optimizer_s=[0.0] * pp, param_gather=[None] * pp, message_bytes=0.0,
    )


@pytest.mark.parametrize("pp,m", [(2, 1), (4, 8), (8, 16), (4, 3), (16, 64)])
def test_1f1b_makespan_and_bubble_fraction(pp, m):
    tf, tb = 1.0, 2.0
    run = StepSimulation(synthetic(pp, m, tf, tb)).run()
    assert run.step_time_s == pytest.approx((m + pp - 1) * (tf + tb), rel=1e-12)
    for i in range(pp):
        bubble = run.accounts[(0, i)].seconds["bubble"]
        assert bubble / run.step_time_s == pytest.approx(bubble_fraction_1f1b(pp, m), rel=1e-12)


@pytest.mark.parametrize("pp,m", [(2, 4), (4, 8), (8, 3)])
def test_gpipe_makespan(pp, m):
    tf, tb = 0.5, 1.25
    run = StepSimulation(synthetic(pp, m, tf, tb, schedule="gpipe")).run()
    assert run.step_time_s == pytest.approx((m + pp - 1) * (tf + tb), rel=1e-12)


@pytest.mark.parametrize("pp,m,vpp", [(2, 4, 2), (4, 8, 2), (4, 8, 4), (8, 16, 3)])
def test_interleaved_bubble_shrinks_by_vpp(pp, m, vpp):
    tf, tb = 1.0, 2.0
    run = StepSimulation(synthetic(pp, m, tf, tb, schedule="interleaved", vpp=vpp)).run()
    assert run.step_time_s == pytest.approx((m + (pp - 1) / vpp) * (tf + tb), rel=1e-12)
    for i in range(pp):
        bubble = run.accounts[(0, i)].seconds["bubble"]
        assert bubble / run.step_time_s == pytest.approx(bubble_fraction_1f1b(pp, m, vpp), rel=1e-12)


def test_breakdown_of_every_stage_adds_up_to_the_step():
    run = StepSimulation(synthetic(4, 6, 1.0, 2.0)).run()
    for acct in run.accounts.values():
        assert sum(acct.seconds.values()) == pytest.approx(run.step_time_s, rel=1e-12)


def test_every_action_runs_once_per_stage():
    pp, m = 4, 5
    run = StepSimulation(synthetic(pp, m, 1.0, 2.0)).run()
    assert run.n_events == pp * m * 2
    computed = [e for e in run.events if e.name in ("F", "B")]
    assert sorted((e.stage, e.name, e.microbatch) for e in computed) == sorted(
        (i, k, j) for i in range(pp) for k in "FB" for j in range(m)
    )


def test_compute_events_on_one_stage_never_overlap():
    run = StepSimulation(synthetic(4, 8, 1.0, 2.0, schedule="interleaved", vpp=2)).run()
    for i in range(4):
        spans = sorted((e.start_s, e.end_s) for e in run.events if e.stage == i and e.stream == "compute")
        assert all(a_end <= b_start + 1e-12 for (_, a_end), (b_start, _) in zip(spans, spans[1:]))


def test_a_deadlocked_schedule_is_reported_with_what_was_pending():
    sp = synthetic(2, 1, 1.0, 2.0)
    sp.actions = [[Action("B", 0), Action("F", 0)], [Action("F", 0), Action("B", 0)]]
    with pytest.raises(SimulationError, match="deadlock.*stage 0: B of micro-batch 0.*stage 1: F of micro-batch 0"):
        StepSimulation(sp).run()


def test_interleaved_with_as_many_microbatches_as_stages_runs_all_forwards_first():
    from simulator.workload.schedules import interleaved

    for acts in interleaved(4, 4, 2):
        kinds = [a.kind for a in acts]
        assert kinds == ["F"] * 8 + ["B"] * 8


# ------------------------------------------------------------------------------------ fabrics


def work_plan(gpus: int, **plan) -> StepPlan:
    """The work plan of the tiny model on DGX A100 nodes, compute not slowed beside NCCL kernels
    (so that only the network differs between fabrics)."""
    import dataclasses

    from simulator.inputs.resolve import setup
    from simulator.inputs.scenario import Scenario
    from simulator.system.workplan import build_step_plan

    s = setup(Scenario(name="fabric test", model={"preset": "tiny", "seq_len": 1024}, topology="dgx-a100-superpod",
                       gpus=gpus, plan=dict(micro_batch=1, **plan)))
    eff = dataclasses.replace(s.efficiency, compute=s.efficiency.compute.model_copy(update={"overlap_slowdown": 0.0}))
    return build_step_plan(s.model, s.plan, s.topology, s.device, eff)


def step_time(sp: StepPlan, fabric, mode: str = "representative") -> float:
    return StepSimulation(sp, mode=mode, record_timeline=False, fabric=fabric).run().step_time_s


ALONE = {  # plans whose transfers never overlap in time
    "dp8-one-bucket": dict(gpus=8, dp=8, global_batch=8, dp_bucket_MB=1e6),
    "tp8": dict(gpus=8, tp=8, global_batch=4),
    "pp2-one-microbatch": dict(gpus=2, pp=2, global_batch=1),
}


@pytest.mark.parametrize("case", list(ALONE), ids=list(ALONE))
def test_without_concurrent_transfers_both_fabrics_agree(case):
    sp = work_plan(**ALONE[case])
    assert step_time(sp, closed_form_fabric) == pytest.approx(step_time(sp, flow_fabric), rel=1e-12)


CONTENDED = {
    "pp4-dp4-zero1": dict(gpus=16, pp=4, dp=4, global_batch=32, zero_stage=1),
    "tp2-pp2-dp4-interleaved": dict(gpus=16, tp=2, pp=2, dp=4, vpp=2, global_batch=32, schedule="interleaved"),
    "pp2-dp16-buckets-cross-node": dict(gpus=32, pp=2, dp=16, global_batch=64, dp_bucket_MB=4,
                                        placement=("dp", "tp", "pp")),
}


@pytest.mark.parametrize("mode", ["representative", "full"])
@pytest.mark.parametrize("case", list(CONTENDED), ids=list(CONTENDED))
def test_the_closed_form_fabric_is_never_slower_than_link_sharing(case, mode):
    """Up to rounding: the two compute a transfer's standalone time in a different order."""
    sp = work_plan(**CONTENDED[case])
    assert step_time(sp, closed_form_fabric, mode) <= step_time(sp, flow_fabric, mode) * (1 + 1e-12)


def test_the_flow_network_is_the_default_fabric():
    sp = work_plan(**CONTENDED["pp4-dp4-zero1"])
    assert StepSimulation(sp, record_timeline=False).run().step_time_s == step_time(sp, flow_fabric)


def test_link_sharing_slows_concurrent_transfers():
    sp = work_plan(**CONTENDED["pp2-dp16-buckets-cross-node"])  # buckets of both stages share inter-node links
    assert step_time(sp, closed_form_fabric) < step_time(sp, flow_fabric) * (1 - 1e-3)
