"""The named efficiency parameters of one simulation, and where they came from.

trainsim predicts from first principles plus this small set of parameters:
achieved fractions of peak compute and memory bandwidth, of nominal link
bandwidth per link kind, fixed per-kernel and per-collective overheads, and GPU
power per state. :func:`default_efficiency` reads the packaged values
(``efficiency.yaml``, whose ``source`` says how they were obtained); a study may
build its own :class:`Efficiency` (``dataclasses.replace`` changes one part).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from simulator.hardware.compute import ComputeEfficiency
from simulator.hardware.power import PowerFractions
from simulator.network.collectives import NetworkEfficiency
from simulator.units import US


@dataclass(frozen=True)
class Efficiency:
    """Compute, network and power parameters, with their provenance (``fit``: how they were
    fitted, as written by ``trainsim calibrate``; None for priors)."""

    compute: ComputeEfficiency
    network: NetworkEfficiency
    power: PowerFractions
    source: str
    fit: dict[str, Any] | None = field(default=None, compare=False)


def efficiency_from_dict(raw: dict[str, Any]) -> Efficiency:
    """An :class:`Efficiency` from the YAML layout of ``efficiency.yaml`` (input units)."""
    c, n = raw["compute"], raw["network"]
    return Efficiency(
        compute=ComputeEfficiency(
            gemm=c["gemm"], gemm_by_generation=c.get("gemm_by_generation") or {}, gemm_of_mamf=c.get("gemm_of_mamf"),
            gemm_half_dim=c.get("gemm_half_dim", 0), attention=c["attention"], memory=c["memory"],
            kernel_overhead_s=c["kernel_overhead_us"] * US,
        ),
        network=NetworkEfficiency(
            nvlink=n["nvlink"], pcie=n["pcie"], nic=n["nic"], fabric=n["fabric"],
            overhead_s=n["collective_overhead_us"] * US,
        ),
        power=PowerFractions(**raw["power"]),
        source=raw["source"],
        fit=raw.get("fit"),
    )


def efficiency_to_dict(eff: Efficiency) -> dict[str, Any]:
    """The YAML layout of ``efficiency.yaml`` (input units), the inverse of :func:`efficiency_from_dict`."""
    c, n = eff.compute, eff.network
    return {
        "compute": {"gemm": c.gemm, "gemm_by_generation": dict(c.gemm_by_generation), "gemm_of_mamf": c.gemm_of_mamf,
                    "gemm_half_dim": c.gemm_half_dim, "attention": c.attention, "memory": c.memory,
                    "kernel_overhead_us": c.kernel_overhead_s / US},
        "network": {"nvlink": n.nvlink, "pcie": n.pcie, "nic": n.nic, "fabric": n.fabric,
                    "collective_overhead_us": n.overhead_s / US},
        "power": eff.power.model_dump(),
        "source": eff.source,
        "fit": eff.fit,
    }


@lru_cache(maxsize=1)
def default_efficiency() -> Efficiency:
    """The packaged parameters (``simulator/efficiency.yaml``)."""
    return efficiency_from_dict(yaml.safe_load(resources.files("simulator").joinpath("efficiency.yaml").read_text()))
