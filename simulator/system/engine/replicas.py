"""Which data-parallel replicas the engine simulates, and what stands in for the others.

Two modes (``ARCHITECTURE.md``, "scale by symmetry"); times are seconds, slowdown and jitter
factors are multipliers of a compute time (1 = nominal):

* :class:`Representative`: replica 0 stands for all ``dp``. A pipeline transfer carries the link
  load of the whole class of identical transfers of all replicas. A compute pass lasts as long as
  the slowest member of the TP x CP group (one order-statistics draw). For each stage the
  slowest replica's named slow GPUs are simulated (exact when the slow GPUs share a replica or a
  stage, an upper bound otherwise). The gradient reduction of a stage waits for the latest of
  the other ``dp - 1`` replicas, whose accumulated jitter is drawn once per stage at its first
  bucket as a normal order statistic (central-limit approximation).
* :class:`Full`: every replica runs its own pipeline, every TP rank draws its own jitter, and a
  gradient bucket is reduced once every replica has it (a barrier).

Without randomness and slow GPUs both give exactly the same times when every replica's pipeline
sends take equally long paths. Otherwise they differ, by design: the representative class flow
runs all replicas' sends at the pace of its slowest member (the longest path's latency, the most
loaded link), where full mode lets each replica's send go at its own. On ``gpt3-175b-1024-a100``
the 128 nodes sit in units of 20, so 4 of the 16 replicas' sends from stage 0 to 1 stay inside a
unit (3.3 us) while 12 cross units (3.9 us), and representative mode's step is 1.8 us longer
(7e-8 of 26.54 s); with units of 16 nodes the two agree exactly. ``tests/test_resources.py`` holds
both: representative not shorter, and within 1e-6 of the step.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from simulator.system.variability import Jitter, Variability, max_of_normals
from simulator.system.workplan import StepPlan

Mode = str  # "representative" | "full"
MODES = ("representative", "full")


def _slowdowns(sp: StepPlan, variability: Variability) -> dict[tuple[int, int], np.ndarray]:
    """(replica, stage) -> the fixed slowdown of every TP x CP member, for every replica."""
    plan, gpn = sp.plan, sp.topology.gpus_per_node
    slow = {}
    for i in range(plan.pp):
        for r in range(plan.dp):
            slow[(r, i)] = np.array([variability.slowdown(g, gpn) for g in plan.gpu_grid[:, r, i].tolist()])
    return slow


def _has_slow_gpus(variability: Variability) -> bool:
    return bool(variability.slow_gpus or variability.slow_nodes)


class Representative:
    """Replica 0 simulated for all (see module docstring)."""

    name = "representative"

    def __init__(self, sp: StepPlan, variability: Variability, jitter: Jitter,
                 baseline_first_bucket_s: dict[int, float] | None):
        plan = sp.plan
        self.replicas = [0]
        self.p2p_class = {0: tuple(range(plan.dp))}  # the replicas whose identical sends one flow carries
        self._jitter, self._width, self._dp = jitter, plan.width, plan.dp
        self._baseline_first_bucket_s = baseline_first_bucket_s
        self._max_mean, self._max_sd = jitter.max_moments(plan.width)  # of the slowest of a group's factors
        self._drift_s: defaultdict[tuple[int, int], float] = defaultdict(float)  # expected lateness from jitter
        self._drift_var: defaultdict[tuple[int, int], float] = defaultdict(float)  # its variance, s^2
        self._lateness_s: dict[int, float] = {}  # stage -> how late the latest other replica is
        if _has_slow_gpus(variability):  # (0, stage) -> of every member of the stage's slowest replica
            slow = _slowdowns(sp, variability)
            self.slowdowns = {(0, i): max((slow[(r, i)] for r in range(plan.dp)), key=lambda a: a.max())
                              for i in range(plan.pp)}
        else:
            self.slowdowns = {(0, i): np.ones(plan.width) for i in range(plan.pp)}

    def pass_factors(self, members: np.ndarray, fixed: float, own_mean: float) -> tuple[float, float]:
        """(factor of the slowest member, mean factor of the members) of one pass."""
        width, jitter = self._width, self._jitter
        f_max = fixed * jitter.max_of(width)
        f_own = f_max if width == 1 else min(f_max, own_mean * jitter.mean_of(width))
        return f_max, f_own

    def add_drift(self, r: int, i: int, compute_s: float) -> None:
        """Accumulate the expected lateness and its variance a pass of ``compute_s`` adds to a group."""
        self._drift_s[(r, i)] += compute_s * (self._max_mean - 1.0)
        self._drift_var[(r, i)] += (compute_s * self._max_sd) ** 2

    def bucket_releases(self, r: int, i: int, chunk: int, n_buckets: int, seg_s: float,
                        now: float) -> list[tuple[int, float]]:
        """(bucket index, release time) of the ``n_buckets`` buckets of ``chunk``, the first ready
        now and one more every ``seg_s`` seconds: each once the latest other replica has it."""
        if i not in self._lateness_s:
            self._lateness_s[i] = self._lateness(r, i, now)
        late = self._lateness_s[i]
        return [(k, now + k * seg_s + late) for k in range(n_buckets)]

    def _lateness(self, r: int, i: int, now: float) -> float:
        """One draw of how much later than the simulated replica the latest other one gets there."""
        baseline, dp = self._baseline_first_bucket_s, self._dp
        if baseline is None or dp <= 1 or self._jitter.cv <= 0:
            return 0.0
        own_deviation = now - baseline.get(i, now)
        latest = self._drift_s[(r, i)] + max_of_normals(dp - 1, self._drift_var[(r, i)] ** 0.5, self._jitter.rng)
        return max(0.0, latest - own_deviation)


class Full:
    """Every replica simulated (see module docstring)."""

    name = "full"

    def __init__(self, sp: StepPlan, variability: Variability, jitter: Jitter):
        plan = sp.plan
        self.replicas = list(range(plan.dp))
        self.p2p_class = {r: (r,) for r in self.replicas}
        self._jitter, self._width, self._dp = jitter, plan.width, plan.dp
        self._arrivals: defaultdict[tuple[int, int, int], list[float]] = defaultdict(list)  # (stage, chunk, bucket)
        if _has_slow_gpus(variability):
            self.slowdowns = _slowdowns(sp, variability)  # (replica, stage) -> of every member
        else:
            healthy = np.ones(plan.width)
            self.slowdowns = {(r, i): healthy for r in self.replicas for i in range(plan.pp)}

    def pass_factors(self, members: np.ndarray, fixed: float, own_mean: float) -> tuple[float, float]:
        """(factor of the slowest member, mean factor of the members) of one pass: one draw per member."""
        draws = members * self._jitter.many(self._width)
        return float(draws.max()), float(draws.mean())

    def add_drift(self, r: int, i: int, compute_s: float) -> None:
        """Nothing to extrapolate: every replica's jitter is simulated."""

    def bucket_releases(self, r: int, i: int, chunk: int, n_buckets: int, seg_s: float,
                        now: float) -> list[tuple[int, float]]:
        """(bucket index, release time) of the buckets of ``chunk`` every replica now has: replica
        ``r`` has its first now and one more every ``seg_s`` seconds."""
        released = []
        for k in range(n_buckets):
            arrivals = self._arrivals[(i, chunk, k)]
            arrivals.append(now + k * seg_s)
            if len(arrivals) == self._dp:
                released.append((k, max(arrivals)))
        return released


ReplicaMode = Representative | Full


def replica_mode(mode: Mode, sp: StepPlan, variability: Variability, jitter: Jitter,
                 baseline_first_bucket_s: dict[int, float] | None) -> ReplicaMode:
    """The replicas of ``mode``; ``baseline_first_bucket_s`` (stage -> seconds): when replica 0's
    first gradient bucket of each stage was ready in the same step without variability."""
    if mode == "full":
        return Full(sp, variability, jitter)
    return Representative(sp, variability, jitter, baseline_first_bucket_s)
