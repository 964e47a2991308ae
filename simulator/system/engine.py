"""The step simulation: one optimizer step as SimPy processes.

One process per simulated pipeline stage runs its schedule (a list of forward
and backward actions). An action waits until its input is there (the previous
virtual stage's activation, or the next one's gradient), computes for its
duration, then sends its output through the link-sharing network. During the
last backward pass of each model chunk the gradient buckets become ready one by
one and queue on the stage's data-parallel stream; the optimizer runs once all
of the stage's buckets are reduced (ZeRO 1-2 then gather the new parameters).

Two modes (``ARCHITECTURE.md``, "scale by symmetry"):

* ``representative``: one data-parallel replica stands for all. A pipeline
  transfer or gradient reduction is one flow carrying the link load of the whole
  class of identical transfers of all replicas. Variability: a compute event lasts
  as long as the slowest member of the TP x CP group (one order-statistics draw); a
  named slow GPU slows its stage in the representative (for each stage, the
  slowest replica is simulated: exact when the slow GPUs share a replica or a
  stage, an upper bound otherwise); at the first gradient bucket of each stage
  the representative also waits for the latest of the other ``dp - 1``
  replicas, whose accumulated jitter is drawn as a normal order statistic
  (central-limit approximation).
* ``full``: every data-parallel replica runs its own pipeline (every TP rank
  draws its own jitter); gradient buckets wait at a barrier for all replicas.

Without randomness and slow GPUs both modes give exactly the same times.

Where waiting time goes: waiting for other pipeline stages (pipeline fill and
drain, waiting for a neighbour's output, and at the end of the step for the
slowest stage to finish) is *pipeline bubble* up to what the same step without
variability waits (a second, deterministic run measures it) and
*synchronisation stall* beyond it; the part of a wait during
which the awaited transfer was on the wire is *exposed PP communication*. At
the data-parallel sync, the wait is stall up to how late the slowest peer
arrived, and exposed DP communication after.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field

import numpy as np
import simpy

from simulator.core.errors import SimulationError
from simulator.network.collectives import CollectivePlan
from simulator.network.flows import FlowNetwork
from simulator.system.variability import Jitter, Variability, max_of_normals
from simulator.system.workplan import COMPUTE_CATEGORIES, StepPlan
from simulator.workload.schedules import Action

Mode = str  # "representative" | "full"


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """One interval on a rank's timeline (seconds from the start of the step)."""

    replica: int
    stage: int
    name: str  # "F", "B", "optimizer" (compute); "pp_send", "dp_bucket", "param_gather", "embedding_sync"
    # (comm); "wait_pp", "wait_dp", "wait_param_gather", "wait_embedding_sync" (a rank waiting, compute stream)
    microbatch: int  # micro-batch index; for "dp_bucket" the bucket index; -1 when neither applies
    chunk: int  # model chunk (virtual stage // pp); -1 when it does not apply
    start_s: float
    end_s: float
    stream: str = "compute"  # "compute" or "comm"
    bytes: float = 0.0  # communication: buffer per GPU, bytes (nccl-tests convention)
    collective: str = ""  # communication: what ran, e.g. "all_reduce by ring over 8 group(s) of 16 GPUs"
    recompute_s: float = 0.0  # backward passes: the recomputation at their start, seconds


