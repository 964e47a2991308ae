"""Compose the layers: scenario in, :class:`StepResult` out.

This is the Python API the CLI and notebooks use::

    from simulator import load_scenario, simulate
    result = simulate(load_scenario("gpt3-175b-1024-a100").with_(tp=4, pp=16))
    result.breakdown_frame()
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.errors import InputError, SimulationError
from simulator.hardware.catalog import GPUSpec, load_catalog
from simulator.efficiency import Efficiency, default_efficiency, load_efficiency
from simulator.hardware.power import StateTimes, step_energy
from simulator.network.topology import Topology, load_topology
from simulator.results.step import BREAKDOWN_KEYS, StepResult
from simulator.scenario import Scenario
from simulator.system.engine import StepRun, StepSimulation, TimelineEvent
from simulator.system.workplan import build_step_plan
from simulator.workload.counting import model_flops_per_token, recompute_flops_per_token
from simulator.workload.loading import load_model
from simulator.workload.memory import memory_per_gpu
from simulator.workload.model import ModelConfig
from simulator.workload.plan import ParallelPlan, check_plan_against

COMPUTE_STATE = ("forward", "backward", "recompute", "optimizer")
COMM_STATE = ("tp_comm", "cp_comm", "pp_comm", "dp_comm")
IDLE_STATE = ("bubble", "stall")


@dataclass(frozen=True)
class Setup:
    """A scenario resolved into the objects the layers take."""

    scenario: Scenario
    model: ModelConfig
    plan: ParallelPlan
    topology: Topology
    device: GPUSpec
    efficiency: Efficiency


def topology_source(scenario: Scenario) -> str | Path:
    """The scenario's topology as :func:`load_topology` takes it: a path (relative to the
    scenario file) if it names a file, else a bundled topology name."""
    path = scenario.resolve(scenario.topology)
    return path if path.exists() or scenario.topology.endswith((".yaml", ".yml")) else scenario.topology


@dataclass(frozen=True)
class Fleet:
    """The scenario's model, topology, GPU and efficiency, resolved once; a plan completes it into a Setup."""

    scenario: Scenario
    model: ModelConfig
    topology: Topology
    device: GPUSpec
    efficiency: Efficiency

    def setup(self, plan: ParallelPlan) -> Setup:
        return Setup(self.scenario, self.model, plan, self.topology, self.device, self.efficiency)


def resolve_fleet(scenario: Scenario, efficiency: Efficiency | None = None) -> Fleet:
    """Load the model, topology and GPU of ``scenario`` (not its plan); :class:`InputError` naming the field."""
    file = scenario.source_file
    try:
        model = load_model(scenario.model, base_dir=scenario.base_dir, file=file)
        catalog = load_catalog(scenario.resolve(scenario.hardware_file) if scenario.hardware_file else None)
        try:
            topology = load_topology(topology_source(scenario), scenario.gpus, file=file)
        except InputError as err:
            if err.field != "n_gpus":
                raise
            raise InputError(err.detail, file=file, field="gpus") from None
        gpu_name = scenario.gpu or topology.gpu
        if gpu_name is None:
            raise InputError("the topology names no GPU; set 'gpu' in the scenario", field="gpu")
        try:
            device = catalog.get(gpu_name)
        except InputError as err:
            raise InputError(err.detail, file=file, field="gpu") from None
        try:
            device.peak_flops_for(scenario.plan.precision)
        except InputError as err:
            raise InputError(err.detail, file=file, field="plan.precision") from None
        scenario.variability.check_fleet(scenario.gpus, topology.gpus_per_node)
        if efficiency is None:
            efficiency = (load_efficiency(scenario.resolve(scenario.efficiency_file)) if scenario.efficiency_file
                          else default_efficiency())
    except InputError as err:
        raise err.with_file(file) if file else err
    return Fleet(scenario, model, topology, device, efficiency)


