"""What the plan search optimises and what a plan costs: the objectives, their units and values,
GPU-hour prices, the hours and USD of a training run, the energy of the GPUs a plan leaves idle.
:mod:`simulator.studies.planner` ranks with them (and re-exports the public names)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from simulator.core.errors import InputError
from simulator.inputs.resolve import Fleet
from simulator.workload.plan import ParallelPlan

OBJECTIVES = ("throughput", "energy", "cost", "time-to-train")

def objective_unit(objective: str) -> str:
    return {"throughput": "tokens/s", "energy": "J/token", "cost": "USD/Mtoken", "time-to-train": "hours"}[objective]


Price = float | Mapping[str, float] | None
"""USD per GPU-hour: one price, or one per GPU type (catalog name -> price)."""


def check_objective(objective: str, gpu_hour_usd: Price, tokens: float | None,
                    budget_usd: float | None = None) -> None:
    """Raise :class:`InputError` for an unknown objective, or one (or a budget) missing its price
    or token count, or a price that is not positive."""
    prices = gpu_hour_usd.values() if isinstance(gpu_hour_usd, Mapping) else [gpu_hour_usd]
    if gpu_hour_usd is not None and not all(_positive(p) for p in prices):
        raise InputError(f"{gpu_hour_usd!r}: a GPU-hour price is a finite number > 0", field="--gpu-hour-usd")
    if tokens is not None and not _positive(tokens):
        raise InputError(f"{tokens!r} is not a token count; give a finite number > 0", field="--tokens")
    if budget_usd is not None and not _positive(budget_usd):
        raise InputError(f"{budget_usd!r} is not a budget; give a finite number of USD > 0", field="--budget-usd")
    if budget_usd is not None and (not gpu_hour_usd or not tokens):
        raise InputError("a budget (> 0) needs the price of a GPU-hour and the training tokens: "
                         "--budget-usd B --gpu-hour-usd X --tokens N", field="--budget-usd")
    if objective not in OBJECTIVES:
        raise InputError(f"unknown objective {objective!r}; use one of {', '.join(OBJECTIVES)}", field="--objective")
    if objective == "cost" and not gpu_hour_usd:
        raise InputError("the cost objective needs the price of a GPU-hour: --gpu-hour-usd X (X > 0)",
                         field="--gpu-hour-usd")
    if objective == "time-to-train" and (tokens is None or tokens <= 0):
        raise InputError("the time-to-train objective needs the number of training tokens: --tokens N (N > 0)",
                         field="--tokens")


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def objective_value(objective: str, *, step_time_s: float, tokens_per_step: float, n_gpus: int,
                    energy_per_step_J: float, gpu_hour_usd: float | None = None,
                    tokens: float | None = None) -> float:
    """The objective in its unit (``objective_unit``): tokens/s; J/token; USD per million tokens
    (``gpu_hour_usd x n_gpus x step / 3600 / tokens_per_step x 1e6``); hours to train ``tokens``."""
    if objective == "throughput":
        return tokens_per_step / step_time_s
    if objective == "energy":
        return energy_per_step_J / tokens_per_step
    if objective == "cost":
        return gpu_hour_usd * n_gpus * step_time_s / 3600 / tokens_per_step * 1e6
    if objective == "time-to-train":
        return tokens / (tokens_per_step / step_time_s) / 3600
    raise InputError(f"unknown objective {objective!r}", field="--objective")


def _sort_key(objective: str) -> Callable[[float], float]:
    return (lambda v: -v) if objective == "throughput" else (lambda v: v)


def idle_energy_J(fleet: Fleet, plan: ParallelPlan, booked: int, step_s: float) -> float:
    """Facility energy of the ``booked - plan.n_gpus`` GPUs a plan leaves idle for one step: their
    idle power and their share of the node power (the plan's fleet's node power per GPU), times
    the PUE. Switches of the idle nodes are not counted."""
    idle = booked - plan.n_gpus
    if idle <= 0:
        return 0.0
    per_gpu_W = fleet.device.idle_W + fleet.topology.power.nodes_W / plan.n_gpus
    return idle * per_gpu_W * step_s * fleet.scenario.energy.pue


def _price(gpu_hour_usd: Price, device: Any) -> float | None:
    """The GPU-hour price of ``device``: the single price, or the entry under its catalog name or
    an alias, case-insensitive (an error naming the GPU if there is none)."""
    if not isinstance(gpu_hour_usd, Mapping):
        return gpu_hour_usd
    names = {n.lower() for n in (device.name, *device.aliases)}
    for key, value in gpu_hour_usd.items():
        if key.lower() in names:
            return float(value)
    raise InputError(f"no GPU-hour price for {device.name}; give one per GPU type searched, e.g. "
                     f"{device.name}=2.5 (have: {', '.join(gpu_hour_usd) or 'none'})", field="--gpu-hour-usd")


BUDGET_MARGIN = 1.2
"""The first pass keeps plans estimated at up to this multiple of the budget (its error is < 15 %;
fill-dominated 1F1B pipelines, overestimated by up to 30 %, may be dropped though they fit)."""


def _training(step_time_s: float, tokens_per_step: float, n_gpus: int, gpu_hour_usd: float | None,
              tokens: float | None) -> tuple[float | None, float | None]:
    """Hours to train on ``tokens`` tokens, and their cost at ``gpu_hour_usd`` per GPU-hour (None if not given)."""
    if not tokens:
        return None, None
    hours = tokens / tokens_per_step * step_time_s / 3600
    return hours, (gpu_hour_usd * n_gpus * hours if gpu_hour_usd else None)
