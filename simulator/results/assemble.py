"""Compose the layers: scenario in, :class:`StepResult` out.

This is the Python API the CLI and notebooks use::

    from simulator import load_scenario, simulate
    result = simulate(load_scenario("gpt3-175b-1024-a100").with_(tp=4, pp=16))
    result.breakdown_frame()
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from simulator.core.errors import SimulationError
from simulator.hardware.power import StateTimes, step_energy
from simulator.inputs.resolve import Setup, setup
from simulator.inputs.scenario import Scenario
from simulator.results.band import band_for, regime_of
from simulator.results.step import StepResult
from simulator.system.breakdown import BREAKDOWN_KEYS, COMMUNICATION, COMPUTE, IDLE
from simulator.system.efficiency import Efficiency
from simulator.system.engine import (
    TIMELINE_COLUMNS,
    Progress,
    StepRun,
    StepSimulation,
    StepSize,
)
from simulator.system.workplan import StepPlan
from simulator.workload.counting import model_flops_per_token, recompute_flops_per_token

LONG_STEP_EVENTS = 300_000
"""Simulated events above which a step takes long enough (seconds) to say why, and to show progress."""

SlowStep = Callable[[str], Progress]
"""Told, before a long step starts, what makes it slow; returns where to report its progress."""


def simulate(scenario: Scenario, efficiency: Efficiency | None = None, *, record_timeline: bool = True,
             slow: SlowStep | None = None) -> StepResult:
    """Simulate one optimizer step of ``scenario``; ``slow``: see :func:`simulate_setup`."""
    return simulate_setup(setup(scenario, efficiency), record_timeline=record_timeline, slow=slow)


def simulate_setup(s: Setup, *, record_timeline: bool = True, slow: SlowStep | None = None) -> StepResult:
    """Simulate one optimizer step of an already resolved :class:`Setup`. A step of more than
    :data:`LONG_STEP_EVENTS` events gets a note saying what makes it slow; ``slow`` is then given
    the note before the step starts and returns the progress callback of the run."""
    scenario, sp = s.scenario, s.step_plan
    mode = scenario.simulation.mode
    note = long_step_note(StepSize.of(sp, mode), sp, mode)
    progress = slow(note) if note and slow is not None else None
    run = StepSimulation(sp, scenario.variability, mode, record_timeline, progress=progress).run()
    result = _result(s, sp, run)
    if note:
        result.notes.append(note)
    if not (result.step_time_s > 0 and result.hardware_flops_per_step > 0):
        raise SimulationError(
            f"a step of {result.step_time_s} s doing {result.hardware_flops_per_step} FLOPs is not a training step; "
            "this is a bug in trainsim, please report it with the scenario"
        )
    return result


def long_step_note(size: StepSize, sp: StepPlan, mode: str) -> str:
    """What makes a step of more than :data:`LONG_STEP_EVENTS` events slow to simulate, and what
    would be faster ("" for a step that is not long)."""
    events = size.passes + size.transfers
    if events <= LONG_STEP_EVENTS:
        return ""
    why = [f"about {events:,} simulated events"]
    if size.buckets > size.passes:
        per_bucket = max((b.bytes for c in sp.chunks for b in c.grad_buckets), default=0.0)
        why.append(f"{size.buckets:,} gradient buckets of {per_bucket / 1e6:,.1f} MB (a larger dp_bucket_MB "
                   "simulates faster)")
    if mode == "full" and size.replicas > 1:
        why.append(f"every one of the {size.replicas:,} data-parallel replicas is simulated (representative mode "
                   "gives the same times without variability, much faster)")
    if size.passes >= size.buckets:
        why.append(f"{sp.plan.n_microbatches:,} micro-batches through {sp.n_virtual:,} pipeline stages")
    return "long simulation: " + "; ".join(why)


def _stage_breakdowns(run: StepRun, pp: int) -> list[dict[str, float]]:
    """Per stage, the mean over simulated replicas of each category (they sum to the step time)."""
    rows = []
    for i in range(pp):
        accts = [a for (r, st), a in run.accounts.items() if st == i]
        rows.append({k: float(np.mean([a.seconds.get(k, 0.0) for a in accts])) for k in BREAKDOWN_KEYS})
    return rows


def _result(s: Setup, sp, run: StepRun) -> StepResult:
    plan, model, device = s.plan, s.model, s.device
    stages = _stage_breakdowns(run, plan.pp)
    breakdown = {k: float(np.mean([row[k] for row in stages])) for k in BREAKDOWN_KEYS}

    n_sim_replicas = plan.dp if run.mode == "full" else 1
    pp_wire = run.comm_s.get("pp", 0.0) / (plan.pp * n_sim_replicas)
    m = plan.n_microbatches
    zero3_wire = sum(c.dp_wire_s for c in sp.chunks) * m  # ZeRO-3 gathers and scatters inside the passes
    dp_wire = (run.comm_s.get("dp", 0.0) + zero3_wire) / plan.pp
    hidden = {
        "tp_comm": sum(c.tp_hidden_s for c in sp.chunks) * m / plan.pp,
        "cp_comm": sum(c.cp_hidden_s for c in sp.chunks) * m / plan.pp,
        "pp_comm": max(0.0, pp_wire - breakdown["pp_comm"]),
        "dp_comm": max(0.0, dp_wire - breakdown["dp_comm"]),
    }

    tokens = plan.global_batch * model.seq_len
    hw_flops_rank = sum((c.flops_forward + c.flops_backward + c.flops_recompute) * m for c in sp.chunks)
    hw_flops = hw_flops_rank * plan.width * plan.dp

    memory = s.memory

    times = [StateTimes(compute_s=sum(row[k] for k in COMPUTE), communicate_s=sum(row[k] for k in COMMUNICATION),
                        idle_s=sum(row[k] for k in IDLE)) for row in stages]
    power = s.topology.power
    energy = step_energy(times, plan.width * plan.dp, tdp_W=device.tdp_W, idle_W=device.idle_W,
                         fractions=s.efficiency.power, nodes_W=power.nodes_W, switches_W=power.switches_W,
                         step_s=run.step_time_s, pue=s.scenario.energy.pue)

    notes = []
    if not memory.fits:
        notes.append(f"does not fit in memory: {memory.summary()}")
    return StepResult(
        scenario=s.scenario.name,
        model=model.name,
        gpu=device.name,
        topology=s.topology.name,
        n_gpus=plan.n_gpus,
        plan=plan,
        mode=run.mode,
        step_time_s=run.step_time_s,
        breakdown_s=breakdown,
        stage_breakdown_s=stages,
        hidden_comm_s=hidden,
        tokens_per_step=tokens,
        model_flops_per_step=model_flops_per_token(model) * tokens,
        recompute_flops_per_step=recompute_flops_per_token(model, plan.recompute, plan.checkpoint_every) * tokens,
        hardware_flops_per_step=hw_flops,
        peak_flops_per_gpu=device.rated_peak_flops_for(plan.precision),  # MFU against the datasheet peak
        memory=memory,
        energy=energy,
        n_events=run.n_events,
        events=run.events,
        notes=notes,
        efficiency_source=s.efficiency.source,
        band=band_for(regime_of(plan, device), run.step_time_s, tokens, memory.total),
    )
