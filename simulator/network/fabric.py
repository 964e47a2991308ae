"""The network as the step engine sees it: something that runs collective plans in simulated time.

:class:`Fabric` is the interface the engine (:mod:`simulator.system.engine`) uses; times are
seconds of simulated time. Two implementations:

* :class:`~simulator.network.flows.FlowNetwork` (:func:`flow_fabric`, the default): concurrent
  transfers share link bandwidth max-min fairly, so a collective can take longer than alone.
* :class:`ClosedFormFabric` (:func:`closed_form_fabric`): every collective takes
  ``plan.standalone_time_s()``, its time alone on the network, however many others run
  at the same time (no contention). Never slower than the flow network; equal to it when no two
  transfers overlap.

A plan carries its own time (NCCL's, corrected by the network efficiency it was planned with,
:mod:`simulator.network.collectives`), so a fabric takes plans only.
A :data:`FabricFactory` makes a fabric for one simulation run (one SimPy environment).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, Protocol

import simpy

from simulator.network.collectives import CollectivePlan
from simulator.network.flows import FlowNetwork
from simulator.network.topology import Topology


class Fabric(Protocol):
    """Runs collective plans (their phases one after another) in a SimPy environment."""

    def collective(self, plan: CollectivePlan, on_done: Callable[[], None] | None = None) -> simpy.Event | None:
        """Start ``plan`` now. Without ``on_done``: returns the event of its completion. With it:
        calls ``on_done()`` when the plan completes and returns ``None``."""
        ...

    def run(self, plan: CollectivePlan) -> Generator[simpy.Event, Any, None]:
        """Process body running ``plan`` (``yield from fabric.run(plan)`` inside a process)."""
        ...


FabricFactory = Callable[[simpy.Environment, Topology], Fabric]
"""Makes the fabric of one run from its environment and the topology the plans' link ids refer to."""


class ClosedFormFabric:
    """Every collective takes its standalone time, ``plan.standalone_time_s()`` seconds."""

    def __init__(self, env: simpy.Environment):
        self.env = env

    def collective(self, plan: CollectivePlan, on_done: Callable[[], None] | None = None) -> simpy.Event | None:
        done = self.env.timeout(plan.standalone_time_s())
        if on_done is None:
            return done
        done.callbacks.append(lambda _event: on_done())
        return None

    def run(self, plan: CollectivePlan) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(plan.standalone_time_s())


def flow_fabric(env: simpy.Environment, topology: Topology) -> FlowNetwork:
    """Link sharing over the topology's links at their nominal bandwidth (no per-flow records kept)."""
    return FlowNetwork(env, topology.bandwidth_Bps, keep_records=False)


def closed_form_fabric(env: simpy.Environment, topology: Topology) -> ClosedFormFabric:
    """Collectives at their standalone times (the topology is in the plans already)."""
    return ClosedFormFabric(env)
