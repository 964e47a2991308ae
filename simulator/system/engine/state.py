"""The shared state of one simulated step, handed to every piece of the engine.

Times are seconds of simulated time from the start of the step. A (replica, stage) pair names
the TP x CP group of one pipeline stage of one data-parallel replica; its :class:`RankAccount`
holds the seconds its ranks spent per breakdown category, averaged over the ranks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import simpy

from simulator.network.fabric import Fabric
from simulator.system.engine.events import TimelineEvent
from simulator.system.engine.replicas import ReplicaMode
from simulator.system.variability import Jitter
from simulator.system.workplan import StepPlan
from simulator.workload.schedules import Action


@dataclass
class RankAccount:
    """Seconds one (replica, stage) TP x CP group spent per category, averaged over its ranks.

    ``pp_wait_s`` is the waiting for other stages, split into bubble and stall once the step is
    over; ``finish_s`` is when the group finished its step.
    """

    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    pp_wait_s: float = 0.0
    finish_s: float = 0.0


@dataclass(eq=False, slots=True)
class StepState:
    """Everything the stage processes, the data-parallel streams and the barrier share in one run."""

    env: simpy.Environment
    sp: StepPlan
    fabric: Fabric
    replicas: ReplicaMode
    jitter: Jitter
    deterministic: bool  # no compute jitter: every draw would be 1
    record: Callable[[TimelineEvent], None] | None  # appends to the timeline; None: no timeline kept
    accounts: dict[tuple[int, int], RankAccount]  # (replica, stage) -> account, replicas outer
    comm_s: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    """Time on the wire of pipeline ("pp") and data-parallel ("dp") transfers, summed."""
    pending: dict[tuple[int, int], Action | str] = field(default_factory=dict)
    """What each (replica, stage) waits for right now, for the deadlock report."""
    n_events: int = 0  # compute passes run
