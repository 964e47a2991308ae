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
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from simulator.core.bundled import bundled_dir
from simulator.core.errors import InputError, PlanError, from_validation_error
from simulator.core.yamlfile import parse_yaml
from simulator.system.variability import Variability
from simulator.workload.plan import ParallelPlan


class PlanSpec(BaseModel):
    """The plan as written in a scenario: like :class:`ParallelPlan` but ``dp`` may be omitted
    and the bucket size is in MB."""

    model_config = ConfigDict(extra="forbid")

    tp: int = Field(1, ge=1)
    pp: int = Field(1, ge=1)
    dp: int | None = Field(None, ge=1, description="Omit to fill the fleet: gpus / (tp * cp * pp).")
    cp: int = Field(1, ge=1, description="Context-parallel size (sequence split over cp ranks).")
    vpp: int = Field(1, ge=1)
    micro_batch: int = Field(1, ge=1)
    global_batch: int = Field(ge=1)
    schedule: Literal["gpipe", "1f1b", "interleaved"] | None = Field(
        None, description="Default: 'interleaved' if vpp > 1, else '1f1b'."
    )
    sequence_parallel: bool = False
    recompute: Literal["none", "selective", "full"] = "none"
    zero_stage: int = Field(0, ge=0, le=3)
    precision: Literal["fp32", "tf32", "bf16", "fp16", "fp8"] = "bf16"
    placement: list[Literal["tp", "dp", "pp"]] | str = Field(
        default_factory=lambda: ["tp", "dp", "pp"], description="Innermost first, e.g. 'tp,dp,pp'."
    )
    dp_bucket_MB: float | None = Field(
        None, ge=1.0, description="Gradient bucket, MB of reduced gradients (>= 1); default: Megatron-LM's.")
    overlap_grad_reduce: bool = True
    grad_reduce_precision: Literal["fp32", "bf16"] = "fp32"
    tp_overlap: Literal["none", "backward", "full"] = "backward"
    overlap_param_gather: bool = False
    attention: Literal["flash", "standard"] = "flash"

    @property
    def dp_bucket_bytes(self) -> float | None:
        """``dp_bucket_MB`` in bytes (None: Megatron-LM's default)."""
        return None if self.dp_bucket_MB is None else self.dp_bucket_MB * 1e6

    @field_validator("placement", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return [p.strip() for p in v.split(",")] if isinstance(v, str) else v

    def to_plan(self, n_gpus: int) -> ParallelPlan:
        dp = self.dp if self.dp is not None else n_gpus // (self.tp * self.cp * self.pp)
        return ParallelPlan(
            tp=self.tp, pp=self.pp, dp=dp, cp=self.cp, vpp=self.vpp, micro_batch=self.micro_batch,
            global_batch=self.global_batch,
            schedule=self.schedule or ("interleaved" if self.vpp > 1 else "1f1b"),
            sequence_parallel=self.sequence_parallel, recompute=self.recompute,
            zero_stage=self.zero_stage, precision=self.precision, placement=tuple(self.placement),
            dp_bucket_bytes=self.dp_bucket_bytes, overlap_grad_reduce=self.overlap_grad_reduce,
            grad_reduce_precision=self.grad_reduce_precision, tp_overlap=self.tp_overlap,
            overlap_param_gather=self.overlap_param_gather, attention=self.attention,
        )


class SimulationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["representative", "full"] = Field(
        "representative", description="'full' simulates every data-parallel replica (small fleets)."
    )


class EnergySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pue: float = Field(1.2, ge=1.0, description="Facility power usage effectiveness (1 = no overhead).")


class Scenario(BaseModel):
    """A validated scenario. ``base_dir`` is where relative paths are resolved."""

    model_config = ConfigDict(extra="forbid")

    name: str = "scenario"
    description: str = ""
    model: str | dict[str, Any]
    topology: str
    gpus: int = Field(ge=1, description="Fleet size in GPUs.")
    gpu: str | None = Field(None, description="GPU catalog name; default: the topology's GPU.")
    hardware_file: str | None = Field(None, description="User GPU catalog (YAML) adding or overriding GPUs.")
    efficiency_file: str | None = Field(
        None, description="Efficiency parameters (YAML in the layout of simulator/inputs/efficiency.yaml, e.g. written by "
        "`trainsim calibrate --out`, or just the values to change); default: the packaged ones.")
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
        fixed = spec.tp * spec.cp * spec.pp
        names, sizes = ("tp x cp x pp", f"{spec.tp} x {spec.cp} x {spec.pp}") if spec.cp > 1 else \
            ("tp x pp", f"{spec.tp} x {spec.pp}")
        dp = spec.dp if spec.dp is not None else self.gpus // fixed
        if fixed * dp != self.gpus:
            fix = (f"set dp to {self.gpus // fixed} or leave it out" if self.gpus % fixed == 0
                   else f"{names} = {fixed} must divide the fleet of {self.gpus} GPUs")
            raise PlanError(f"{names} x dp = {sizes} x {dp} does not fill the fleet of "
                            f"{self.gpus} GPUs; {fix}", file=self.source_file, field="plan.dp")
        try:
            return self.plan.to_plan(self.gpus)
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
