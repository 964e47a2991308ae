"""The data-parallel stream of each pipeline stage: a queue of gradient buckets, reduced one by one.

One stream per stage, shared by all simulated replicas (in representative mode one flow per
bucket carries the whole class of replicas). During the last backward pass of a model chunk
its gradient buckets become ready one by one, ``seg_s`` seconds apart (all at once after the
passes without ``overlap_grad_reduce``); the replica mode says when each is released to the
stream (:meth:`~simulator.system.engine.replicas.Full.bucket_releases`). The stream starts a
bucket at its release time, or when the bucket before it is done. When all the stage's buckets
are reduced, :attr:`GradientStreams.done` of the stage fires. Times are seconds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from typing import Any

import simpy

from simulator.network.collectives import CollectivePlan
from simulator.system.engine.events import GradientBucket, describe_collective
from simulator.system.engine.state import StepState


class GradientStreams:
    """The bucket queues and reduction processes of all stages of one run."""

    def __init__(self, state: StepState):
        self.state = state
        sp = state.sp
        pp, vpp = sp.plan.pp, sp.plan.vpp
        self.n_buckets = [sum(len(sp.chunks[c * pp + i].grad_buckets) for c in range(vpp)) for i in range(pp)]
        self._queue: list[deque[tuple[float, CollectivePlan, int]]] = [deque() for _ in range(pp)]
        self._wake: list[simpy.Event | None] = [None] * pp  # an idle stream waits on it for the next bucket
        self.done = [state.env.event() for _ in range(pp)]
        self.first_release_s: dict[int, float] = {}  # stage -> earliest release of one of its buckets
        self.own_first_ready_s: dict[tuple[int, int], float] = {}  # (replica, stage) -> its first bucket ready

    def start(self) -> None:
        """Start the streams of the stages that have buckets, in stage order."""
        for i, n in enumerate(self.n_buckets):
            if n:
                self.state.env.process(self._stream(i))
            else:
                self.done[i].succeed()

    def issue(self, r: int, i: int, chunk: int, seg_s: float) -> None:
        """Replica ``r``'s stage ``i`` has the first gradient bucket of ``chunk`` ready now and the
        others one every ``seg_s`` seconds after it: queue those the replica mode releases."""
        state = self.state
        now = state.env.now
        if (r, i) not in self.own_first_ready_s:
            self.own_first_ready_s[(r, i)] = now
        buckets = state.sp.chunks[chunk * state.sp.plan.pp + i].grad_buckets
        first = self.first_release_s
        for k, release in state.replicas.bucket_releases(r, i, chunk, len(buckets), seg_s, now):
            first[i] = min(first.get(i, release), release)
            self._enqueue(i, release, buckets[k], chunk)

    def _enqueue(self, i: int, ready_s: float, bucket: CollectivePlan, chunk: int) -> None:
        self._queue[i].append((ready_s, bucket, chunk))
        wake = self._wake[i]
        if wake is not None:
            self._wake[i] = None
            wake.succeed()

    def _stream(self, i: int) -> Generator[simpy.Event, Any, None]:
        """Process body: reduce stage ``i``'s buckets in queue order."""
        state = self.state
        env, fabric, record = state.env, state.fabric, state.record
        queue = self._queue[i]
        for k in range(self.n_buckets[i]):
            if not queue:
                wake = self._wake[i] = env.event()
                yield wake
            ready, bucket, chunk = queue.popleft()
            if ready > env.now:
                yield env.timeout(ready - env.now)
            t0 = env.now
            if len(bucket.phases) == 1:
                yield fabric.collective(bucket)
            else:  # the phases one after another, in this process
                yield from fabric.run(bucket)
            state.comm_s["dp"] += env.now - t0
            if record is not None:
                record(GradientBucket(0, i, t0, env.now, bytes=bucket.bytes, collective=describe_collective(bucket),
                                      bucket=k, chunk=chunk))
        self.done[i].succeed()
