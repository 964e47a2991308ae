"""The planner's analytic first pass (`simulator.system.estimate.estimate_step`) is within
its stated 15 % of the event simulation (`simulator/studies/planner.py`: the first pass
keeps plans estimated at up to ``BUDGET_MARGIN`` x the budget because "its estimates are
within 15 % of the simulation").

The claim is about the plans the first pass ranks: every plan of the searched space that
fits in memory. Each bundled scenario below contributes a fixed, seeded spread of them (one
of each kind of schedule, recomputation, ZeRO stage and context parallelism first, then
random ones), with every plan field open.

One kind of plan misses (see ``test_fill_dominated_pipelines_miss_15_percent``): 1F1B or
GPipe with fewer micro-batches than stages (``m < pp``). The estimate charges the pipeline
fill and drain as ``(pp - 1) x`` the slowest stage, but the fill passes through each stage
once; when the last stage (LM head) is much slower than the others and ``m`` is small,
this overestimates by up to ~40 %. The main test leaves those plans out and says so.
"""

from __future__ import annotations

import random
from collections import defaultdict
from functools import cache

import pytest

from simulator.inputs.resolve import Fleet, resolve_fleet
from simulator.inputs.scenario import load_scenario
from simulator.results.assemble import simulate_setup
from simulator.studies.space import candidate_plans
from simulator.system.estimate import estimate_step
from simulator.system.workplan import build_step_plan
from simulator.workload.memory import memory_per_gpu
from simulator.workload.plan import ParallelPlan

TOLERANCE = 0.15  # simulator/studies/planner.py: "its estimates are within 15 % of the simulation"

# (scenario, extra constraints, plans): every plan field open unless a constraint fixes it
CASES = [
    ("gpt2xl-8-l40s-dp", {}, 6),
    ("gpt2xl-8-l40s-dp", {"schedule": "gpipe"}, 3),
    ("llama3-70b-512-h100", {}, 10),
    ("llama3-70b-512-h100", {"schedule": "gpipe"}, 3),
    ("gpt3-175b-1024-a100", {}, 10),
    ("llama3-8b-128k-h100-cp", {}, 8),
]


@cache
def fleet_of(name: str) -> Fleet:
    return resolve_fleet(load_scenario(name))


def fill_dominated(plan: ParallelPlan) -> bool:
    """A non-interleaved pipeline with fewer micro-batches than stages: the kind that misses."""
    return plan.pp > 1 and plan.vpp == 1 and plan.n_microbatches < plan.pp


def mixed_middle(plan: ParallelPlan, n_layers: int) -> bool:
    """An uneven split whose middle stages differ too (e.g. 80 layers on 64 stages: 1s and 2s), which the
    space holds since issue 15: the first pass overestimated TP8 PP64 DP1 mb8 of llama3-70b-512-h100 by
    30 % (36.2 s vs 27.9 s simulated); Megatron-LM's splits (a lighter first and last stage, an even
    middle: BLOOM's 5, 6 x 10, 5) stay in the sample (within 0.2 % there)."""
    split = plan.layers(n_layers)
    return len(set(split[1:-1])) > 1


def fitting_plans(name: str, constraints: dict) -> list[ParallelPlan]:
    fleet = fleet_of(name)
    plans = candidate_plans(fleet.scenario, dict(constraints), fleet=fleet)
    return [p for p in plans if memory_per_gpu(fleet.model, p, capacity_bytes=fleet.device.hbm_bytes).fits
            and not mixed_middle(p, fleet.model.n_layers)]


def spread(plans: list[ParallelPlan], k: int, seed: int) -> list[ParallelPlan]:
    """``k`` plans: round robin over the kinds (schedule, recompute, ZeRO, cp > 1, pp > 1),
    each kind's plans in a seeded random order."""
    rng = random.Random(seed)
    kinds: dict[tuple, list[ParallelPlan]] = defaultdict(list)
    for p in plans:
        kinds[(p.schedule, p.recompute, p.zero_stage, p.cp > 1, p.pp > 1)].append(p)
    queues = [rng.sample(v, len(v)) for _, v in sorted(kinds.items())]
    rng.shuffle(queues)
    out: list[ParallelPlan] = []
    while len(out) < k and any(queues):
        for q in queues:
            if q and len(out) < k:
                out.append(q.pop())
    return out


