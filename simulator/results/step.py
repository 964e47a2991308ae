"""What one simulated step produced, typed: numbers, the plan, memory and energy, and DataFrames.

:class:`StepResult` is the public result object of trainsim. Its
:meth:`StepResult.to_dict` is the ``--json`` output, whose keys are documented
in the README as a public interface. All values are SI (seconds, bytes, FLOP/s,
joules, watts) except where a key says otherwise (``mfu`` is a fraction). ``band`` is the
prediction's P10-P90 error band (:class:`~simulator.results.band.Band`, keys in docs/bands.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from simulator.hardware.power import StepEnergy
from simulator.results.band import Band
from simulator.system.engine import TIMELINE_COLUMNS, TimelineEvent
from simulator.workload.memory import MemoryBreakdown
from simulator.workload.plan import ParallelPlan

if TYPE_CHECKING:
    import pandas as pd


class _Timeline:
    """The ``timeline`` field of :class:`StepResult`: the DataFrame given, or else one row per
    event of ``events`` (columns ``TIMELINE_COLUMNS``) built on first use -- so that pandas is
    imported, and the frame built, only by those who read it (issue 15: startup and search speed)."""

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return None  # the dataclass default: built from the events
        frame = obj.__dict__.get("_timeline_frame")
        if frame is None:
            import pandas as pd

            frame = pd.DataFrame([e.row() for e in obj.events], columns=list(TIMELINE_COLUMNS))
            obj.__dict__["_timeline_frame"] = frame
        return frame

    def __set__(self, obj: Any, value: Any) -> None:  # the default (this descriptor itself): from the events
        obj.__dict__["_timeline_frame"] = None if isinstance(value, _Timeline) else value


@dataclass
class StepResult:
    """One simulated optimizer step (see module docstring for units)."""

    scenario: str
    model: str
    gpu: str
    topology: str
    n_gpus: int
    plan: ParallelPlan  # with every default filled in
    mode: str
    step_time_s: float
    breakdown_s: dict[str, float]
    stage_breakdown_s: list[dict[str, float]]
    hidden_comm_s: dict[str, float]
    tokens_per_step: int
    model_flops_per_step: float
    hardware_flops_per_step: float
    recompute_flops_per_step: float
    peak_flops_per_gpu: float
    memory: MemoryBreakdown  # the peak stage's, bytes per GPU
    energy: StepEnergy  # joules per step, the whole fleet
    n_events: int
    timeline: pd.DataFrame = field(repr=False, default=_Timeline())  # type: ignore[assignment]
    events: list[TimelineEvent] = field(repr=False, default_factory=list)  # typed; the timeline rows
    notes: list[str] = field(default_factory=list)
    efficiency_source: str = ""  # where the efficiency parameters of the step came from
    band: Band | None = None  # P10-P90 of step time, throughput and memory (simulator/results/band.py)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_per_step / self.step_time_s

    @property
    def model_flops_per_s_per_gpu(self) -> float:
        return self.model_flops_per_step / self.step_time_s / self.n_gpus

    @property
    def mfu(self) -> float:
        """Model FLOPs utilisation: model FLOP/s per GPU over the GPU's dense peak."""
        return self.model_flops_per_s_per_gpu / self.peak_flops_per_gpu

    @property
    def hfu(self) -> float:
        """Hardware FLOPs utilisation: model FLOPs plus the FLOPs recomputation adds (counted the
        same way: matmuls, non-causal attention), over peak; so HFU >= MFU."""
        flops = self.model_flops_per_step + self.recompute_flops_per_step
        return flops / self.step_time_s / self.n_gpus / self.peak_flops_per_gpu

    @property
    def fits_in_memory(self) -> bool:
        return self.memory.fits

    @property
    def energy_per_step_J(self) -> float:
        return self.energy.facility_J

    @property
    def avg_power_per_gpu_W(self) -> float:
        return self.energy.gpu_J / self.n_gpus / self.step_time_s

    def breakdown_frame(self) -> pd.DataFrame:
        """One row per pipeline stage, one column per breakdown category (seconds)."""
        import pandas as pd

        df = pd.DataFrame(self.stage_breakdown_s)
        df.index.name = "stage"
        return df

    def memory_frame(self) -> pd.DataFrame:
        """Bytes per GPU of the peak stage by category, with the GB and the share of capacity."""
        import pandas as pd

        keys = ("parameters", "gradients", "optimizer", "activations", "buffers")
        df = pd.DataFrame({"bytes": [float(getattr(self.memory, k)) for k in keys]},
                          index=pd.Index(keys, name="category"))
        df["GB"] = df["bytes"] / 1e9
        df["share_of_capacity"] = df["bytes"] / self.memory.capacity
        return df

    def plan_dict(self) -> dict[str, Any]:
        """The plan's fields and ``n_microbatches``, as plain values."""
        return {**self.plan.model_dump(), "n_microbatches": self.plan.n_microbatches}

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of ``trainsim run --json`` (keys documented in the README)."""
        return {
            "scenario": self.scenario,
            "model": self.model,
            "gpu": self.gpu,
            "topology": self.topology,
            "n_gpus": self.n_gpus,
            "plan": self.plan_dict(),
            "mode": self.mode,
            "step_time_s": self.step_time_s,
            "breakdown_s": self.breakdown_s,
            "stage_breakdown_s": self.stage_breakdown_s,
            "hidden_comm_s": self.hidden_comm_s,
            "throughput": {
                "tokens_per_step": self.tokens_per_step,
                "tokens_per_s": self.tokens_per_s,
                "model_flops_per_step": self.model_flops_per_step,
                "hardware_flops_per_step": self.hardware_flops_per_step,
                "recompute_flops_per_step": self.recompute_flops_per_step,
                "model_tflops_per_gpu": self.model_flops_per_s_per_gpu / 1e12,
                "mfu": self.mfu,
                "hfu": self.hfu,
                "peak_flops_per_gpu": self.peak_flops_per_gpu,
            },
            "memory": self.memory.to_dict(),
            "energy": {
                "gpu_J": self.energy.gpu_J,
                "node_overhead_J": self.energy.node_overhead_J,
                "network_J": self.energy.network_J,
                "it_J": self.energy.it_J,
                "facility_J": self.energy.facility_J,
                "pue": self.energy.pue,
                "avg_power_per_gpu_W": self.avg_power_per_gpu_W,
                "J_per_token": self.energy_per_step_J / self.tokens_per_step,
            },
            "simulation": {"n_events": self.n_events, "efficiency_source": self.efficiency_source},
            "notes": self.notes,
            "band": self.band.to_dict() if self.band is not None else None,
        }
