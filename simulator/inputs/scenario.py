"""Scenario files: what to simulate, validated before anything runs.

A scenario is four small parts (as in Calculon): the **model** (a preset name,
preset + overrides, a Hugging Face ``config.json``, or all fields), the
**fleet** (a topology file, the number of GPUs, optionally another GPU and a
user hardware file and efficiency parameters), the **plan** (how the model is split) and **run** options
(variability, simulation mode, energy). ``dp`` may be left out: it follows
from the fleet. Paths in a scenario are relative to the scenario file.

:func:`load_scenario` turns any problem into an :class:`InputError` that names
the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    create_model,
    field_validator,
)

from simulator.core.bounds import MAX_GPUS, GpuCount, real, span
from simulator.core.bundled import bundled_dir
from simulator.core.errors import InputError, PlanError, from_validation_error
from simulator.core.units import MB
from simulator.core.yamlfile import parse_yaml
from simulator.network.describe import SCALE_UP_KINDS, TRANSPORTS
from simulator.network.efficiency import NcclVersion
from simulator.system.variability import Variability
from simulator.workload.framework import get_framework
from simulator.workload.legality import fleet_filled
from simulator.workload.plan import ParallelPlan, Schedule


class _WrittenPlan(BaseModel):
    """What a scenario's ``plan:`` adds to :class:`ParallelPlan`: ``dp`` and ``schedule`` may be
    left out, the bucket is in MB and the rank order may be one string."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("placement", mode="before", check_fields=False)
    @classmethod
    def _split(cls, v: Any) -> Any:
        return [p.strip() for p in v.split(",")] if isinstance(v, str) else v

    @property
    def dp_bucket_bytes(self) -> float | None:
        """``dp_bucket_MB`` in bytes (None: Megatron-LM's default)."""
        return None if self.dp_bucket_MB is None else self.dp_bucket_MB * MB

    def plan_value(self, name: str) -> Any:
        """The value of the :class:`ParallelPlan` field ``name`` as written (None where left out)."""
        return self.dp_bucket_bytes if name == "dp_bucket_bytes" else getattr(self, name)

    def to_plan(self, n_gpus: int) -> ParallelPlan:
        """The :class:`ParallelPlan` on ``n_gpus`` GPUs (``dp`` filling the fleet if left out): the
        options written, the framework's defaults (:meth:`Framework.defaults_for`) for those left
        out, and :class:`ParallelPlan`'s own defaults for the rest."""
        dp = self.dp if self.dp is not None else n_gpus // (self.tp * self.cp * self.pp)
        written = self.model_dump(exclude={"dp", "schedule", "dp_bucket_MB"})
        open_fields = set(ParallelPlan.model_fields) - {self.plan_field(n) for n in self.model_fields_set}
        framework = get_framework(self.framework)
        written.update(framework.defaults_for(open_fields, self.tp, self.pp, self.sequence_parallel))
        written["recompute"] = framework.recompute_for(written["recompute"])  # its mode names mean its modes
        bucket = written.pop("dp_bucket_bytes", self.dp_bucket_bytes)
        return ParallelPlan(**written, dp=dp, schedule=self.schedule or ("interleaved" if self.vpp > 1 else "1f1b"),
                            dp_bucket_bytes=bucket)

    @staticmethod
    def plan_field(written: str) -> str:
        """The :class:`ParallelPlan` field a scenario's plan key ``written`` sets."""
        return "dp_bucket_bytes" if written == "dp_bucket_MB" else written


_WRITTEN_DIFFERENTLY: dict[str, tuple[str, Any, Any]] = {
    "dp": ("dp", GpuCount | None, Field(None, description="Data-parallel replicas; omit to fill the fleet: "
                                        f"gpus / (tp x cp x pp); in {span(1, MAX_GPUS)}.")),
    "schedule": ("schedule", Schedule | None, Field(None, description="Pipeline schedule; default: 'interleaved' "
                                                    "if vpp > 1, else '1f1b'.")),
    "dp_bucket_bytes": ("dp_bucket_MB", real(1, 1e6) | None, Field(None, description="Gradient bucket, MB of "
                        f"reduced gradients, in {span(1, 1e6)} (1 MB to 1 TB); default: Megatron-LM's.")),
}
"""Scenario name, type and field of the :class:`ParallelPlan` fields a scenario writes differently."""


def _scenario_fields() -> dict[str, tuple[Any, Any]]:
    fields = {}
    for name, info in ParallelPlan.model_fields.items():
        written, annotation, field = _WRITTEN_DIFFERENTLY.get(name, (name, info.annotation, info))
        fields[written] = (annotation, field)
    return fields


PlanSpec = create_model("PlanSpec", __base__=_WrittenPlan, __module__=__name__, **_scenario_fields())
"""The plan as written in a scenario: every :class:`ParallelPlan` field, with its type, default
and description, except those in ``_WRITTEN_DIFFERENTLY`` (see :class:`_WrittenPlan`)."""


class SimulationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["representative", "full"] = Field(
        "representative", description="'full' simulates every data-parallel replica (small fleets)."
    )


class EnergySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pue: real(1, 3) = Field(1.2, description=f"Facility power usage effectiveness (1 = no overhead), in {span(1, 3)}.")


class TopologyDescription(BaseModel):
    """A fleet's topology described in a few fields instead of a file (``topology:`` as a
    mapping), built by :func:`simulator.network.describe.describe_topology_file`: nodes of
    ``gpus_per_node`` GPUs joined by ``scale_up``, ``nics_per_node`` NICs of ``nic_Gbps`` per
    node over ``transport``, on a rail-optimised non-blocking two-tier fabric. The scale-up
    bandwidth defaults to the catalog GPU's ``intra_node_bandwidth_GBps``. Fields left out take
    describe.py's defaults (latency estimates per kind and transport, 0 W power)."""

    model_config = ConfigDict(extra="forbid")

    gpu: str | None = Field(None, description="GPU catalog name; default: the scenario's 'gpu' (one of the two is "
                            "needed; if both are given they must agree).")
    gpus_per_node: int = Field(description="GPUs per node.")
    scale_up: Literal[SCALE_UP_KINDS] = Field(description="How a node's GPUs are joined: " + ", ".join(SCALE_UP_KINDS) + ".")  # type: ignore[valid-type]
    nics_per_node: int = Field(description="Compute-fabric NICs per node (must divide gpus_per_node).")
    nic_Gbps: float = Field(description="Bandwidth of one NIC, Gbit/s, one direction.")
    transport: Literal[TRANSPORTS] = Field("ib", description="Inter-node transport: " + ", ".join(TRANSPORTS) + ".")  # type: ignore[valid-type]
    bandwidth_GBps: float | None = Field(None, description="Scale-up bandwidth per GPU, one direction, GB/s; default: "
                                         "the catalog GPU's (required for nvlink_bridge).")
    scale_up_latency_us: float | None = Field(None, description="One-way GPU-to-GPU latency inside a node, microseconds.")
    nvlink_links: int | None = Field(None, description="NVLink (or xGMI) links per GPU.")
    multicast: bool | None = Field(None, description="NVLink SHARP (NVLS) multicast on the NVSwitch.")
    bridge_links: int | None = Field(None, description="NVLink bridge links per GPU pair (nvlink_bridge).")
    nic_latency_us: float | None = Field(None, description="One NIC traversal, microseconds.")
    pcie_bandwidth_GBps: float | None = Field(None, description="Each GPU's link to the host PCIe switch, GB/s, one direction.")
    net_plugin_latency_us: float | None = Field(None, description="NCCL net plugin latency, microseconds.")
    cpu: Literal["intel", "amd", "arm"] = Field("intel", description="Host CPU vendor (NCCL's tuning).")
    collnet: bool = Field(False, description="In-network reduction (SHARP) on the fabric.")
    nodes_per_unit: int | None = Field(None, description="Nodes per fabric unit; default: min(32, nodes).")
    switch_latency_us: float | None = Field(None, description="One switch traversal incl. cable, microseconds.")
    switch_ports: int = Field(64, description="Ports per fabric switch.")
    power_W: float = Field(0.0, description="Node power other than GPUs, watts; default 0 (not modelled).")
    switch_power_W: float = Field(0.0, description="Power of one fabric switch, watts; default 0 (not modelled).")
    name: str | None = Field(None, description="Topology name in results; default: generated from the fields.")

    def arguments(self) -> dict[str, Any]:
        """The keyword arguments of :func:`~simulator.network.describe.describe_topology_file`
        (all but ``gpu``; only those stated, so describe.py's defaults apply to the rest)."""
        return self.model_dump(exclude={"gpu"}, exclude_unset=True)

    @field_validator("gpus_per_node", "nics_per_node", "nic_Gbps", "bandwidth_GBps", "scale_up_latency_us",
                     "nvlink_links", "bridge_links", "nic_latency_us", "pcie_bandwidth_GBps", "net_plugin_latency_us",
                     "nodes_per_unit", "switch_latency_us", "switch_ports", "power_W", "switch_power_W", mode="before")
    @classmethod
    def _not_a_bool(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError(f"must be a number, not {str(v).lower()}")  # noqa: TRY004 (pydantic reports ValueError)
        return v


def _topology_kind(value: Any) -> str:
    """Which form a scenario's ``topology`` is written in: a mapping is a description, anything
    else a name or path (so a bad description's errors are only about its fields)."""
    return "description" if isinstance(value, (dict, TopologyDescription)) else "name"


class Scenario(BaseModel):
    """A validated scenario. ``base_dir`` is where relative paths are resolved."""

    model_config = ConfigDict(extra="forbid")

    name: str = "scenario"
    description: str = ""
    model: str | dict[str, Any]
    topology: Annotated[Annotated[TopologyDescription, Tag("description")] | Annotated[str, Tag("name")],
                        Discriminator(_topology_kind)] = Field(
        description="A bundled topology name, a topology file (YAML, relative to the scenario), or a "
        "description: a mapping of gpu, gpus_per_node, scale_up, nics_per_node, nic_Gbps, transport, ...")
    gpus: GpuCount = Field(description=f"Fleet size in GPUs, in {span(1, MAX_GPUS)} (MAX_GPUS).")
    gpu: str | None = Field(None, description="GPU catalog name; default: the topology's GPU (a described "
                            "topology's gpu must agree with it).")
    hardware_file: str | None = Field(None, description="User GPU catalog (YAML) adding or overriding GPUs.")
    efficiency_file: str | None = Field(
        None, description="Efficiency parameters (YAML in the layout of simulator/inputs/efficiency.yaml, e.g. written by "
        "`trainsim calibrate --out`, or just the values to change); default: the packaged ones.")
    nccl_version: NcclVersion | None = Field(
        None, description="NCCL version whose tuner times the collectives ('2.18' ... '2.30', major.minor); "
        "default: the efficiency parameters' network.nccl_version (2.29 in the packaged ones).")
    plan: PlanSpec
    variability: Variability = Field(default_factory=Variability)
    simulation: SimulationSpec = Field(default_factory=SimulationSpec)
    energy: EnergySpec = Field(default_factory=EnergySpec)
    base_dir: Path = Field(default=Path("."), exclude=True)
    source_file: str | None = Field(default=None, exclude=True)

    def resolve(self, path: str) -> Path:
        """A path from the scenario, relative to the scenario file."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def parallel_plan(self) -> ParallelPlan:
        """The plan, with ``dp`` filled in; checks first that it fills the fleet."""
        spec = self.plan
        violation = fleet_filled(spec.tp, spec.cp, spec.pp, spec.dp, self.gpus)
        if violation is not None:
            raise PlanError(violation.message, file=self.source_file, field=violation.field)
        try:
            return spec.to_plan(self.gpus)
        except ValidationError as err:
            raise from_validation_error(err, schema=ParallelPlan, file=self.source_file, prefix="plan") from None

    def with_(self, **changes: Any) -> "Scenario":
        """A copy with fields changed; plan fields may be given directly (``tp=4``). Fields the
        original leaves at their defaults stay unset in the copy (the planner searches them)."""
        plan_fields = set(PlanSpec.model_fields)
        plan_changes = {k: v for k, v in changes.items() if k in plan_fields}
        other = {k: v for k, v in changes.items() if k not in plan_fields}
        data = self.model_dump(exclude={"base_dir", "source_file"}, exclude_unset=True)
        data["plan"].update(plan_changes)
        if plan_changes and "dp" not in plan_changes and self.plan.dp is None:
            data["plan"]["dp"] = None
        data.update(other)
        return _validate(data, self.source_file, self.base_dir)


def _validate(data: Any, file: str | None, base_dir: Path) -> Scenario:
    if not isinstance(data, dict):
        raise InputError("a scenario must be a YAML mapping of fields (name, model, topology, gpus, plan, ...)", file=file)
    internal = [key for key in data if key in ("base_dir", "source_file")]
    if internal:
        allowed = ", ".join(name for name, info in Scenario.model_fields.items() if not info.exclude)
        raise InputError(f"unknown field; allowed here: {allowed}", file=file, field=internal[0])
    try:
        return Scenario(**data, base_dir=base_dir, source_file=file)
    except ValidationError as err:
        raise from_validation_error(err, schema=Scenario, file=file) from None
    except TypeError as err:  # e.g. a non-string key
        raise InputError(str(err), file=file) from None


def bundled_scenarios() -> list[str]:
    """Names of the scenarios shipped with trainsim."""
    folder = bundled_dir("scenarios")
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


DEFAULT_SCENARIO = "gpt3-175b-1024-a100"


def scenario_path(name_or_path: str | Path) -> Path:
    """A scenario file path: the path itself if it exists, else a bundled scenario by name."""
    p = Path(name_or_path)
    if p.exists():
        return p
    bundled = bundled_dir("scenarios").joinpath(f"{p.stem}.yaml")
    if p.suffix in ("", ".yaml") and p.parent == Path(".") and bundled.is_file():
        return Path(str(bundled))
    raise InputError(
        f"no such file; give a path to a scenario YAML or one of the bundled scenarios: {', '.join(bundled_scenarios())}",
        file=str(name_or_path),
    )


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Read and validate a scenario file (or a bundled scenario by name)."""
    path = scenario_path(name_or_path)
    file = str(name_or_path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read the file ({err.__class__.__name__}: {err})", file=file) from None
    return _validate(parse_yaml(text, file=file), file, path.parent)
