"""The plan space: every parallel plan the planner may try for a model on a fleet.

The fields a scenario states stay fixed (:func:`stated_constraints`), the others are searched
over the choices below; a plan enters the space only if it follows every rule of
:mod:`simulator.workload.legality` (the cheap ones are asked before a plan is built, to prune
the enumeration; :func:`~simulator.workload.plan.check_plan` asks them all).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import ValidationError

from simulator.core.errors import InputError, PlanError
from simulator.inputs.resolve import Fleet, resolve_fleet
from simulator.inputs.scenario import Scenario
from simulator.workload.legality import (
    enough_layers,
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
    """Pipeline sizes that divide the layers evenly (validation's guesses for published rows)."""
    return _divisors(model.n_layers)


def pipeline_sizes(model: ModelConfig) -> list[int]:
    """Pipeline sizes the planner searches: every pp from 1 to the layer count. When pp does not
    divide the layers the split is Megatron-LM's uneven one (:meth:`ParallelPlan.layers`: the
    first and last stages one layer lighter), e.g. BLOOM's 70 layers on 12 stages, Llama 3.1
    405B's 126 on 16."""
    return list(range(1, model.n_layers + 1))


BATCH_SUFFIXES = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}
"""Multipliers of ``--global-batch`` and ``--tokens-per-step`` values (binary: Llama 3's "4M tokens"
per step are 1,024 sequences of 4,096 tokens = 4 x 2^20)."""


def parse_range(text: str, option: str) -> tuple[int, int]:
    """``"1024..4096"``, ``"4M..16M"`` or one value ``"2048"`` as ``(lo, hi)``: whole numbers >= 1 with
    an optional K, M or G suffix (powers of 1,024), ``lo <= hi``. Raises :class:`InputError`
    naming ``option`` otherwise."""
    parts = str(text).strip().split("..")
    allowed = (f"give N or LO..HI, whole numbers >= 1 with an optional K, M or G suffix (x 1024, 1024^2, 1024^3), "
               f"LO <= HI, e.g. {'4M..16M' if 'token' in option else '1024..4096'}")
    values = []
    for part in parts if len(parts) <= 2 else ():
        part = part.strip().upper()
        number, suffix = (part[:-1], part[-1]) if part[-1:] in BATCH_SUFFIXES and part[-1:] else (part, "")
        if not number.isdigit() or int(number) < 1:
            break
        values.append(int(number) * BATCH_SUFFIXES[suffix])
    if not values or len(values) != len(parts) or values[0] > values[-1] or values[-1] > MAX_BATCH_TOKENS:
        raise InputError(f"{text!r} is not a range; {allowed}", field=option)
    return values[0], values[-1]


MAX_BATCH_TOKENS = 2**40
"""Largest value :func:`parse_range` takes (a sanity bound: 2^24 sequences of 2^16 tokens)."""


