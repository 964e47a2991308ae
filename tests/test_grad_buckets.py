"""Data-parallel gradient buckets: Megatron-Core's default size, or the one the plan states."""

from __future__ import annotations

import math

from simulator.inputs.resolve import resolve_fleet
from simulator.inputs.scenario import Scenario
from simulator.system.workplan import build_step_plan
from simulator.workload.loading import load_model
from simulator.workload.megatron import megatron_flags, plan_from_megatron_flags
from simulator.workload.plan import ParallelPlan


def test_the_default_bucket_is_megatron_cores():
    def plan(**kw) -> ParallelPlan:
        return ParallelPlan(global_batch=1024, **kw)

    assert plan(dp=8).grad_bucket_bytes == 40e6 * 4  # max(40M, 1M x dp) fp32 elements
    assert plan(dp=256).grad_bucket_bytes == 256e6 * 4
    assert plan(dp=64, cp=2).grad_bucket_bytes == 128e6 * 4  # the gradient group is dp x cp
    assert plan(dp=256, grad_reduce_precision="bf16").grad_bucket_bytes == 256e6 * 2
    assert plan(dp=256, overlap_grad_reduce=False).grad_bucket_bytes == math.inf  # one bucket
    assert plan(dp=256, dp_bucket_bytes=80e6).grad_bucket_bytes == 80e6


def test_bucket_counts_follow_the_size():
    sc = Scenario(name="b", model="llama3-8b", topology="dgx-h100-superpod", gpus=64,
                  plan={"global_batch": 64, "tp": 1})
    fleet = resolve_fleet(sc)

    def n_buckets(**kw) -> int:
        plan = sc.with_(**kw).parallel_plan()
        sp = build_step_plan(fleet.model, plan, fleet.topology, fleet.device, fleet.efficiency)
        return len(sp.chunks[0].grad_buckets)

    only_stage = build_step_plan(fleet.model, sc.parallel_plan(), fleet.topology, fleet.device, fleet.efficiency)
    grads = only_stage.chunks[0].params_local * 4  # fp32 gradient bytes of the one stage
    assert n_buckets() == math.ceil(grads / (64e6 * 4))
    assert n_buckets(dp_bucket_MB=100) == math.ceil(grads / 100e6)
    assert n_buckets(overlap_grad_reduce=False) == 1


def test_the_bucket_flag_is_written_only_when_set():
    model = load_model("llama3-8b")
    default = ParallelPlan(tp=8, dp=4, global_batch=8)
    assert "--ddp-bucket-size" not in megatron_flags(default, model)
    assert plan_from_megatron_flags(megatron_flags(default, model), 32).dp_bucket_bytes is None
    sized = default.model_copy(update={"dp_bucket_bytes": 400e6})
    flags = megatron_flags(sized, model)
    assert flags[flags.index("--ddp-bucket-size") + 1] == "100000000"  # fp32 elements
    assert plan_from_megatron_flags(flags, 32) == sized