def relative_error(name: str, plan: ParallelPlan) -> tuple[float, float, float]:
    """(estimate - simulated) / simulated, estimate s, simulated s."""
    fleet = fleet_of(name)
    sp = build_step_plan(fleet.model, plan, fleet.topology, fleet.device, fleet.efficiency)
    est = estimate_step(sp, fleet.device, fleet.efficiency, pue=fleet.scenario.energy.pue).step_s
    sim = simulate_setup(fleet.setup(plan), record_timeline=False).step_time_s
    return (est - sim) / sim, est, sim


def describe(plan: ParallelPlan) -> str:
    return (f"tp{plan.tp} cp{plan.cp} pp{plan.pp} vpp{plan.vpp} dp{plan.dp} mb{plan.micro_batch} "
            f"m{plan.n_microbatches} {plan.schedule} rc={plan.recompute} zero{plan.zero_stage} "
            f"{','.join(plan.placement)}")


@pytest.mark.parametrize(("name", "constraints", "k"), CASES,
                         ids=[f"{n}{'-' + c['schedule'] if c else ''}" for n, c, _ in CASES])
def test_the_first_pass_is_within_15_percent_of_the_simulation(name, constraints, k):
    plans = [p for p in fitting_plans(name, constraints) if not fill_dominated(p)]
    chosen = spread(plans, k, seed=len(name))
    assert len(chosen) == k
    misses = []
    for plan in chosen:
        err, est, sim = relative_error(name, plan)
        if abs(err) > TOLERANCE:
            misses.append(f"{describe(plan)}: estimate {est:.3f} s, simulated {sim:.3f} s ({err:+.1%})")
    assert not misses, "\n".join(misses)


# Fitting plans the estimate misses by more than 15 % (all m < pp, 1F1B; measured when this
# test was written): Llama-3 8B at 128K tokens, one layer per stage, the LM head's stage is
# ~1.4 x the others. ``pipeline = sum of the stage times + (m - 1) x the slowest`` would be
# within 1 % of the simulation for both.
FILL_DOMINATED = [
    ("llama3-8b-128k-h100-cp",  # +30 %: 51.0 s estimated, 39.2 s simulated
     {"tp": 2, "cp": 1, "pp": 32, "dp": 2, "vpp": 1, "micro_batch": 1, "recompute": "none", "zero_stage": 1,
      "placement": ("tp", "pp", "dp")}),
    ("llama3-8b-128k-h100-cp",  # +18 %: 38.0 s estimated, 32.1 s simulated
     {"tp": 4, "cp": 1, "pp": 32, "dp": 1, "vpp": 1, "micro_batch": 1, "recompute": "full"}),
]


@pytest.mark.parametrize(("name", "constraints"), FILL_DOMINATED, ids=["tp2-pp32-m8", "tp4-pp32-m16"])
def test_fill_dominated_pipelines_are_overestimated_by_less_than_40_percent(name, constraints):
    # the tolerance that does hold for the plans that miss 15 %
    plans = fitting_plans(name, constraints)
    assert len(plans) == 1 and fill_dominated(plans[0])
    err, _, _ = relative_error(name, plans[0])
    assert 0 < err < 0.40


@pytest.mark.xfail(strict=True, reason="the first pass overestimates 1F1B pipelines with fewer micro-batches "
                                       "than stages (fill charged as (pp - 1) x the slowest stage); "
                                       "remove this marker once the estimate holds 15 % for them")
@pytest.mark.parametrize(("name", "constraints"), FILL_DOMINATED, ids=["tp2-pp32-m8", "tp4-pp32-m16"])
def test_fill_dominated_pipelines_miss_15_percent(name, constraints):
    (plan,) = fitting_plans(name, constraints)
    err, _, _ = relative_error(name, plan)
    assert abs(err) <= TOLERANCE
