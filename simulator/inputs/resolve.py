"""Resolve a scenario into the objects the layers take: the model, topology, GPU and
efficiency parameters (:class:`Fleet`), completed by a checked plan into a :class:`Setup`.

Every error names the scenario file and the field (:class:`~simulator.core.errors.InputError`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from simulator.core.cache import sized_cache
from simulator.core.errors import InputError
from simulator.hardware.catalog import GPUSpec, load_catalog
from simulator.inputs.efficiency_file import default_efficiency, load_efficiency
from simulator.inputs.scenario import Scenario, TopologyDescription
from simulator.network import describe
from simulator.network.describe import describe_topology_file, described_fleet_shape
from simulator.network.topology import (
    Topology,
    build_topology,
    estimated_bytes,
    fleet_shape,
    load_topology,
)
from simulator.network.topology_file import TopologyFile, validate_topology
from simulator.system.efficiency import Efficiency
from simulator.system.estimate import Estimate, estimate_step
from simulator.system.workplan import StepPlan, build_step_plan
from simulator.workload.loading import load_model
from simulator.workload.memory import MemoryBreakdown, memory_per_gpu
from simulator.workload.model import ModelConfig
from simulator.workload.plan import ParallelPlan, check_plan


def topology_source(scenario: Scenario) -> str | Path:
    """The scenario's topology as :func:`load_topology` takes it: a path (relative to the
    scenario file) if it names a file, else a bundled topology name. A described topology
    (``topology:`` a mapping) reads no topology file: its source is the module that generates it
    (``simulator/network/describe.py``, whose defaults it depends on; sweeps hash it as the
    scenario's topology file), and :func:`resolve_fleet` builds it from the description."""
    if isinstance(scenario.topology, TopologyDescription):
        return Path(describe.__file__)
    path = scenario.resolve(scenario.topology)
    return path if path.exists() or scenario.topology.endswith((".yaml", ".yml")) else scenario.topology


_DESCRIBED_FIELD = {
    "gpu": "gpu", "node.gpus": "gpus_per_node", "node.nics": "nics_per_node", "node.nic_bandwidth_Gbps": "nic_Gbps",
    "node.scale_up.kind": "scale_up", "node.scale_up.bandwidth_GBps": "bandwidth_GBps",
    "node.scale_up.latency_us": "scale_up_latency_us",
}
"""Topology-file fields a description writes under another name (the others: the file field's last part)."""


def _description_error(err: InputError, file: str | None) -> InputError:
    """An error of describe.py or of the generated topology file as the scenario's ``topology.<field>``."""
    if err.field == "n_gpus":
        return InputError(err.detail, file=file, field="gpus")
    name = _DESCRIBED_FIELD.get(err.field or "", (err.field or "").rpartition(".")[2])
    where = f"topology.{name}" if name in TopologyDescription.model_fields else "topology"
    return InputError(err.detail, file=file, field=where)


def _described_gpu(scenario: Scenario, described: TopologyDescription) -> str:
    """The GPU of a described fleet: the description's ``gpu`` or the scenario's (either may be
    left out; if both are given they must be the same catalog name)."""
    if described.gpu is not None and scenario.gpu is not None and described.gpu != scenario.gpu:
        raise InputError(f"the described topology's gpu {described.gpu!r} differs from the scenario's gpu "
                         f"{scenario.gpu!r}; give one of them, or the same name in both", field="topology.gpu")
    name = described.gpu or scenario.gpu
    if name is None:
        raise InputError("a described topology needs a GPU: set topology.gpu (or the scenario's gpu)",
                         field="topology.gpu")
    return name


def _describe(scenario: Scenario, device: GPUSpec) -> TopologyFile:
    """The topology file of the scenario's description, on ``device`` (its scale-up bandwidth)."""
    described = scenario.topology
    assert isinstance(described, TopologyDescription)
    args = described.arguments()
    try:
        return describe_topology_file(device, args.pop("gpus_per_node"), args.pop("scale_up"),
                                      args.pop("nics_per_node"), args.pop("nic_Gbps"), args.pop("transport", "ib"),
                                      scenario.gpus, path=_described_path(scenario), **args)
    except InputError as err:
        raise _description_error(err, scenario.source_file) from None


def _described_path(scenario: Scenario) -> str:
    """What a described topology's errors and ``Topology.file`` call it."""
    return f"{scenario.source_file or 'scenario'} (topology described)"


@sized_cache(estimated_bytes)
def _built_description(text: str, n_gpus: int, path: str) -> Topology:
    """Described topologies built once per (generated file as JSON, fleet size, name), as
    :func:`load_topology` keeps files' topologies: a fleet simulated many times (planner,
    sweeps) reuses the graph and its collective plans."""
    return build_topology(validate_topology(json.loads(text), path), n_gpus, path=path)


@dataclass(frozen=True)
class Fleet:
    """The scenario's model, topology, GPU and efficiency, resolved once; a plan completes it into a
    :class:`Setup`. The memory and the step plan of each plan are worked out once per fleet (in
    this process) and kept while the fleet lives: the planner's memory filter, first pass and
    simulation, and validation's plan choice and simulation, share them."""

    scenario: Scenario
    model: ModelConfig
    topology: Topology
    device: GPUSpec
    efficiency: Efficiency
    _memory: dict[ParallelPlan, MemoryBreakdown] = field(default_factory=dict, compare=False, repr=False)
    _step_plans: dict[ParallelPlan, StepPlan] = field(default_factory=dict, compare=False, repr=False)

    def setup(self, plan: ParallelPlan) -> Setup:
        return Setup(self, plan)

    def memory(self, plan: ParallelPlan) -> MemoryBreakdown:
        """Bytes per GPU of ``plan``'s peak stage (:func:`~simulator.workload.memory.memory_per_gpu`)."""
        if plan not in self._memory:
            self._memory[plan] = memory_per_gpu(self.model, plan, capacity_bytes=self.device.hbm_bytes)
        return self._memory[plan]

    def step_plan(self, plan: ParallelPlan) -> StepPlan:
        """The work plan of one step of ``plan`` (:func:`~simulator.system.workplan.build_step_plan`);
        an :class:`InputError` names the scenario file."""
        if plan not in self._step_plans:
            try:
                self._step_plans[plan] = build_step_plan(self.model, plan, self.topology, self.device, self.efficiency)
            except InputError as err:
                raise err.with_file(self.scenario.source_file) if self.scenario.source_file else err
        return self._step_plans[plan]

    def estimate(self, plan: ParallelPlan) -> Estimate:
        """The analytic first pass of ``plan`` (:func:`~simulator.system.estimate.estimate_step`)."""
        return estimate_step(self.step_plan(plan), self.device, self.efficiency, pue=self.scenario.energy.pue)


@dataclass(frozen=True)
class Setup:
    """A fleet and the plan to run on it: everything one step simulation takes."""

    fleet: Fleet
    plan: ParallelPlan

    @property
    def scenario(self) -> Scenario:
        return self.fleet.scenario

    @property
    def model(self) -> ModelConfig:
        return self.fleet.model

    @property
    def topology(self) -> Topology:
        return self.fleet.topology

    @property
    def device(self) -> GPUSpec:
        return self.fleet.device

    @property
    def efficiency(self) -> Efficiency:
        return self.fleet.efficiency

    @property
    def memory(self) -> MemoryBreakdown:
        return self.fleet.memory(self.plan)

    @property
    def step_plan(self) -> StepPlan:
        return self.fleet.step_plan(self.plan)


class _Parts(NamedTuple):
    """What a fleet is made of, resolved and checked, before its topology is built."""

    model: ModelConfig
    gpus_per_node: int
    device: GPUSpec
    efficiency: Efficiency
    described: TopologyFile | None = None
    """The generated topology file of a described topology (None: a file or bundled name)."""


def _gpus_field(err: InputError, file: str | None) -> InputError:
    """A topology's fleet-size error (field ``n_gpus``) as the scenario's field ``gpus``."""
    return InputError(err.detail, file=file, field="gpus") if err.field == "n_gpus" else err


def with_nccl_version(efficiency: Efficiency, version: str | None) -> Efficiency:
    """``efficiency`` simulating NCCL ``version`` (the scenario's ``nccl_version``; None keeps the
    efficiency's own ``network.nccl_version``)."""
    if version is None or version == efficiency.network.nccl_version:
        return efficiency
    return dataclasses.replace(efficiency, network=efficiency.network.model_copy(update={"nccl_version": version}))


def _resolve_parts(scenario: Scenario, efficiency: Efficiency | None) -> _Parts:
    """The model, GPU and efficiency, and the fleet's node size read from the topology file
    (:func:`~simulator.network.topology.fleet_shape`): everything checked but the topology's graph."""
    file = scenario.source_file
    try:
        model = load_model(scenario.model, base_dir=scenario.base_dir, file=file)
        catalog = load_catalog(scenario.resolve(scenario.hardware_file) if scenario.hardware_file else None)
        described = None
        if isinstance(scenario.topology, TopologyDescription):
            gpu_name = _described_gpu(scenario, scenario.topology)
        else:
            try:
                spec, _, gpus_per_node = fleet_shape(topology_source(scenario), scenario.gpus, file=file)
            except InputError as err:
                raise _gpus_field(err, file) from None
            gpu_name = scenario.gpu or spec.gpu
        if gpu_name is None:
            raise InputError("the topology names no GPU; set 'gpu' in the scenario", field="gpu")
        try:
            device = catalog.get(gpu_name)
        except InputError as err:
            where = "topology.gpu" if isinstance(scenario.topology, TopologyDescription) and scenario.topology.gpu else "gpu"
            raise InputError(err.detail, file=file, field=where) from None
        if isinstance(scenario.topology, TopologyDescription):
            described = _describe(scenario, device)
            try:
                _, gpus_per_node = described_fleet_shape(described, scenario.gpus, path=_described_path(scenario))
            except InputError as err:
                raise _description_error(err, file) from None
        try:
            device.peak_flops_for(scenario.plan.precision)
        except InputError as err:
            raise InputError(err.detail, file=file, field="plan.precision") from None
        scenario.variability.check_fleet(scenario.gpus, gpus_per_node)
        if efficiency is None:
            efficiency = (load_efficiency(scenario.resolve(scenario.efficiency_file)) if scenario.efficiency_file
                          else default_efficiency())
        efficiency = with_nccl_version(efficiency, scenario.nccl_version)
    except InputError as err:
        raise err.with_file(file) if file else err
    return _Parts(model, gpus_per_node, device, efficiency, described)


def _fleet(scenario: Scenario, parts: _Parts) -> Fleet:
    """Build the topology (the one step whose cost grows with the fleet) and make the fleet."""
    file = scenario.source_file
    try:
        try:
            if parts.described is not None:
                text = json.dumps(parts.described.model_dump(mode="json", exclude_unset=True), sort_keys=True)
                topology = _built_description(text, scenario.gpus, _described_path(scenario))
            else:
                topology = load_topology(topology_source(scenario), scenario.gpus, file=file)
        except InputError as err:
            raise _gpus_field(err, file) from None
    except InputError as err:
        raise err.with_file(file) if file else err
    return Fleet(scenario, parts.model, topology, parts.device, parts.efficiency)


def resolve_fleet(scenario: Scenario, efficiency: Efficiency | None = None) -> Fleet:
    """Load the model, topology and GPU of ``scenario`` (not its plan); :class:`InputError` naming the field."""
    return _fleet(scenario, _resolve_parts(scenario, efficiency))


def setup(scenario: Scenario, efficiency: Efficiency | None = None) -> Setup:
    """Resolve and check everything before simulating; raises :class:`InputError` naming the field.
    The plan is checked against the model and the fleet's size and node size (arithmetic) before
    the topology is built, so a plan that cannot run is refused at once on any fleet."""
    parts = _resolve_parts(scenario, efficiency)
    try:
        plan = scenario.parallel_plan()
        check_plan(plan, parts.model, n_gpus=scenario.gpus, gpus_per_node=parts.gpus_per_node)
    except InputError as err:
        raise err.with_file(scenario.source_file) if scenario.source_file else err
    return _fleet(scenario, parts).setup(plan)