def setup(scenario: Scenario, efficiency: Efficiency | None = None) -> Setup:
    """Resolve and check everything before simulating; raises :class:`InputError` naming the field."""
    fleet = resolve_fleet(scenario, efficiency)
    try:
        plan = scenario.parallel_plan()
        model = fleet.model
        check_plan_against(
            plan, n_heads=model.n_heads, n_kv_heads=model.kv_heads, n_layers=model.n_layers,
            n_gpus=scenario.gpus, gpus_per_node=fleet.topology.gpus_per_node,
        )
    except InputError as err:
        raise err.with_file(scenario.source_file) if scenario.source_file else err
    return fleet.setup(plan)


def simulate(scenario: Scenario, efficiency: Efficiency | None = None, *, record_timeline: bool = True) -> StepResult:
    """Simulate one optimizer step of ``scenario``."""
    return simulate_setup(setup(scenario, efficiency), record_timeline=record_timeline)


def simulate_setup(s: Setup, *, record_timeline: bool = True) -> StepResult:
    """Simulate one optimizer step of an already resolved :class:`Setup`."""
    scenario = s.scenario
    try:
        sp = build_step_plan(s.model, s.plan, s.topology, s.device, s.efficiency)
    except InputError as err:
        raise err.with_file(scenario.source_file) if scenario.source_file else err
    run = StepSimulation(sp, scenario.variability, scenario.simulation.mode, record_timeline).run()
    result = _result(s, sp, run)
    if not (result.step_time_s > 0 and result.hardware_flops_per_step > 0):
        raise SimulationError(
            f"a step of {result.step_time_s} s doing {result.hardware_flops_per_step} FLOPs is not a training step; "
            "this is a bug in trainsim, please report it with the scenario"
        )
    return result


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

    memory = memory_per_gpu(model, plan, capacity_bytes=device.hbm_bytes)

    times = [StateTimes(compute_s=sum(row[k] for k in COMPUTE_STATE), communicate_s=sum(row[k] for k in COMM_STATE),
                        idle_s=sum(row[k] for k in IDLE_STATE)) for row in stages]
    power = s.topology.power
    energy = step_energy(times, plan.width * plan.dp, tdp_W=device.tdp_W, idle_W=device.idle_W,
                         fractions=s.efficiency.power, nodes_W=power.nodes_W, switches_W=power.switches_W,
                         step_s=run.step_time_s, pue=s.scenario.energy.pue)

    notes = []
    if not memory.fits:
        notes.append(f"does not fit in memory: {memory.summary()}")
    timeline = pd.DataFrame([_event_dict(e) for e in run.timeline], columns=list(TimelineEvent.__slots__))
    return StepResult(
        scenario=s.scenario.name,
        model=model.name,
        gpu=device.name,
        topology=s.topology.name,
        n_gpus=plan.n_gpus,
        plan={**plan.model_dump(), "n_microbatches": m},
        mode=run.mode,
        step_time_s=run.step_time_s,
        breakdown_s=breakdown,
        stage_breakdown_s=stages,
        hidden_comm_s=hidden,
        tokens_per_step=tokens,
        model_flops_per_step=model_flops_per_token(model) * tokens,
        recompute_flops_per_step=recompute_flops_per_token(model, plan.recompute) * tokens,
        hardware_flops_per_step=hw_flops,
        peak_flops_per_gpu=device.peak_flops_for(plan.precision),
        memory=memory.to_dict(),
        energy_J={
            "gpu_J": energy.gpu_J,
            "node_overhead_J": energy.node_overhead_J,
            "network_J": energy.network_J,
            "it_J": energy.it_J,
            "facility_J": energy.facility_J,
            "pue": energy.pue,
        },
        n_events=run.n_events,
        timeline=timeline,
        notes=notes,
        efficiency_source=s.efficiency.source,
    )


def _event_dict(e: TimelineEvent) -> dict:
    return {k: getattr(e, k) for k in TimelineEvent.__slots__}