@dataclass
class RankAccount:
    """Seconds one (replica, stage) TP x CP group spent per category, averaged over its ranks."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    pp_wait_s: float = 0.0
    finish_s: float = 0.0


@dataclass
class StepRun:
    """Raw outcome of one simulated step."""

    step_time_s: float
    accounts: dict[tuple[int, int], RankAccount]  # (replica, stage) -> account
    timeline: list[TimelineEvent]
    comm_s: dict[str, float]  # time on the wire of pipeline ("pp") and data-parallel ("dp") transfers, summed
    n_events: int
    mode: Mode
    first_bucket_s: dict[int, float] = field(default_factory=dict)  # stage -> when replica 0 issued its first bucket


def _describe(plan: CollectivePlan) -> str:
    return f"{plan.kind} by {plan.algorithm} over {plan.n_groups} group(s) of {plan.group_size} GPUs"


class StepSimulation:
    """Runs one step of a :class:`StepPlan` (see module docstring)."""

    def __init__(self, sp: StepPlan, variability: Variability | None = None, mode: Mode = "representative",
                 record_timeline: bool = True):
        if mode not in ("representative", "full"):
            raise ValueError(f"mode must be 'representative' or 'full', got {mode!r}")
        self.sp = sp
        self.var = variability or Variability()
        self.mode = mode
        self.record_timeline = record_timeline

    # ---------------------------------------------------------------- public
    def run(self) -> StepRun:
        """Simulate the step; with variability, also the deterministic baseline for the bubble split."""
        if self.var.is_deterministic and not self.var.slow_gpus and not self.var.slow_nodes:
            return self._run_once(baseline=None)
        baseline = StepSimulation(self.sp, None, self.mode, record_timeline=False)._run_once(baseline=None)
        return self._run_once(baseline=baseline)

    # ------------------------------------------------------------- internals
    def _factors(self):
        """Per-(replica, stage) fixed slowdowns of every TP x CP member."""
        sp, plan = self.sp, self.sp.plan
        if not self.var.slow_gpus and not self.var.slow_nodes:  # every GPU at full speed
            healthy = np.ones(plan.width)
            replicas = range(plan.dp) if self.mode == "full" else [0]
            return {(r, i): healthy for r in replicas for i in range(plan.pp)}
        gpn = sp.topology.gpus_per_node
        slow = {}
        for i in range(plan.pp):
            for r in range(plan.dp):
                slow[(r, i)] = np.array([self.var.slowdown(g, gpn) for g in plan.gpu_grid[:, r, i].tolist()])
        if self.mode == "representative":
            return {(0, i): max((slow[(r, i)] for r in range(plan.dp)), key=lambda a: a.max()) for i in range(plan.pp)}
        return slow

    def _run_once(self, baseline: StepRun | None) -> StepRun:
        sp, plan = self.sp, self.sp.plan
        pp, vpp, dp, width = plan.pp, plan.vpp, plan.dp, plan.width  # a compute event stands for the TP x CP ranks
        n_virtual = pp * vpp
        env = simpy.Environment()
        rng = np.random.default_rng(self.var.seed)
        jitter = Jitter(self.var.compute_jitter_cv, rng)
        eff = sp.net_efficiency
        net = FlowNetwork(env, sp.topology.bandwidth_Bps, keep_records=False)
        replicas = list(range(dp)) if self.mode == "full" else [0]
        p2p_class = {r: (r,) for r in replicas} if self.mode == "full" else {0: tuple(range(dp))}
        slow = self._factors()
        timeline: list[TimelineEvent] = []
        record = timeline.append if self.record_timeline else None
        accounts = {(r, i): RankAccount() for r in replicas for i in range(pp)}
        comm_s: dict[str, float] = defaultdict(float)

        deps: dict[tuple, simpy.Event] = {}
        wire_start: dict[tuple, float] = {}

        def start(plan_: CollectivePlan) -> simpy.Event:
            return net.collective(plan_, eff)

        arrived_at: dict[tuple, float] = {}  # transfers whose data is there, by receiver key
        p2p_plans: dict[tuple[int, int, int], CollectivePlan] = {}  # (replica, from stage, to stage) -> send

        def p2p_plan(r: int, v_from: int, v_to: int) -> CollectivePlan:
            key = (r, v_from % pp, v_to % pp)
            plan_ = p2p_plans.get(key)
            if plan_ is None:
                plan_ = p2p_plans[key] = sp.p2p(v_from, v_to, p2p_class[r])
            return plan_

        def send(r: int, v_from: int, v_to: int, key: tuple, mb: int, chunk: int, stage: int) -> None:
            t0 = env.now
            wire_start[key] = t0

            def arrived() -> None:
                now = env.now
                comm_s["pp"] += now - t0
                if record is not None:
                    record(TimelineEvent(r, stage, "pp_send", mb, chunk, t0, now, "comm", p2p.bytes, _describe(p2p)))
                waiting = deps.pop(key, None)
                if waiting is None:
                    arrived_at[key] = now
                    del wire_start[key]
                else:
                    waiting.succeed()

            p2p = p2p_plan(r, v_from, v_to)
            net.collective(p2p, eff, on_done=arrived)

        overlap = plan.overlap_grad_reduce
        # last backward action index per (stage, chunk): its gradient buckets overlap it
        last_bwd = {}
        for i, acts in enumerate(sp.actions):
            for idx, a in enumerate(acts):
                if a.kind == "B":
                    last_bwd[(i, a.chunk)] = idx

        # data-parallel streams: one per stage, shared by all replicas (one class flow per bucket).
        # A bucket is queued with the time it is ready (all of a chunk's buckets at once, when its
        # first is ready); the stream starts it then, or when the bucket before it is done.
        n_buckets = [sum(len(sp.chunks[c * pp + i].grad_buckets) for c in range(vpp)) for i in range(pp)]
        dp_queue: list[deque] = [deque() for _ in range(pp)]
        dp_wake: list[simpy.Event | None] = [None] * pp  # an idle stream waits on it for the next bucket
        dp_done = [env.event() for _ in range(pp)]
        barrier: dict[tuple, list] = defaultdict(list)
        first_release: dict[int, float] = {}
        own_first_arrival: dict[tuple[int, int], float] = {}

        def enqueue(i: int, ready: float, bucket: CollectivePlan, chunk: int) -> None:
            dp_queue[i].append((ready, bucket, chunk))
            wake = dp_wake[i]
            if wake is not None:
                dp_wake[i] = None
                wake.succeed()

        def dp_stream(i: int):
            queue = dp_queue[i]
            for k in range(n_buckets[i]):
                if not queue:
                    wake = dp_wake[i] = env.event()
                    yield wake
                ready, bucket, chunk = queue.popleft()
                if ready > env.now:
                    yield env.timeout(ready - env.now)
                t0 = env.now
                if len(bucket.phases) == 1:
                    yield net.collective(bucket, eff)
                else:  # the phases one after another, in this process
                    yield from net.run(bucket, eff)
                comm_s["dp"] += env.now - t0
                if record is not None:
                    record(TimelineEvent(0, i, "dp_bucket", k, chunk, t0, env.now, "comm", bucket.bytes,
                                         _describe(bucket)))
            dp_done[i].succeed()

        for i in range(pp):
            if n_buckets[i]:
                env.process(dp_stream(i))
            else:
                dp_done[i].succeed()

        late_draw: dict[int, float] = {}
        variance = defaultdict(float)  # (r, i) -> accumulated jitter variance of the timeline (s^2)

        def issue_buckets(r: int, i: int, chunk: int, seg: float) -> None:
            """Replica ``r``'s stage ``i`` has the first gradient bucket of ``chunk`` ready now and
            the others one every ``seg`` seconds after it: queue them (in full mode, each when all
            replicas have it; in representative mode, after the latest other replica)."""
            now = env.now
            if (r, i) not in own_first_arrival:
                own_first_arrival[(r, i)] = now
            buckets = sp.chunks[chunk * pp + i].grad_buckets
            if self.mode == "full":
                for k, bucket in enumerate(buckets):
                    arrivals = barrier[(i, chunk, k)]
                    arrivals.append(now + k * seg)
                    if len(arrivals) == dp:
                        release = max(arrivals)
                        first_release[i] = min(first_release.get(i, release), release)
                        enqueue(i, release, bucket, chunk)
                return
            # representative: the reduction waits for the latest other replica, whose
            # lateness is drawn once per stage, at its first bucket
            if i not in late_draw:
                delay = 0.0
                if baseline is not None and dp > 1 and jitter.cv > 0:
                    own_dev = now - baseline.first_bucket_s.get(i, now)
                    latest = shift[(r, i)] + max_of_normals(dp - 1, variance[(r, i)] ** 0.5, rng)
                    delay = max(0.0, latest - own_dev)
                late_draw[i] = delay
                first_release[i] = now + delay
            for k, bucket in enumerate(buckets):
                enqueue(i, now + k * seg + late_draw[i], bucket, chunk)

        barriers: dict[tuple, tuple[list[float], simpy.Event]] = {}

        def barrier_collective(key: tuple, n_arrivals: int, plan_: CollectivePlan, name: str, stage: int):
            """Arrive at a collective that starts when all ``n_arrivals`` participants are there.
            Returns (the event of its completion, the arrival times list)."""
            arrivals, done = barriers.setdefault(key, ([], env.event()))
            arrivals.append(env.now)
            if len(arrivals) == n_arrivals:
                t_start = env.now

                def finished(_e=None):
                    comm_s["dp"] += env.now - t_start
                    if record is not None:
                        record(TimelineEvent(0, stage, name, -1, -1, t_start, env.now, "comm", plan_.bytes,
                                             _describe(plan_)))
                    done.succeed()

                start(plan_).callbacks.append(finished)
            return done, arrivals

        def sync(key: tuple, n_arrivals: int, plan_: CollectivePlan, name: str, r: int, i: int,
                 across_stages: bool = False):
            """Process body: take part in a barrier collective; the wait is exposed data-parallel
            communication (for the transfer) and waiting for late peers: stall among replicas,
            and, ``across_stages``, pipeline waiting (bubble or stall, split as any pipeline wait)."""
            t_w = env.now
            done, arrivals = barrier_collective(key, n_arrivals, plan_, name, i)
            pending[(r, i)] = f"waiting for {name}"
            yield done
            wait = env.now - t_w
            if record is not None and wait > 0:
                record(TimelineEvent(r, i, f"wait_{name}", -1, -1, t_w, env.now))
            late = min(wait, max(arrivals) - t_w)
            if across_stages:
                accounts[(r, i)].pp_wait_s += late
            else:
                accounts[(r, i)].seconds["stall"] += late
            accounts[(r, i)].seconds["dp_comm"] += wait - late
        pending: dict[tuple[int, int], Action | str] = {}  # what each stage waits for, for deadlock reports
        events = 0

        deterministic = self.var.is_deterministic
        max_mean, max_sd = jitter.max_moments(width)  # of the slowest of a TP x CP group's factors
        shift = defaultdict(float)  # (r, i) -> expected lateness accumulated from jitter (s)

        def stage_proc(r: int, i: int):
            nonlocal events
            acct = accounts[(r, i)]
            sec = acct.seconds
            members = slow[(r, i)]
            fixed = float(members.max())
            own_mean = float(members.mean())
            healthy = fixed == 1.0 and deterministic
            own = [0.0] * (2 * n_virtual)  # [2 v + is_forward] -> sum of own-time factors
            counts = [0] * (2 * n_virtual)  # [2 v + is_forward] -> passes run
            stall_s = pp_comm_s = pp_wait_s = 0.0
            for idx, a in enumerate(sp.actions[i]):
                is_f = a.kind == "F"
                v = a.chunk * pp + i
                chunk = sp.chunks[v]
                # inputs: the previous virtual stage's activation, or the next one's gradient
                # (the last virtual stage's backward needs only its own forward, which ran before)
                if (v > 0) if is_f else (v < n_virtual - 1):
                    key = (r, a.kind, a.mb, v)
                    if arrived_at.pop(key, None) is None:  # not there yet: wait for it
                        pending[(r, i)] = a
                        t_w = env.now
                        ev = deps[key] = env.event()
                        yield ev
                        t_s = wire_start.pop(key)
                        now = env.now
                        if record is not None:
                            record(TimelineEvent(r, i, "wait_pp", a.mb, a.chunk, t_w, now))
                        pp_wait_s += max(0.0, min(t_s, now) - t_w)
                        pp_comm_s += now - max(t_w, t_s)
                comp = chunk.forward_compute_s if is_f else chunk.backward_compute_s
                comm = chunk.forward_comm_s if is_f else chunk.backward_comm_s
                if healthy:
                    f_max = f_own = 1.0
                elif self.mode == "full":
                    draws = members * jitter.many(width)
                    f_max, f_own = float(draws.max()), float(draws.mean())
                else:
                    f_max = fixed * jitter.max_of(width)
                    f_own = f_max if width == 1 else min(f_max, own_mean * jitter.mean_of(width))
                if not deterministic:
                    shift[(r, i)] += comp * (max_mean - 1.0)
                    variance[(r, i)] += (comp * max_sd) ** 2
                t0 = env.now
                duration = comp * f_max + comm
                if not is_f and overlap and idx == last_bwd[(i, a.chunk)] and chunk.grad_buckets:
                    # the chunk's gradient buckets become ready one by one during this pass
                    seg = duration / len(chunk.grad_buckets)
                    env.timeout(seg).callbacks.append(lambda _e, c=a.chunk, s=seg: issue_buckets(r, i, c, s))
                yield env.timeout(duration)
                events += 1
                own[2 * v + is_f] += f_own
                counts[2 * v + is_f] += 1
                stall_s += comp * (f_max - f_own)
                if record is not None:
                    recompute = 0.0 if is_f else chunk.backward.get("recompute", 0.0) * f_max
                    record(TimelineEvent(r, i, a.kind, a.mb, a.chunk, t0, env.now, recompute_s=recompute))
                # outputs
                if is_f:
                    if v < n_virtual - 1:
                        send(r, v, v + 1, (r, "F", a.mb, v + 1), a.mb, a.chunk, i)
                elif v > 0:
                    send(r, v, v - 1, (r, "B", a.mb, v - 1), a.mb, a.chunk, i)
            for slot, n_passes in enumerate(counts):
                if n_passes:
                    v, is_f = divmod(slot, 2)
                    for cat, sec_per in (sp.chunks[v].forward if is_f else sp.chunks[v].backward).items():
                        sec[cat] += sec_per * (own[slot] if cat in COMPUTE_CATEGORIES else n_passes)
            sec["stall"] += stall_s
            sec["pp_comm"] += pp_comm_s
            acct.pp_wait_s += pp_wait_s
            if not plan.overlap_grad_reduce:
                for c in range(vpp):
                    if sp.chunks[c * pp + i].grad_buckets:
                        issue_buckets(r, i, c, 0.0)
            # wait for the data-parallel reduction
            if not dp_done[i].triggered:
                pending[(r, i)] = "waiting for data-parallel gradient reduction"
                t_w = env.now
                yield dp_done[i]
                wait = env.now - t_w
                if record is not None:
                    record(TimelineEvent(r, i, "wait_dp", -1, -1, t_w, env.now))
                late = max(0.0, first_release.get(i, t_w) - own_first_arrival.get((r, i), t_w))
                stall = min(wait, late)
                sec["stall"] += stall
                sec["dp_comm"] += wait - stall
            if sp.embedding_sync is not None and i in (0, pp - 1):
                yield from sync(("embedding_sync",), 2 * len(replicas), sp.embedding_sync, "embedding_sync", r, i,
                                across_stages=True)
            t0 = env.now
            f_opt = fixed
            yield env.timeout(sp.optimizer_s[i] * f_opt)
            sec["optimizer"] += sp.optimizer_s[i]
            sec["stall"] += sp.optimizer_s[i] * (f_opt - 1.0)
            if record is not None:
                record(TimelineEvent(r, i, "optimizer", -1, -1, t0, env.now))
            gather = sp.param_gather[i]
            if gather is not None:
                yield from sync(("param_gather", i), len(replicas), gather, "param_gather", r, i)
            acct.finish_s = env.now
            pending.pop((r, i), None)

        procs = [env.process(stage_proc(r, i)) for r in replicas for i in range(pp)]
        env.run()
        unfinished = [(ri, what) for ri, what in pending.items()]
        if unfinished or not all(p.triggered for p in procs):
            detail = "; ".join(
                f"replica {r} stage {i}: " + (f"{w.kind} of micro-batch {w.mb}, chunk {w.chunk}, waiting for its input"
                                              if isinstance(w, Action) else w)
                for (r, i), w in unfinished[:8]
            )
            raise SimulationError(f"deadlock: events ran out while work was pending ({detail})")

        step = max(a.finish_s for a in accounts.values())
        for (r, i), acct in accounts.items():
            wait = acct.pp_wait_s + step - acct.finish_s  # waiting for neighbours, and for the last stage to finish
            bubble = wait
            if baseline is not None:
                b = baseline.accounts[(0, i)]
                bubble = min(wait, b.pp_wait_s + baseline.step_time_s - b.finish_s)
            acct.seconds["bubble"] += bubble
            acct.seconds["stall"] += wait - bubble
        first_bucket = {i: t for (r, i), t in own_first_arrival.items() if r == 0}
        return StepRun(step, accounts, timeline, dict(comm_s), events, self.mode, first_bucket)
