"""How long one device takes for a piece of work: roofline times efficiency.

For an operation with ``F`` FLOPs that moves ``Q`` bytes to and from HBM::

    time = overhead + max(F / (peak_flops * eff_kind), Q / (hbm_Bps * eff_memory))

``eff_kind`` is the achieved fraction of peak for the op's kind (GEMM or fused
attention); element-wise ops are memory bound. The efficiency parameters are a
small named set loaded from ``efficiency.yaml`` (see its ``source``); a user may
pass their own :class:`Efficiency`.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Iterable, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field

from simulator.units import US


class ComputeEfficiency(BaseModel):
    """Achieved fractions of peak (0-1] and per-kernel overhead (seconds)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    gemm: float = Field(gt=0, le=1)
    attention: float = Field(gt=0, le=1)
    memory: float = Field(gt=0, le=1)
    kernel_overhead_s: float = Field(ge=0)


class NetworkEfficiencyParams(BaseModel):
    """Achieved fraction of nominal link bandwidth per link kind, and a per-collective overhead (s)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    nvlink: float = Field(gt=0, le=1)
    pcie: float = Field(gt=0, le=1)
    nic: float = Field(gt=0, le=1)
    fabric: float = Field(gt=0, le=1)
    collective_overhead_s: float = Field(ge=0)


class PowerFractions(BaseModel):
    """GPU power draw per state as a fraction of TDP (idle draw comes from the catalog)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    compute: float = Field(gt=0, le=1.2)
    communicate: float = Field(gt=0, le=1.2)


class Efficiency(BaseModel):
    """All named efficiency parameters of one simulation, with where they came from."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    compute: ComputeEfficiency
    network: NetworkEfficiencyParams
    power: PowerFractions
    source: str


@lru_cache(maxsize=1)
def default_efficiency() -> Efficiency:
    """The packaged parameters (``efficiency.yaml``)."""
    raw = yaml.safe_load(resources.files("simulator.hardware").joinpath("efficiency.yaml").read_text())
    c, n = raw["compute"], raw["network"]
    return Efficiency(
        compute=ComputeEfficiency(
            gemm=c["gemm"], attention=c["attention"], memory=c["memory"],
            kernel_overhead_s=c["kernel_overhead_us"] * US,
        ),
        network=NetworkEfficiencyParams(
            nvlink=n["nvlink"], pcie=n["pcie"], nic=n["nic"], fabric=n["fabric"],
            collective_overhead_s=n["collective_overhead_us"] * US,
        ),
        power=PowerFractions(**raw["power"]),
        source=raw["source"],
    )


class _Op(Protocol):
    kind: str
    flops: float
    bytes: float


class _Device(Protocol):
    hbm_bandwidth_Bps: float

    def peak_flops_for(self, precision: str) -> float: ...


def op_time_s(op: _Op, peak_flops: float, hbm_Bps: float, eff: ComputeEfficiency) -> float:
    """Seconds for one operation (see module docstring)."""
    memory_s = op.bytes / (hbm_Bps * eff.memory)
    if op.kind == "elementwise":
        return eff.kernel_overhead_s + memory_s
    rate = peak_flops * (eff.gemm if op.kind == "gemm" else eff.attention)
    return eff.kernel_overhead_s + max(op.flops / rate, memory_s)


def ops_time_s(ops: Iterable[_Op], device: _Device, precision: str, eff: ComputeEfficiency) -> float:
    """Seconds for a sequence of operations run back to back on one stream."""
    peak = device.peak_flops_for(precision)
    return sum(op_time_s(op, peak, device.hbm_bandwidth_Bps, eff) for op in ops)
