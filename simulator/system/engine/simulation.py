"""One optimizer step of a :class:`~simulator.system.workplan.StepPlan` as SimPy processes.

:class:`StepSimulation` wires the pieces: one :class:`~simulator.system.engine.stage.StageProcess`
per simulated (replica, pipeline stage), one data-parallel stream per stage
(:mod:`~simulator.system.engine.dp_stream`), the pipeline transfers
(:mod:`~simulator.system.engine.pipeline`) and barrier collectives
(:mod:`~simulator.system.engine.barrier`) over a :class:`~simulator.network.fabric.Fabric`, with
the replica mode (:mod:`~simulator.system.engine.replicas`) saying which replicas run.

Where waiting time goes at the end: waiting for other pipeline stages (fill and drain, a
neighbour's output, and at the end of the step the slowest stage) is *pipeline bubble* up to
what the same step without variability waits (a second, deterministic run measures it) and
*synchronisation stall* beyond it. Times are seconds from the start of the step.

SimPy breaks ties between events due at the same time by scheduling order, so the order in
which processes are created and events scheduled is part of the results.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import simpy

from simulator.core.errors import SimulationError
from simulator.network.fabric import FabricFactory, flow_fabric
from simulator.system.engine.barrier import Barrier
from simulator.system.engine.dp_stream import GradientStreams
from simulator.system.engine.events import TimelineEvent
from simulator.system.engine.pipeline import PipelineTransfers
from simulator.system.engine.replicas import MODES, Mode, replica_mode
from simulator.system.engine.stage import StageProcess
from simulator.system.engine.state import RankAccount, StepState
from simulator.system.variability import Jitter, Variability
from simulator.system.workplan import StepPlan
from simulator.workload.schedules import Action


@dataclass
class StepRun:
    """Raw outcome of one simulated step."""

    step_time_s: float
    accounts: dict[tuple[int, int], RankAccount]  # (replica, stage) -> account
    events: list[TimelineEvent]  # in the order they ended (empty without record_timeline)
    comm_s: dict[str, float]  # time on the wire of pipeline ("pp") and data-parallel ("dp") transfers, summed
    n_events: int  # compute passes run
    mode: Mode
    first_bucket_s: dict[int, float] = field(default_factory=dict)  # stage -> when replica 0 issued its first bucket


Progress = Callable[[int, int], None]
"""Called as ``progress(compute passes done, compute passes in all)`` while a step runs."""
PROGRESS_EVERY = 20_000
"""SimPy events between two progress calls."""


@dataclass(frozen=True)
class StepSize:
    """What one simulated step has to run, in events: the cost of simulating it."""

    passes: int  # compute passes of every simulated (replica, stage)
    sends: int  # pipeline transfers
    buckets: int  # data-parallel gradient bucket reductions
    replicas: int  # data-parallel replicas simulated

    @property
    def transfers(self) -> int:
        return self.sends + self.buckets

    @classmethod
    def of(cls, sp: StepPlan, mode: Mode) -> StepSize:
        replicas = sp.plan.dp if mode == "full" else 1
        passes = replicas * sum(len(actions) for actions in sp.actions)
        sends = replicas * (sp.n_virtual - 1) * 2 * sp.plan.n_microbatches
        buckets = sum(len(c.grad_buckets) for c in sp.chunks)  # one class flow per bucket, in either mode
        return cls(passes, sends, buckets, replicas)


class StepSimulation:
    """Runs one step of a :class:`StepPlan` (see module docstring).

    Args:
        sp: the step's work plan.
        variability: jitter and slow GPUs (default: none).
        mode: "representative" or "full" (:mod:`~simulator.system.engine.replicas`).
        record_timeline: keep the typed timeline events (:attr:`StepRun.events`).
        fabric: makes the network of a run (default: the link-sharing flow network).
        progress: told how far the step has got, every :data:`PROGRESS_EVERY` events (default: not).
    """

    def __init__(self, sp: StepPlan, variability: Variability | None = None, mode: Mode = "representative",
                 record_timeline: bool = True, fabric: FabricFactory = flow_fabric, progress: Progress | None = None):
        if mode not in MODES:
            raise ValueError(f"mode must be 'representative' or 'full', got {mode!r}")
        self.sp = sp
        self.var = variability or Variability()
        self.mode = mode
        self.record_timeline = record_timeline
        self.fabric = fabric
        self.progress = progress

    def run(self) -> StepRun:
        """Simulate the step; with variability, also the deterministic baseline for the bubble split."""
        with _cyclic_gc_paused():
            if self.var.is_deterministic and not self.var.slow_gpus and not self.var.slow_nodes:
                return self._run_once(baseline=None)
            baseline = StepSimulation(self.sp, None, self.mode, False, self.fabric)._run_once(baseline=None)
            return self._run_once(baseline=baseline)

    def _run_once(self, baseline: StepRun | None) -> StepRun:
        state, events = self._state(baseline)
        transfers, streams, barrier = PipelineTransfers(state), GradientStreams(state), Barrier(state)
        streams.start()
        pp = self.sp.plan.pp
        procs = [state.env.process(StageProcess(state, transfers, streams, barrier, r, i).run())
                 for r in state.replicas.replicas for i in range(pp)]
        if self.progress is None:
            state.env.run()
        else:
            _run_with_progress(state, StepSize.of(self.sp, self.mode).passes, self.progress)
        _check_finished(state, procs)
        step = max(a.finish_s for a in state.accounts.values())
        _split_pipeline_waits(state.accounts, step, baseline)
        first_bucket = {i: t for (r, i), t in streams.own_first_ready_s.items() if r == 0}
        return StepRun(step, state.accounts, events, dict(state.comm_s), state.n_events, self.mode, first_bucket)

    def _state(self, baseline: StepRun | None) -> tuple[StepState, list[TimelineEvent]]:
        """A fresh environment, network and accounts; the list the timeline events go to."""
        sp = self.sp
        env = simpy.Environment()
        jitter = Jitter(self.var.compute_jitter_cv, np.random.default_rng(self.var.seed))
        fabric = self.fabric(env, sp.topology)
        replicas = replica_mode(self.mode, sp, self.var, jitter, None if baseline is None else baseline.first_bucket_s)
        events: list[TimelineEvent] = []
        accounts = {(r, i): RankAccount() for r in replicas.replicas for i in range(sp.plan.pp)}
        state = StepState(env=env, sp=sp, fabric=fabric, replicas=replicas, jitter=jitter,
                          deterministic=self.var.is_deterministic,
                          record=events.append if self.record_timeline else None, accounts=accounts)
        return state, events


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused while a step runs. A step allocates an event per
    pass and transfer, and each collection scans every live object: with many replicas the scans
    made the cost per event grow with the replicas simulated (full mode). Reference counting still
    frees the events; the cycles left are collected when the collector resumes."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _run_with_progress(state: StepState, total_passes: int, progress: Progress) -> None:
    """``env.run()`` one event at a time (the same events in the same order), reporting progress."""
    step, n = state.env.step, 0
    try:
        while True:
            step()
            n += 1
            if n % PROGRESS_EVERY == 0:
                progress(state.n_events, total_passes)
    except simpy.core.EmptySchedule:
        progress(state.n_events, total_passes)


def _check_finished(state: StepState, procs: list[simpy.Process]) -> None:
    """Raise :class:`SimulationError` naming what was pending if the events ran out before the step's end."""
    unfinished = list(state.pending.items())
    if not unfinished and all(p.triggered for p in procs):
        return
    detail = "; ".join(
        f"replica {r} stage {i}: " + (f"{w.kind} of micro-batch {w.mb}, chunk {w.chunk}, waiting for its input"
                                      if isinstance(w, Action) else w)
        for (r, i), w in unfinished[:8]
    )
    raise SimulationError(f"deadlock: events ran out while work was pending ({detail})")


def _split_pipeline_waits(accounts: dict[tuple[int, int], RankAccount], step_s: float,
                          baseline: StepRun | None) -> None:
    """Book each group's waiting for other stages (and for the last stage to finish) as bubble, up
    to what the deterministic baseline's group waited, and the rest as stall."""
    for (r, i), acct in accounts.items():
        wait = acct.pp_wait_s + step_s - acct.finish_s
        bubble = wait
        if baseline is not None:
            b = baseline.accounts[(0, i)]
            bubble = min(wait, b.pp_wait_s + baseline.step_time_s - b.finish_s)
        acct.seconds["bubble"] += bubble
        acct.seconds["stall"] += wait - bubble
