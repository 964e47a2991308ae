"""The analytic first pass: a step time and energy from the work plan, without the event
simulation. The planner ranks every plan that fits by it before simulating the best.

Accuracy (``tests/test_estimate.py``): within 15 % of the simulated step on a seeded spread of
plans of four scenarios; 1F1B and GPipe pipelines with fewer micro-batches than stages are
overestimated by up to 30 %, because the fill is charged as ``(p - 1)`` times the slowest stage
although it passes through each stage once (and the last, with the LM head, is the slowest)."""

from __future__ import annotations

from dataclasses import dataclass

from simulator.hardware.catalog import GPUSpec
from simulator.hardware.power import StateTimes, step_energy
from simulator.system.efficiency import Efficiency
from simulator.system.workplan import StepPlan


@dataclass(frozen=True)
class Estimate:
    """Analytic step estimate of one plan (seconds; joules per step at the facility)."""

    step_s: float
    pipeline_s: float
    dp_exposed_s: float
    optimizer_s: float
    energy_J: float


def estimate_step(sp: StepPlan, device: GPUSpec, efficiency: Efficiency, *, pue: float) -> Estimate:
    """Analytic step time from the work plan, without the event simulation.

    With ``t_i`` the forward + backward seconds (compute and the communication inside the passes)
    of one micro-batch through all ``vpp`` chunks of stage ``i``, ``m`` micro-batches, ``p``
    stages, ``v`` chunks per stage::

        pipeline = (m + (p - 1) / v) * max_i t_i + 2 (p - 1) * send     (1F1B, interleaved)
                   (m + p - 1) * max_i t_i + 2 (p - 1) * send            (GPipe)
        dp_i     = sum of stage i's gradient bucket times (alone on the network), minus the
                   backward of one micro-batch through the stage when overlap_grad_reduce
                   is on, but at least the last bucket; plus the ZeRO 1-2 parameter all-gather
        step     = pipeline + max_i (dp_i + optimizer_i) + embedding all-reduce (tied, p > 1)

    ``send`` is one pipeline transfer alone on the network; with a blocking pipeline engine
    (``sp.blocking_p2p``) ``t_i`` also holds the wait for each pass's send (``2 v send``), and the
    exposed ``dp_i`` the last backward passes' slowdown beside their buckets (``dp_overlap_s``). Energy uses the same power model
    as the simulation with compute ``m t_i + optimizer_i``, communication ``dp_i``, the rest idle.
    """
    plan = sp.plan
    p, v, m = plan.pp, plan.vpp, plan.n_microbatches
    stage_f = [0.0] * p
    stage_b = [0.0] * p
    stage_compute = [0.0] * p
    buckets: list[list[float]] = [[] for _ in range(p)]
    slowed = [0.0] * p  # the last backward passes' slowdown beside their buckets
    for vs, chunk in enumerate(sp.chunks):
        i = vs % p
        stage_f[i] += sum(chunk.forward.values())
        stage_b[i] += sum(chunk.backward.values())
        stage_compute[i] += chunk.forward_compute_s + chunk.backward_compute_s
        buckets[i].extend(b.standalone_time_s() for b in chunk.grad_buckets)
        slowed[i] += chunk.dp_overlap_s if plan.overlap_grad_reduce else 0.0
    send = sp.p2p(0, 1, tuple(range(plan.dp))).standalone_time_s() if p > 1 else 0.0
    # a blocking pipeline engine waits for each pass's send before its next pass
    t = max(f + b for f, b in zip(stage_f, stage_b)) + (2 * send * v if sp.blocking_p2p else 0.0)
    fill = (p - 1) if plan.schedule == "gpipe" else (p - 1) / v
    pipeline = (m + fill) * t + 2 * (p - 1) * send

    tail = []
    dp_exposed = []
    for i in range(p):
        total = sum(buckets[i])
        if total and plan.overlap_grad_reduce:
            exposed = max(buckets[i][-1], total - stage_b[i]) + slowed[i]
        else:
            exposed = total
        gather = sp.param_gather[i]
        if gather is not None:
            exposed += gather.standalone_time_s()
        dp_exposed.append(exposed)
        tail.append(exposed + sp.optimizer_s[i])
    emb = sp.embedding_sync.standalone_time_s() if sp.embedding_sync is not None else 0.0
    step = pipeline + max(tail) + emb

    times = []
    for i in range(p):
        compute = m * stage_compute[i] + sp.optimizer_s[i]
        comm = dp_exposed[i] + m * (stage_f[i] + stage_b[i] - stage_compute[i])
        times.append(StateTimes(compute, comm, max(0.0, step - compute - comm)))
    power = sp.topology.power
    energy = step_energy(times, plan.width * plan.dp, tdp_W=device.tdp_W, idle_W=device.idle_W,
                         fractions=efficiency.power, nodes_W=power.nodes_W, switches_W=power.switches_W,
                         step_s=step, pue=pue).facility_J
    return Estimate(step, pipeline, max(dp_exposed), max(sp.optimizer_s), energy)