def batch_choices(lo: int, hi: int, step: int) -> list[int]:
    """Global batches tried in ``lo..hi`` for plans whose ``dp x micro_batch`` (x pp when interleaved)
    is ``step``: the largest multiple of ``step`` in the range (fewest bubbles and gradient
    reductions per token, so the fastest per token) and the smallest (the batch closest to the low
    end); none when no multiple falls in the range."""
    top = hi // step * step
    if top < lo:
        return []
    bottom = -(-lo // step) * step
    return [top] if bottom == top else [top, bottom]


SMALLER_FLEET_SHARE = 0.9
"""Plans on fewer GPUs than the fleet use at least this share of it."""
MAX_SMALLER_FLEETS = 3
"""At most this many GPU counts below the fleet are searched."""


def smaller_fleets(scenario: Scenario, fleet: Fleet, batch_range: tuple[int, int] | None = None,
                   constraints: dict[str, Any] | None = None) -> list[int]:
    """GPU counts below the fleet to search as well (whole nodes; the rest of the fleet idles).

    Rule: going down from the fleet one node at a time to ``SMALLER_FLEET_SHARE`` (90 %) of it, a
    count is kept when it allows more model-parallel shapes (``tp, cp, pp`` with a ``dp`` that
    fills it and splits a global batch of the range; :meth:`_Space.sizes`) than the fleet and every
    larger count kept, at most ``MAX_SMALLER_FLEETS`` (3) of them: each is the largest count with
    that many shapes. E.g. 5,128 A100 (641 nodes, a prime: only pp = 1) gives 5,120 (TP 8 PP 8
    DP 80, ...) first. None when the fleet is one node or less, or ``dp`` is stated."""
    gpn = fleet.topology.gpus_per_node
    c = stated_constraints(scenario) if constraints is None else dict(constraints)
    if scenario.gpus <= gpn or "dp" in c:
        return []

    def shapes(n: int) -> int:
        return len({s[:3] for s in _Space(scenario, fleet, c, batch_range, n_gpus=n).sizes()})

    best, kept = shapes(scenario.gpus), []
    nodes = scenario.gpus // gpn
    for k in range(nodes - 1, max(0, math.ceil(SMALLER_FLEET_SHARE * nodes)) - 1, -1):
        n = shapes(k * gpn)
        if n > best:
            best = n
            kept.append(k * gpn)
            if len(kept) == MAX_SMALLER_FLEETS:
                break
    return kept


def candidate_plans(scenario: Scenario, constraints: dict[str, Any] | None = None, *,
                    fleet: Fleet | None = None, batch_range: tuple[int, int] | None = None) -> list[ParallelPlan]:
    """Every valid plan of ``scenario``'s model on its fleet.

    Searched (unless fixed by ``constraints``; default :func:`stated_constraints`, i.e. the
    fields the scenario's ``plan:`` writes):

    * ``tp``: divisors of the GPUs per node that divide the query heads, and that divide the
      kv heads or are a multiple of them;
    * ``cp`` in 1, 2, 4, 8, 16 with ``seq_len`` divisible by ``2 cp`` and at least
      ``MIN_TOKENS_PER_CP_RANK`` (8,192) tokens per rank (so 1 only, for sequences under 16K);
      ``cp > 1`` only with flash attention;
    * ``pp``: every size from 1 to the layer count (:func:`pipeline_sizes`; uneven splits as
      :meth:`ParallelPlan.layers`) with ``tp x cp x pp`` dividing the fleet;
      ``dp = gpus / (tp x cp x pp)`` (a stated ``dp`` fixes ``tp x cp x pp``);
    * ``vpp`` in 1, 2, 3, 4, 5, 6, 8 with at least one layer per virtual stage
      (``pp x vpp <= layers``; uneven virtual stages as :meth:`ParallelPlan.layers`); ``vpp > 1``
      only with ``pp > 1`` and micro-batches a multiple of ``pp``; ``schedule`` follows (interleaved for
      ``vpp > 1``, else 1F1B; a stated ``gpipe``/``1f1b`` fixes ``vpp = 1``, a stated
      ``interleaved`` needs ``vpp > 1``);
    * ``micro_batch`` in 1, 2, 4, 8 dividing ``global_batch / dp``;
    * ``global_batch``: the scenario's, or with ``batch_range = (lo, hi)`` (sequences) the batches of
      :func:`batch_choices` for each plan (the largest and smallest in the range that its
      ``dp x micro_batch``, x ``pp`` when interleaved, divides);
    * ``sequence_parallel``: on whenever ``tp > 1`` (it only saves memory), off for ``tp = 1``;
    * ``recompute`` in none, selective, full; selective only with ``attention: standard`` (with
      a flash kernel the scores are never stored, so selective is the same plan as none);
    * ``zero_stage`` in 0, 1, and 3 when ``pp = 1``; only 0 when ``dp = 1`` (sharding over one
      replica changes nothing);
    * ``placement`` (rank order, innermost first) in ``tp,dp,pp`` (Megatron-LM's default: data-
      parallel peers close, pipeline stages far apart) and ``tp,pp,dp`` (pipeline neighbours
      close); only the first when ``pp = 1`` or ``dp = 1``, where both give the same GPUs.

    Kept from the scenario (``KEPT_FIELDS``, written or default): every other plan field
    (``global_batch`` unless ``batch_range`` is given, ``precision``, the bucket size, the overlap options, ``attention``).

    Plans the simulator refuses (:func:`check_plan`, :class:`ParallelPlan`'s checks,
    e.g. ``tp_overlap: full`` without sequence parallelism) are left out. Memory is not
    checked here (see :func:`plan_search`).
    """
    fleet = fleet or resolve_fleet(scenario)
    space = _Space(scenario, fleet, stated_constraints(scenario) if constraints is None else dict(constraints),
                   batch_range)
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

    def __init__(self, scenario: Scenario, fleet: Fleet, constraints: dict[str, Any],
                 batch_range: tuple[int, int] | None = None, n_gpus: int | None = None):
        self.c = constraints
        self.model, self.gpn = fleet.model, fleet.topology.gpus_per_node
        self.gpus = scenario.gpus if n_gpus is None else n_gpus
        spec = scenario.plan
        self.attention = spec.attention
        self.batch_range = batch_range or (spec.global_batch, spec.global_batch)
        self.kept = {name: spec.plan_value(name) for name in KEPT_FIELDS if name != "global_batch"}

    def batches(self, step: int) -> list[int]:
        return batch_choices(*self.batch_range, step)

    def pick(self, name: str, options: Iterable[Any]) -> list[Any]:
        return [self.c[name]] if name in self.c else list(options)

    def fields(self) -> Iterator[dict[str, Any]]:
        """The searched fields of every plan to try, in enumeration order."""
        for tp, cp, pp, dp in self.sizes():
            sp = self.c.get("sequence_parallel", tp > 1)
            if sp_splits_sequence(self.model.seq_len, cp, tp, sp) is not None:
                continue
            for mb in self.pick("micro_batch", MICRO_BATCH_CHOICES):
                for vpp, schedule in self.pipelines(pp):
                    for gb in self.batches(dp * mb * (pp if vpp > 1 else 1)):
                        for rc, z, order in self.memory_savers(pp, dp):
                            yield dict(tp=tp, cp=cp, pp=pp, dp=dp, vpp=vpp, micro_batch=mb, schedule=schedule,
                                       sequence_parallel=sp, recompute=rc, zero_stage=z, placement=order,
                                       global_batch=gb)

    def sizes(self) -> Iterator[tuple[int, int, int, int]]:
        """(tp, cp, pp, dp) filling the fleet, with whole micro-batches per replica possible."""
        s = self.model.seq_len
        tps = tp_choices(self.model, self.gpn, self.pick("tp", _divisors(self.gpn)))
        cps = self.pick("cp", [cp for cp in CP_CHOICES if cp == 1 or (
            s % (2 * cp) == 0 and s // cp >= MIN_TOKENS_PER_CP_RANK and self.attention == "flash")])
        for tp, cp in itertools.product(tps, cps):
            for pp in self.pick("pp", pipeline_sizes(self.model)):
                if fleet_filled(tp, cp, pp, None, self.gpus) is not None:
                    continue
                dp = self.gpus // (tp * cp * pp)
                if ("dp" in self.c and self.c["dp"] != dp) or not self.batches(dp):
                    continue
                yield tp, cp, pp, dp

    def pipelines(self, pp: int) -> Iterator[tuple[int, str]]:
        """(vpp, schedule): at least one layer per virtual stage; interleaving with pp > 1 (the
        micro-batches in groups of pp: the batch is chosen for it)."""
        stated = self.c.get("schedule")
        for vpp in self.pick("vpp", VPP_CHOICES):
            if enough_layers(self.model.n_layers, pp * vpp) is not None or (vpp > 1 and pp == 1):
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
