"""Resolve a scenario into the objects the layers take: the model, topology, GPU and
efficiency parameters (:class:`Fleet`), completed by a checked plan into a :class:`Setup`.

Every error names the scenario file and the field (:class:`~simulator.core.errors.InputError`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from simulator.core.errors import InputError
from simulator.hardware.catalog import GPUSpec, load_catalog
from simulator.inputs.efficiency_file import default_efficiency, load_efficiency
from simulator.inputs.scenario import Scenario
from simulator.network.topology import Topology, load_topology
from simulator.system.efficiency import Efficiency
from simulator.workload.loading import load_model
from simulator.workload.model import ModelConfig
from simulator.workload.plan import ParallelPlan, check_plan


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
        check_plan(plan, model, n_gpus=scenario.gpus, gpus_per_node=fleet.topology.gpus_per_node)
    except InputError as err:
        raise err.with_file(scenario.source_file) if scenario.source_file else err
    return fleet.setup(plan)
