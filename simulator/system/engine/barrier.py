"""Barrier collectives: a collective that starts once all its participants have arrived.

Used for the ZeRO 1-2 parameter all-gather after the optimizer (every replica of a stage) and
the tied-embedding gradient all-reduce (the first and last stage of every replica). A
participant's wait is split into the time it waited for late peers (stall among replicas, or,
across stages, pipeline waiting: bubble or stall, split as any pipeline wait) and the exposed
data-parallel communication after the last arrival. Times are seconds.
"""

from __future__ import annotations

from collections.abc import Generator, Hashable
from typing import Any

import simpy

from simulator.network.collectives import CollectivePlan
from simulator.system.engine.events import (
    DataParallelCollective,
    Wait,
    describe_collective,
)
from simulator.system.engine.state import StepState


class Barrier:
    """The open barrier collectives of one run, by key."""

    def __init__(self, state: StepState):
        self.state = state
        self._open: dict[Hashable, tuple[list[float], simpy.Event]] = {}  # key -> (arrival times, completion)

    def sync(self, key: Hashable, n_arrivals: int, plan: CollectivePlan, collective: type[DataParallelCollective],
             wait: type[Wait], r: int, i: int, across_stages: bool = False) -> Generator[simpy.Event, Any, None]:
        """Process body: (replica ``r``, stage ``i``) takes part in the barrier collective ``key``
        of ``n_arrivals`` participants and books its wait (see module docstring)."""
        state = self.state
        env = state.env
        t_w = env.now
        done, arrivals = self._arrive(key, n_arrivals, plan, collective, i)
        state.pending[(r, i)] = f"waiting for {collective.name}"
        yield done
        waited = env.now - t_w
        if state.record is not None and waited > 0:
            state.record(wait(r, i, t_w, env.now))
        late = min(waited, max(arrivals) - t_w)
        account = state.accounts[(r, i)]
        if across_stages:
            account.pp_wait_s += late
        else:
            account.seconds["stall"] += late
        account.seconds["dp_comm"] += waited - late

    def _arrive(self, key: Hashable, n_arrivals: int, plan: CollectivePlan, collective: type[DataParallelCollective],
                stage: int) -> tuple[simpy.Event, list[float]]:
        """Arrive now; the last participant starts the collective. Returns (the event of its
        completion, the arrival times so far)."""
        state = self.state
        env = state.env
        arrivals, done = self._open.setdefault(key, ([], env.event()))
        arrivals.append(env.now)
        if len(arrivals) == n_arrivals:
            t_start = env.now

            def finished(_event: simpy.Event) -> None:
                state.comm_s["dp"] += env.now - t_start
                if state.record is not None:
                    state.record(collective(0, stage, t_start, env.now, bytes=plan.bytes,
                                            collective=describe_collective(plan)))
                done.succeed()

            state.fabric.collective(plan).callbacks.append(finished)
        return done, arrivals
