"""Find the best parallel plan for a model on a fleet (``trainsim plan``).

::

    from simulator import load_scenario
    from simulator.studies.planner import plan_search

    search = plan_search(load_scenario("my.yaml"), objective="throughput", top_k=64)
    search.best.plan, search.best.step_time_s, search.best.megatron_flags

The search has three passes:

1. **Enumerate** (:func:`~simulator.studies.space.candidate_plans`): every plan of the searched fields that the
   model and fleet allow (the rules are in :func:`~simulator.studies.space.candidate_plans`).
2. **Memory**: plans whose peak stage does not fit (:func:`~simulator.workload.memory.memory_per_gpu`)
   are discarded; the GB needed and the capacity are kept for the report.
3. **First pass** (:func:`~simulator.system.estimate.estimate_step`): an analytic step time from the per-micro-batch work of
   :func:`~simulator.system.workplan.build_step_plan`, used only to choose which plans to
   simulate. The best ``top_k`` of them by the objective's estimate are simulated event by
   event (:func:`~simulator.results.assemble.simulate_setup`), and the final ranking comes from
   those simulations only.

Objectives (``OBJECTIVES``): ``throughput`` (tokens/s, higher is better), ``energy``
(facility joules per token), ``cost`` (USD per token at ``gpu_hour_usd`` per GPU-hour),
``time-to-train`` (hours to train on ``tokens`` tokens at the simulated throughput). On a
fixed fleet cost and time to train rank plans like throughput; their values are reported.
Every objective is per token, so plans of different global batches (``batch_range``,
``tokens_range``) rank by time per token, not by step time.

Plans on fewer GPUs than the fleet (:func:`~simulator.studies.space.smaller_fleets`, whole
nodes) are searched beside the fleet's own: the idle GPUs are booked, so the cost counts every
GPU of the fleet and the energy adds the idle GPUs' idle power and their share of the node power
(:func:`idle_energy_J`) for the whole step.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from simulator.core.errors import InputError, TrainsimError
from simulator.core.units import GB
from simulator.inputs.resolve import Fleet, resolve_fleet
from simulator.inputs.scenario import Scenario
from simulator.results.assemble import simulate_setup
from simulator.results.step import StepResult
from simulator.studies.executor import scatter_once
from simulator.studies.objectives import (
    BUDGET_MARGIN,
    OBJECTIVES,
    Price,
    _price,
    _sort_key,
    _training,
    check_objective,
    idle_energy_J,
    objective_unit,
    objective_value,
)
from simulator.studies.space import (
    PLACEMENT_CHOICES,
    RECOMPUTE_CHOICES,
    candidate_plans,
    smaller_fleets,
    stated_constraints,
)
from simulator.system.efficiency import Efficiency
from simulator.system.estimate import Estimate
from simulator.workload.megatron import megatron_flags
from simulator.workload.memory import MemoryBreakdown
from simulator.workload.plan import ParallelPlan

# --------------------------------------------------------------------------- results

@dataclass
class PlanResult:
    """One simulated plan, with its objective value (units in the field names)."""

    plan: ParallelPlan
    step_time_s: float
    tokens_per_s: float
    mfu: float
    memory_GB: float
    headroom_GB: float
    breakdown_s: dict[str, float]
    energy_per_token_J: float
    objective: float
    estimate_s: float
    megatron_flags: list[str] | None
    megatron_note: str = ""
    result: StepResult | None = field(default=None, repr=False)
    gpu: str = ""
    training_hours: float | None = None  # to train the search's token count, if given
    training_cost_usd: float | None = None  # at the search's GPU-hour price, if given
    gpus_booked: int = 0  # the fleet's GPUs (those the plan leaves idle are paid for); 0: the plan's

    @property
    def booked(self) -> int:
        return self.gpus_booked or self.plan.n_gpus

    def row(self) -> dict[str, Any]:
        """Flat dict for tables and JSON: the fleet, plan fields, then the numbers."""
        p = self.plan
        return {
            "gpu": self.gpu, "n_gpus": p.n_gpus, "gpus_booked": self.booked, "global_batch": p.global_batch,
            "tp": p.tp, "cp": p.cp, "pp": p.pp, "dp": p.dp, "vpp": p.vpp, "micro_batch": p.micro_batch,
            "n_microbatches": p.n_microbatches, "schedule": p.schedule, "sequence_parallel": p.sequence_parallel,
            "recompute": p.recompute, "zero_stage": p.zero_stage, "placement": ",".join(p.placement),
            "step_time_s": self.step_time_s, "estimate_s": self.estimate_s, "tokens_per_s": self.tokens_per_s,
            "mfu": self.mfu, "memory_GB": self.memory_GB, "headroom_GB": self.headroom_GB,
            "energy_per_token_J": self.energy_per_token_J, "objective": self.objective,
            "training_hours": self.training_hours, "training_cost_usd": self.training_cost_usd,
            "breakdown_s": self.breakdown_s, "megatron_flags": self.megatron_flags,
        }


@dataclass(frozen=True)
class Discarded:
    """A plan left out because it does not fit in memory."""

    plan: ParallelPlan
    needed_GB: float
    capacity_GB: float
    stage: int
    gpu: str = ""


@dataclass
class PlanSearch:
    """Outcome of :func:`plan_search`: ``results`` ranked best first by the simulation."""

    objective: str
    objective_unit: str
    n_enumerated: int
    n_fit: int
    n_estimated: int
    n_simulated: int
    results: list[PlanResult]
    discarded: list[Discarded]
    errors: list[tuple[ParallelPlan, str]]
    seconds: dict[str, float]
    n_fleets: int = 1
    over_budget: list[PlanResult] = field(default_factory=list)  # simulated, but training costs more
    budget_usd: float | None = None
    batch_range: tuple[int, int] | None = None  # sequences, when the global batch was searched
    smaller_fleets: list[int] = field(default_factory=list)  # GPU counts below the fleet searched too

    @property
    def best(self) -> PlanResult:
        if not self.results:
            if self.budget_usd is not None and self.n_fit:
                cheapest = (f" (the cheapest simulated costs {min(r.training_cost_usd for r in self.over_budget):,.0f}"
                            " USD)" if self.over_budget else "")
                raise InputError(f"no plan trains within the budget of {self.budget_usd:,.0f} USD{cheapest}; "
                                 "raise --budget-usd or compare other fleets", field="--budget-usd")
            if not self.n_enumerated:
                raise InputError("no valid plan: the plan fields the scenario states (and the global batch) do not "
                                 "divide this fleet; free them (--free tp,pp,... or all) or change the fleet",
                                 field="plan")
            raise InputError("no plan fits in memory and runs; free more plan fields, use more GPUs or "
                             "a smaller global batch", field="plan")
        return self.results[0]

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        return {
            "objective": self.objective, "objective_unit": self.objective_unit,
            "batch_range": list(self.batch_range) if self.batch_range else None,
            "smaller_fleets": self.smaller_fleets,
            "counts": {"fleets": self.n_fleets, "enumerated": self.n_enumerated, "fit_in_memory": self.n_fit,
                       "estimated": self.n_estimated, "simulated": self.n_simulated},
            "seconds": self.seconds,
            "plans": [r.row() for r in self.results[:top]],
            "over_budget": len(self.over_budget),
            "discarded_for_memory": [
                {"gpu": d.gpu, **_short(d.plan), "needed_GB": d.needed_GB, "capacity_GB": d.capacity_GB,
                 "stage": d.stage}
                for d in self.discarded[:top]
            ],
            "errors": [{**_short(p), "error": e} for p, e in self.errors],
        }


def _short(plan: ParallelPlan) -> dict[str, Any]:
    fields = ("tp", "cp", "pp", "dp", "vpp", "micro_batch", "sequence_parallel", "recompute", "zero_stage")
    return {"n_gpus": plan.n_gpus, **{k: getattr(plan, k) for k in fields}, "placement": ",".join(plan.placement)}


def _simulate(fleet: Fleet, plan: ParallelPlan) -> StepResult:
    return simulate_setup(fleet.setup(plan), record_timeline=False)


def _estimate(fleet: Fleet, plan: ParallelPlan) -> Estimate:
    return fleet.estimate(plan)


def _run_batch(func: Callable[[Fleet, ParallelPlan], Any], plans: list[ParallelPlan], fleet: Fleet) -> list[Any]:
    """``func(fleet, plan)`` for each plan, in order; a plan that cannot run gives its error message.
    Module level so that Dask can ship it; the fleet is sent to each worker once."""
    out: list[Any] = []
    for plan in plans:
        try:
            out.append(func(fleet, plan))
        except TrainsimError as err:
            out.append(str(err))
    return out


def map_plans(func: Callable[[Fleet, ParallelPlan], Any], jobs: Sequence[tuple[Fleet, ParallelPlan]],
              client: Any | None = None, scattered: dict[int, Any] | None = None) -> list[Any]:
    """``func(fleet, plan)`` for each job: in this process, or on the workers of a Dask ``client``.

    On Dask every fleet (topology included) is scattered to every worker once (kept in
    ``scattered``, by fleet id, for the next call), and each fleet's plans go out in about
    four batches per worker, dealt round-robin so that the batches mix cheap and expensive
    plans; all batches run at once. The results come back in the order of ``jobs``; a plan
    that cannot run gives its error message."""
    if client is None:
        return [_run_batch(func, [plan], fleet)[0] for fleet, plan in jobs]
    scattered = {} if scattered is None else scattered
    by_fleet: dict[int, tuple[Fleet, list[int]]] = {}
    for i, (fleet, _) in enumerate(jobs):
        by_fleet.setdefault(id(fleet), (fleet, []))[1].append(i)
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    submitted = []
    for key, (fleet, indices) in by_fleet.items():
        if key not in scattered:
            scattered[key] = scatter_once(client, fleet)
        n_batches = min(len(indices), 4 * n_workers)
        batches = [indices[b::n_batches] for b in range(n_batches)]
        futures = client.map(_run_batch, [func] * n_batches, [[jobs[i][1] for i in batch] for batch in batches],
                             fleet=scattered[key], pure=False)
        submitted += zip(batches, futures)
    out: list[Any] = [""] * len(jobs)
    for batch, batch_out in zip((b for b, _ in submitted), client.gather([f for _, f in submitted])):
        for i, result in zip(batch, batch_out):
            out[i] = result
    return out


def simulate_plans(jobs: Sequence[tuple[Fleet, ParallelPlan]], client: Any | None = None) -> list[StepResult | str]:
    """Simulate each ``(fleet, plan)`` event by event (:func:`map_plans`)."""
    return map_plans(_simulate, jobs, client)


def _flags(plan: ParallelPlan, model) -> tuple[list[str] | None, str]:
    try:
        return megatron_flags(plan, model), ""
    except InputError as err:
        return None, err.detail if hasattr(err, "detail") else str(err)


def plan_search(
    scenario: Scenario,
    *,
    objective: str = "throughput",
    gpu_hour_usd: Price = None,
    tokens: float | None = None,
    top_k: int | None = 64,
    constraints: dict[str, Any] | None = None,
    free: Iterable[str] = (),
    fleets: Sequence[Mapping[str, Any]] = ({},),
    budget_usd: float | None = None,
    client: Any | None = None,
    efficiency: Efficiency | None = None,
    batch_range: tuple[int, int] | None = None,
    tokens_range: tuple[int, int] | None = None,
    smaller: bool = True,
) -> PlanSearch:
    """Search the plans of ``scenario`` (module docstring): enumerate, drop what does not fit,
    estimate every fitting plan, simulate the ``top_k`` best estimates (``None`` or ``0``: all) and
    rank those by the simulated objective.

    ``constraints`` fixes plan fields (default: those the scenario writes, minus ``free``).
    ``fleets``: scenario changes that give the fleets to compare, e.g. ``[{"gpus": 512},
    {"gpus": 1024, "gpu": "h200"}]`` (default: the scenario's own fleet); every fleet's plans
    are searched, the ``top_k`` best estimates of each fleet simulated, and all ranked together.
    ``gpu_hour_usd`` is one price or one per GPU type (``{"h100-sxm": 2.5, "h200": 3.4}``).
    With ``tokens`` (and ``gpu_hour_usd``) every result carries the hours (and the cost) of
    training on that many tokens. ``budget_usd`` (needs both) keeps only plans whose training
    fits the budget: the first pass skips plans estimated at more than 1.2 x the budget (its
    estimates are within 15 % of the simulation, except 1F1B pipelines with fewer micro-batches
    than stages, which it overestimates by up to 30 %: ``tests/test_estimate.py``), and simulated
    plans over it go to
    ``over_budget``.
    ``client``: a ``dask.distributed.Client`` to run the first pass and the simulations on
    (:func:`map_plans`); ``None`` runs them in this process.
    ``batch_range`` (sequences) or ``tokens_range`` (tokens per step, converted with the model's
    sequence length, rounded inwards): the global batch is searched in that range
    (:func:`~simulator.studies.space.batch_choices`) instead of the scenario's.
    ``smaller``: also search the GPU counts of :func:`~simulator.studies.space.smaller_fleets`
    below each fleet (its idle GPUs booked in cost and energy).
    Raises :class:`InputError` for an unknown objective, a missing price or token count, or a
    fleet the scenario's topology cannot hold.
    """
    check_objective(objective, gpu_hour_usd, tokens, budget_usd)
    if batch_range is not None and tokens_range is not None:
        raise InputError("give the global batch as sequences (--global-batch) or as tokens per step "
                         "(--tokens-per-step), not both", field="--tokens-per-step")
    goal = _Goal(objective, tokens, budget_usd)
    seconds = {"enumerate": 0.0, "memory": 0.0, "first_pass": 0.0}
    space = _SpaceOptions(batch_range, tokens_range, smaller)
    fitting, discarded, n_enumerated = _fitting_plans(scenario, fleets or ({},), free, constraints, efficiency,
                                                      gpu_hour_usd, seconds, space)
    t0 = time.perf_counter()
    scattered: dict[int, Any] = {}  # fleets already on the Dask workers
    estimates = map_plans(_estimate, [(c.fleet, c.plan) for c in fitting], client, scattered)
    errors: list[tuple[ParallelPlan, str]] = []
    estimated = goal.ranked_estimates(fitting, estimates, errors)
    chosen, per_fleet = [], Counter()  # the top_k estimates of each fleet (its smaller GPU counts with it)
    for c in estimated:
        if not top_k or per_fleet[c.group] < top_k:
            per_fleet[c.group] += 1
            chosen.append(c)
    seconds["first_pass"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    outcomes = map_plans(_simulate, [(c.fleet, c.plan) for c in chosen], client, scattered)
    seconds["simulate"] = time.perf_counter() - t0
    results, over_budget = goal.ranked_results(chosen, outcomes, errors)
    return PlanSearch(
        objective=objective, objective_unit=objective_unit(objective), n_enumerated=n_enumerated,
        n_fit=len(fitting), n_estimated=len(estimated), n_simulated=len(chosen), results=results,
        discarded=discarded, errors=errors, seconds=seconds, n_fleets=len(fleets or ({},)),
        over_budget=over_budget, budget_usd=budget_usd, batch_range=space.used_range,
        smaller_fleets=sorted(space.smaller, reverse=True),
    )


@dataclass
class _SpaceOptions:
    """How far the search widens the scenario's plan space (see :func:`plan_search`), and what it did."""

    batch_range: tuple[int, int] | None
    tokens_range: tuple[int, int] | None
    smaller_fleets: bool
    used_range: tuple[int, int] | None = None  # sequences (the last fleet's, for the report)
    smaller: set[int] = field(default_factory=set)

    def sequences(self, model: Any) -> tuple[int, int] | None:
        """The batch range in sequences for ``model`` (None: the scenario's batch)."""
        if self.tokens_range is not None:
            lo, hi = -(-self.tokens_range[0] // model.seq_len), self.tokens_range[1] // model.seq_len
            if lo > hi or hi < 1:
                raise InputError(f"{self.tokens_range[0]:,}..{self.tokens_range[1]:,} tokens per step hold no whole "
                                 f"number of {model.seq_len:,}-token sequences; widen the range",
                                 field="--tokens-per-step")
            self.used_range = (lo, hi)
        elif self.batch_range is not None:
            self.used_range = self.batch_range
        return self.used_range


@dataclass
class _Candidate:
    """A plan that fits on a fleet, with what the search learns about it (units in the names)."""

    fleet: Fleet
    plan: ParallelPlan
    memory: MemoryBreakdown
    price_usd: float | None
    booked: int = 0  # GPUs of the fleet searched (>= the plan's; 0: the plan's)
    group: int = 0  # which of the searched fleets (the same for its smaller GPU counts)
    estimate: Estimate | None = None
    estimated_objective: float = math.nan

    @property
    def gpus(self) -> int:
        return self.booked or self.plan.n_gpus

    def energy_J(self, step_energy_J: float, step_s: float) -> float:
        return step_energy_J + idle_energy_J(self.fleet, self.plan, self.gpus, step_s)

    @property
    def tokens_per_step(self) -> int:
        return self.plan.global_batch * self.fleet.model.seq_len


def _fitting_plans(scenario: Scenario, fleets: Sequence[Mapping[str, Any]], free: Iterable[str],
                   constraints: dict[str, Any] | None, efficiency: Efficiency | None, gpu_hour_usd: Price,
                   seconds: dict[str, float], space: _SpaceOptions | None = None
                   ) -> tuple[list[_Candidate], list[Discarded], int]:
    """Every plan of every fleet (and of its smaller GPU counts) that fits in memory, those that do
    not (nearest misses first), and how many were enumerated; adds the time of both passes to
    ``seconds``."""
    space = space or _SpaceOptions(None, None, False)
    n_enumerated = 0
    fitting: list[_Candidate] = []
    discarded: list[Discarded] = []
    for group, changes in enumerate(fleets):
        t0 = time.perf_counter()
        variant = scenario.with_(**changes) if changes else scenario
        fleet = resolve_fleet(variant, efficiency)
        price = _price(gpu_hour_usd, fleet.device)
        fixed = stated_constraints(variant, free) if constraints is None else constraints
        batches = space.sequences(fleet.model)
        counts = smaller_fleets(variant, fleet, batches, fixed) if space.smaller_fleets else []
        space.smaller.update(counts)
        runs = [(fleet, candidate_plans(variant, fixed, fleet=fleet, batch_range=batches))]
        for n in counts:
            sub = resolve_fleet(variant.with_(gpus=n), efficiency)
            runs.append((sub, candidate_plans(sub.scenario, fixed, fleet=sub, batch_range=batches)))
        n_enumerated += sum(len(plans) for _, plans in runs)
        seconds["enumerate"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        for run_fleet, plans in runs:
            for plan in plans:
                mem = run_fleet.memory(plan)
                if mem.fits:
                    fitting.append(_Candidate(run_fleet, plan, mem, price, variant.gpus, group))
                else:
                    discarded.append(Discarded(plan, mem.required / GB, mem.capacity / GB, mem.stage,
                                               run_fleet.device.name))
        seconds["memory"] += time.perf_counter() - t0
    discarded.sort(key=lambda d: d.needed_GB - d.capacity_GB)  # the nearest misses first
    return fitting, discarded, n_enumerated


@dataclass(frozen=True)
class _Goal:
    """What the search optimises, and the run it prices (tokens and budget: None when not given)."""

    objective: str
    tokens: float | None
    budget_usd: float | None

    def sort_key(self, c_value: float, plan: ParallelPlan) -> tuple:
        return (_sort_key(self.objective)(c_value), _tiebreak(plan))

    def ranked_estimates(self, fitting: list[_Candidate], estimates: list[Estimate | str],
                         errors: list[tuple[ParallelPlan, str]]) -> list[_Candidate]:
        """The candidates by their estimated objective, best first; those estimated over the
        budget (with ``BUDGET_MARGIN``) left out, those that failed added to ``errors``."""
        estimated = []
        for c, est in zip(fitting, estimates):
            if isinstance(est, str):
                errors.append((c.plan, est))
                continue
            if self.budget_usd is not None and _training(est.step_s, c.tokens_per_step, c.gpus, c.price_usd,
                                                         self.tokens)[1] > BUDGET_MARGIN * self.budget_usd:
                continue
            c.estimate = est
            c.estimated_objective = objective_value(
                self.objective, step_time_s=est.step_s, tokens_per_step=c.tokens_per_step, n_gpus=c.gpus,
                energy_per_step_J=c.energy_J(est.energy_J, est.step_s), gpu_hour_usd=c.price_usd, tokens=self.tokens)
            estimated.append(c)
        estimated.sort(key=lambda c: self.sort_key(c.estimated_objective, c.plan))
        return estimated

    def ranked_results(self, chosen: list[_Candidate], outcomes: list[StepResult | str],
                       errors: list[tuple[ParallelPlan, str]]) -> tuple[list[PlanResult], list[PlanResult]]:
        """The simulated plans by their objective, best first, and those over the budget."""
        results: list[PlanResult] = []
        over_budget: list[PlanResult] = []
        for c, out in zip(chosen, outcomes):
            if isinstance(out, str):
                errors.append((c.plan, out))
                continue
            r = self.plan_result(c, out)
            (over_budget if self.budget_usd is not None and r.training_cost_usd > self.budget_usd
             else results).append(r)
        results.sort(key=lambda r: self.sort_key(r.objective, r.plan))
        return results, over_budget

    def plan_result(self, c: _Candidate, out: StepResult) -> PlanResult:
        energy_J = c.energy_J(out.energy_per_step_J, out.step_time_s)
        value = objective_value(self.objective, step_time_s=out.step_time_s, tokens_per_step=out.tokens_per_step,
                                n_gpus=c.gpus, energy_per_step_J=energy_J, gpu_hour_usd=c.price_usd, tokens=self.tokens)
        flags, note = _flags(c.plan, c.fleet.model)
        hours, cost = _training(out.step_time_s, out.tokens_per_step, c.gpus, c.price_usd, self.tokens)
        mem = c.memory
        return PlanResult(
            plan=c.plan, step_time_s=out.step_time_s, tokens_per_s=out.tokens_per_s, mfu=out.mfu,
            memory_GB=mem.required / GB, headroom_GB=(mem.capacity - mem.required) / GB,
            breakdown_s=dict(out.breakdown_s), energy_per_token_J=energy_J / out.tokens_per_step,
            objective=value, estimate_s=c.estimate.step_s, megatron_flags=flags, megatron_note=note, result=out,
            gpu=c.fleet.device.name, training_hours=hours, training_cost_usd=cost, gpus_booked=c.gpus,
        )


def _tiebreak(plan: ParallelPlan) -> tuple:
    """Among equal objectives prefer the simpler plan: less recomputation, less sharding, fewer chunks,
    Megatron-LM's default rank order."""
    order = PLACEMENT_CHOICES.index(plan.placement) if plan.placement in PLACEMENT_CHOICES else len(PLACEMENT_CHOICES)
    return (RECOMPUTE_CHOICES.index(plan.recompute), plan.zero_stage, plan.cp, plan.vpp, plan.pp, plan.tp,
            plan.micro_batch, order)


__all__ = [
    "OBJECTIVES", "Discarded", "PlanResult", "PlanSearch", "Price", "check_objective", "idle_energy_J", "map_plans",
    "objective_value", "plan_search", "simulate_plans",
]
