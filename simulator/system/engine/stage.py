"""The process of one pipeline stage of one replica: its schedule, then the end of its step.

The stage runs its schedule's actions (forward and backward passes) in order. A pass waits
until its input is there (the previous virtual stage's activation, or the next one's gradient;
the last virtual stage's backward needs only its own forward), computes for its duration, then
sends its output. During the last backward pass of each model chunk its gradient buckets become
ready one by one (with ``overlap_grad_reduce``; otherwise all after the passes). Then the stage
waits for its data-parallel gradient reduction, the tied-embedding sync (first and last stage),
runs the optimizer and, with ZeRO 1-2, gathers the updated parameters.

That last backward pass is longer by ``ChunkWork.dp_overlap_s``: its compute is slowed while the
buckets' NCCL kernels run beside it (booked as backward compute). With a blocking pipeline
engine (``StepPlan.blocking_p2p``, DeepSpeed's PipelineEngine) a stage waits for each of its sends
to arrive before its next pass (booked as exposed PP communication); otherwise sends run beside
the next passes.

A pass's duration is ``compute_s * f_max + comm_s``: ``f_max`` is the factor of the slowest
member of the TP x CP group (fixed slowdown times jitter), which everyone waits for; the mean
member factor ``f_own`` is the group's own compute time, the rest is stall. Where waiting goes:
a pipeline wait is waiting for other stages up to the moment the awaited transfer was sent, and
exposed PP communication from then on; at the gradient reduction, stall up to how late the last
replica released the stage's buckets, exposed DP communication after. Times are seconds.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import simpy

from simulator.system.breakdown import PASS_COMPUTE
from simulator.system.engine.barrier import Barrier
from simulator.system.engine.dp_stream import GradientStreams
from simulator.system.engine.events import (
    ComputePass,
    EmbeddingSync,
    EmbeddingSyncWait,
    GradientReductionWait,
    OptimizerStep,
    ParameterGather,
    ParameterGatherWait,
    PipelineWait,
)
from simulator.system.engine.pipeline import PipelineTransfers
from simulator.system.engine.state import StepState
from simulator.workload.schedules import Action

Process = Generator[simpy.Event, Any, Any]


class StageProcess:
    """Replica ``r``'s pipeline stage ``i`` (see module docstring); :meth:`run` is the process body."""

    def __init__(self, state: StepState, transfers: PipelineTransfers, streams: GradientStreams, barrier: Barrier,
                 r: int, i: int):
        self.state, self.transfers, self.streams, self.barrier = state, transfers, streams, barrier
        self.r, self.i = r, i
        self.account = state.accounts[(r, i)]
        self.members = state.replicas.slowdowns[(r, i)]  # fixed slowdown of every TP x CP member
        self.fixed = float(self.members.max())  # slowdown of the slowest member
        self.healthy = self.fixed == 1.0 and state.deterministic

    def run(self) -> Process:
        """Process body of the stage's whole step."""
        state, i, r = self.state, self.i, self.r
        sp, env = state.sp, state.env
        yield from self._passes()
        if not sp.plan.overlap_grad_reduce:
            for c in range(sp.plan.vpp):
                if sp.chunks[c * sp.plan.pp + i].grad_buckets:
                    self.streams.issue(r, i, c, 0.0)
        yield from self._wait_for_reduction()
        if sp.embedding_sync is not None and i in (0, sp.plan.pp - 1):
            yield from self.barrier.sync(("embedding_sync",), 2 * len(state.replicas.replicas), sp.embedding_sync,
                                         EmbeddingSync, EmbeddingSyncWait, r, i, across_stages=True)
        yield from self._optimizer()
        gather = sp.param_gather[i]
        if gather is not None:
            yield from self.barrier.sync(("param_gather", i), len(state.replicas.replicas), gather, ParameterGather,
                                         ParameterGatherWait, r, i)
        self.account.finish_s = env.now
        state.pending.pop((r, i), None)

    def _passes(self) -> Process:
        """Process body of the schedule's passes; books their time in the account."""
        state, transfers, streams, r, i = self.state, self.transfers, self.streams, self.r, self.i
        env, sp, record = state.env, state.sp, state.record
        pp = sp.plan.pp
        n_virtual = pp * sp.plan.vpp
        overlap = sp.plan.overlap_grad_reduce
        last_backward = {a.chunk: idx for idx, a in enumerate(sp.actions[i]) if a.kind == "B"}
        members, fixed, healthy = self.members, self.fixed, self.healthy
        own_mean = float(members.mean())
        pass_factors, add_drift = state.replicas.pass_factors, state.replicas.add_drift
        deterministic = state.deterministic
        receive, send, pending = transfers.receive, transfers.send, state.pending
        own = [0.0] * (2 * n_virtual)  # [2 v + is_forward] -> sum of own-time factors
        counts = [0] * (2 * n_virtual)  # [2 v + is_forward] -> passes run
        stall_s = pp_comm_s = pp_wait_s = overlap_slow_s = 0.0
        blocking = sp.blocking_p2p
        for idx, a in enumerate(sp.actions[i]):
            is_f = a.kind == "F"
            v = a.chunk * pp + i
            chunk = sp.chunks[v]
            if (v > 0) if is_f else (v < n_virtual - 1):
                key = (r, a.kind, a.mb, v)
                awaited = receive(key)
                if awaited is not None:  # not there yet: wait for it
                    pending[(r, i)] = a
                    t_w = env.now
                    t_s = yield awaited  # when it was sent
                    now = env.now
                    if record is not None:
                        record(self._pipeline_wait(a, v, t_w, now))
                    pp_wait_s += max(0.0, min(t_s, now) - t_w)
                    pp_comm_s += now - max(t_w, t_s)
            comp = chunk.forward_compute_s if is_f else chunk.backward_compute_s
            comm = chunk.forward_comm_s if is_f else chunk.backward_comm_s
            if healthy:
                f_max = f_own = 1.0
            else:
                f_max, f_own = pass_factors(members, fixed, own_mean)
            if not deterministic:
                add_drift(r, i, comp)
            t0 = env.now
            duration = comp * f_max + comm
            if not is_f and overlap and idx == last_backward[a.chunk] and chunk.grad_buckets:
                # the chunk's gradient buckets become ready one by one during this pass, whose
                # compute their NCCL kernels slow down
                seg = duration / len(chunk.grad_buckets)
                env.timeout(seg).callbacks.append(lambda _e, c=a.chunk, s=seg: streams.issue(r, i, c, s))
                duration += chunk.dp_overlap_s
                overlap_slow_s += chunk.dp_overlap_s
            yield env.timeout(duration)
            own[2 * v + is_f] += f_own
            counts[2 * v + is_f] += 1
            stall_s += comp * (f_max - f_own)
            if record is not None:
                recompute = 0.0 if is_f else chunk.backward.get("recompute", 0.0) * f_max
                record(ComputePass(r, i, t0, env.now, a.kind, a.mb, a.chunk, recompute))
            to = (v + 1 if v < n_virtual - 1 else None) if is_f else (v - 1 if v > 0 else None)
            if to is not None:
                sent = send(r, v, to, a.mb, blocking)
                if sent is not None:  # a blocking engine goes on only when the transfer is done
                    t_b = env.now
                    yield sent
                    pp_comm_s += env.now - t_b
        state.n_events += len(sp.actions[i])
        self._book_passes(own, counts)
        seconds = self.account.seconds
        seconds["stall"] += stall_s
        seconds["pp_comm"] += pp_comm_s
        seconds["backward"] += overlap_slow_s
        self.account.pp_wait_s += pp_wait_s

    def _pipeline_wait(self, a: Action, v: int, t_w: float, now: float) -> PipelineWait:
        """The timeline event of pass ``a`` of virtual stage ``v`` waiting for its input from ``t_w`` to ``now``."""
        pp = self.state.sp.plan.pp
        src = v - 1 if a.kind == "F" else v + 1
        return PipelineWait(self.r, self.i, t_w, now, a.kind, a.mb, a.chunk, from_stage=src % pp, from_chunk=src // pp)

    def _book_passes(self, own: list[float], counts: list[int]) -> None:
        """Add the passes' categories: compute ones scaled by the own-time factors."""
        sp, seconds = self.state.sp, self.account.seconds
        for slot, n_passes in enumerate(counts):
            if n_passes:
                v, is_f = divmod(slot, 2)
                for cat, sec_per in (sp.chunks[v].forward if is_f else sp.chunks[v].backward).items():
                    seconds[cat] += sec_per * (own[slot] if cat in PASS_COMPUTE else n_passes)

    def _wait_for_reduction(self) -> Process:
        """Wait for the stage's data-parallel gradient reduction; book it as stall and DP comm."""
        state, streams, r, i = self.state, self.streams, self.r, self.i
        done = streams.done[i]
        if done.triggered:
            return
        env = state.env
        state.pending[(r, i)] = "waiting for data-parallel gradient reduction"
        t_w = env.now
        yield done
        wait = env.now - t_w
        if state.record is not None:
            state.record(GradientReductionWait(r, i, t_w, env.now))
        late = max(0.0, streams.first_release_s.get(i, t_w) - streams.own_first_ready_s.get((r, i), t_w))
        stall = min(wait, late)
        self.account.seconds["stall"] += stall
        self.account.seconds["dp_comm"] += wait - stall

    def _optimizer(self) -> Process:
        """The optimizer step, slowed by the slowest member's fixed slowdown (the excess is stall)."""
        state, env, i = self.state, self.state.env, self.i
        optimizer_s = state.sp.optimizer_s[i]
        t0 = env.now
        yield env.timeout(optimizer_s * self.fixed)
        self.account.seconds["optimizer"] += optimizer_s
        self.account.seconds["stall"] += optimizer_s * (self.fixed - 1.0)
        if state.record is not None:
            state.record(OptimizerStep(self.r, i, t0, env.now))
