"""The plan space: every parallel plan the planner may try for a model on a fleet.

The fields a scenario states stay fixed (:func:`stated_constraints`), the others are searched
over the choices below; a plan enters the space only if it follows every rule of
:mod:`simulator.workload.legality` (the cheap ones are asked before a plan is built, to prune
the enumeration; :func:`~simulator.workload.plan.check_plan` asks them all).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import ValidationError

from simulator.core.errors import InputError, PlanError
from simulator.inputs.resolve import Fleet, resolve_fleet
from simulator.inputs.scenario import Scenario
from simulator.workload.legality import (
    batch_splits,
    fleet_filled,
    sp_splits_sequence,
    tp_splits_heads,
    tp_splits_kv_heads,
)
from simulator.workload.model import ModelConfig
from simulator.workload.plan import ParallelPlan, check_plan

VPP_CHOICES = (1, 2, 3, 4, 5, 6, 8)
MICRO_BATCH_CHOICES = (1, 2, 4, 8)
RECOMPUTE_CHOICES = ("none", "selective", "full")
SEARCHED_FIELDS = ("tp", "cp", "pp", "dp", "vpp", "micro_batch", "schedule", "sequence_parallel", "recompute",
                   "zero_stage", "placement")
"""Plan fields the planner chooses unless the scenario states them."""
CP_CHOICES = (1, 2, 4, 8, 16)
MIN_TOKENS_PER_CP_RANK = 8192
"""Context parallelism is searched only while every rank keeps at least this many tokens of a
sequence: shorter chunks leave too little attention compute to hide the K/V ring behind, and
those plans lose to the same GPUs spent on data parallelism (a stated ``cp`` is always tried)."""
PLACEMENT_CHOICES = (("tp", "dp", "pp"), ("tp", "pp", "dp"))
"""Rank orders searched: the two Megatron-LM launches (default, and ``--use-tp-pp-dp-mapping``)."""
KEPT_FIELDS = tuple(name for name in ParallelPlan.model_fields if name not in SEARCHED_FIELDS)
"""Plan fields always taken from the scenario (as written, or their default): all the others."""


def stated_constraints(scenario: Scenario, free: Iterable[str] = ()) -> dict[str, Any]:
    """The searched plan fields the scenario writes explicitly (``plan.model_fields_set``),
    minus those in ``free``: the planner keeps them fixed. ``free`` may contain ``"all"``."""
    free = set(free)
    unknown = free - set(SEARCHED_FIELDS) - {"all"}
    if unknown:
        raise InputError(f"cannot free {', '.join(sorted(unknown))}; the planner searches "
                         f"{', '.join(SEARCHED_FIELDS)} (or 'all')", field="--free")
    if "all" in free:
        return {}
    spec = scenario.plan
    return {k: getattr(spec, k) for k in SEARCHED_FIELDS
            if k in spec.model_fields_set and k not in free and getattr(spec, k) is not None}


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def tp_choices(model: ModelConfig, gpus_per_node: int, options: Iterable[int] | None = None) -> list[int]:
    """Tensor-parallel sizes that stay inside a node (``options``, default every divisor of the GPUs
    per node) and split the query heads, and the kv heads or a multiple of them."""
    return [t for t in (_divisors(gpus_per_node) if options is None else options)
            if tp_splits_heads(t, model.n_heads) is None and tp_splits_kv_heads(t, model.kv_heads) is None]


def pp_choices(model: ModelConfig) -> list[int]:
    """Pipeline sizes that divide the layers evenly."""
    return _divisors(model.n_layers)


def candidate_plans(scenario: Scenario, constraints: dict[str, Any] | None = None, *,
                    fleet: Fleet | None = None) -> list[ParallelPlan]:
    """Every valid plan of ``scenario``'s model on its fleet.

    Searched (unless fixed by ``constraints``; default :func:`stated_constraints`, i.e. the
    fields the scenario's ``plan:`` writes):

    * ``tp``: divisors of the GPUs per node that divide the query heads, and that divide the
      kv heads or are a multiple of them;
    * ``cp`` in 1, 2, 4, 8, 16 with ``seq_len`` divisible by ``2 cp`` and at least
      ``MIN_TOKENS_PER_CP_RANK`` (8,192) tokens per rank (so 1 only, for sequences under 16K);
      ``cp > 1`` only with flash attention;
    * ``pp``: divisors of the layers with ``tp x cp x pp`` dividing the fleet;
      ``dp = gpus / (tp x cp x pp)`` (a stated ``dp`` fixes ``tp x cp x pp``);
    * ``vpp`` in 1, 2, 3, 4, 5, 6, 8 with ``layers % (pp x vpp) == 0`` (uneven splits are
      simulated when a scenario states them, not searched); ``vpp > 1`` only with
      ``pp > 1`` and micro-batches a multiple of ``pp``; ``schedule`` follows (interleaved for
      ``vpp > 1``, else 1F1B; a stated ``gpipe``/``1f1b`` fixes ``vpp = 1``, a stated
      ``interleaved`` needs ``vpp > 1``);
    * ``micro_batch`` in 1, 2, 4, 8 dividing ``global_batch / dp``;
    * ``sequence_parallel``: on whenever ``tp > 1`` (it only saves memory), off for ``tp = 1``;
    * ``recompute`` in none, selective, full; selective only with ``attention: standard`` (with
      a flash kernel the scores are never stored, so selective is the same plan as none);
    * ``zero_stage`` in 0, 1, and 3 when ``pp = 1``; only 0 when ``dp = 1`` (sharding over one
      replica changes nothing);
    * ``placement`` (rank order, innermost first) in ``tp,dp,pp`` (Megatron-LM's default: data-
      parallel peers close, pipeline stages far apart) and ``tp,pp,dp`` (pipeline neighbours
      close); only the first when ``pp = 1`` or ``dp = 1``, where both give the same GPUs.

    Kept from the scenario (``KEPT_FIELDS``, written or default): every other plan field
    (``global_batch``, ``precision``, the bucket size, the overlap options, ``attention``).

    Plans the simulator refuses (:func:`check_plan`, :class:`ParallelPlan`'s checks,
    e.g. ``tp_overlap: full`` without sequence parallelism) are left out. Memory is not
    checked here (see :func:`plan_search`).
    """
    fleet = fleet or resolve_fleet(scenario)
    space = _Space(scenario, fleet, stated_constraints(scenario) if constraints is None else dict(constraints))
    plans: list[ParallelPlan] = []
    seen: set[ParallelPlan] = set()
    for fields in space.fields():
        try:
            plan = ParallelPlan(**fields, **space.kept)
            check_plan(plan, fleet.model, n_gpus=scenario.gpus, gpus_per_node=fleet.topology.gpus_per_node)
        except (ValidationError, PlanError):
            continue
        if plan not in seen:
            seen.add(plan)
            plans.append(plan)
    return plans


class _Space:
    """The choices of each searched field for one scenario, nested as the enumeration runs them."""

    def __init__(self, scenario: Scenario, fleet: Fleet, constraints: dict[str, Any]):
        self.c = constraints
        self.model, self.gpus, self.gpn = fleet.model, scenario.gpus, fleet.topology.gpus_per_node
        spec = scenario.plan
        self.global_batch, self.attention = spec.global_batch, spec.attention
        self.kept = {name: spec.plan_value(name) for name in KEPT_FIELDS}

    def pick(self, name: str, options: Iterable[Any]) -> list[Any]:
        return [self.c[name]] if name in self.c else list(options)

    def fields(self) -> Iterator[dict[str, Any]]:
        """The searched fields of every plan to try, in enumeration order."""
        for tp, cp, pp, dp in self.sizes():
            for mb in self.pick("micro_batch", MICRO_BATCH_CHOICES):
                if (self.global_batch // dp) % mb:
                    continue
                for vpp, schedule in self.pipelines(pp, self.global_batch // (dp * mb)):
                    sp = self.c.get("sequence_parallel", tp > 1)
                    if sp_splits_sequence(self.model.seq_len, cp, tp, sp) is not None:
                        continue
                    for rc, z, order in self.memory_savers(pp, dp):
                        yield dict(tp=tp, cp=cp, pp=pp, dp=dp, vpp=vpp, micro_batch=mb, schedule=schedule,
                                   sequence_parallel=sp, recompute=rc, zero_stage=z, placement=order)

    def sizes(self) -> Iterator[tuple[int, int, int, int]]:
        """(tp, cp, pp, dp) filling the fleet, with whole micro-batches per replica possible."""
        s = self.model.seq_len
        tps = tp_choices(self.model, self.gpn, self.pick("tp", _divisors(self.gpn)))
        cps = self.pick("cp", [cp for cp in CP_CHOICES if cp == 1 or (
            s % (2 * cp) == 0 and s // cp >= MIN_TOKENS_PER_CP_RANK and self.attention == "flash")])
        for tp, cp in itertools.product(tps, cps):
            for pp in self.pick("pp", pp_choices(self.model)):
                if fleet_filled(tp, cp, pp, None, self.gpus) is not None:
                    continue
                dp = self.gpus // (tp * cp * pp)
                if ("dp" in self.c and self.c["dp"] != dp) or batch_splits(self.global_batch, dp, 1) is not None:
                    continue
                yield tp, cp, pp, dp

    def pipelines(self, pp: int, n_microbatches: int) -> Iterator[tuple[int, str]]:
        """(vpp, schedule): even splits of the layers; interleaving with pp > 1 and micro-batches in groups of pp."""
        stated = self.c.get("schedule")
        for vpp in self.pick("vpp", VPP_CHOICES):
            if self.model.n_layers % (pp * vpp) or (vpp > 1 and (pp == 1 or n_microbatches % pp)):
                continue
            schedule = stated or ("interleaved" if vpp > 1 else "1f1b")
            if (schedule == "interleaved") == (vpp > 1):
                yield vpp, schedule

    def memory_savers(self, pp: int, dp: int) -> Iterator[tuple[str, int, tuple[str, ...]]]:
        """(recompute, zero_stage, placement); see :func:`candidate_plans`."""
        placements = [tuple(self.c["placement"])] if "placement" in self.c else list(PLACEMENT_CHOICES)
        # with a flash kernel selective recomputation changes nothing (the scores are never stored)
        recomputes = [r for r in RECOMPUTE_CHOICES if not (r == "selective" and self.attention == "flash")]
        zeros = ((0, 1, 3) if pp == 1 else (0, 1)) if dp > 1 else (0,)
        for rc in self.pick("recompute", recomputes):
            for z, order in itertools.product(self.pick("zero_stage", zeros),
                                              placements if pp > 1 and dp > 1 else placements[:1]):
                yield rc, z, order
