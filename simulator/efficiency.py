"""The named efficiency parameters of one simulation, and where they came from.

trainsim predicts from first principles plus this small set of parameters:
achieved fractions of peak compute and memory bandwidth, of nominal link
bandwidth per link kind, fixed per-kernel and per-collective overheads, and GPU
power per state. :func:`default_efficiency` reads the packaged values
(``efficiency.yaml``, whose ``source`` says how they were obtained); a study may
build its own :class:`Efficiency` (``dataclasses.replace`` changes one part).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml

from simulator.hardware.compute import ComputeEfficiency
from simulator.hardware.power import PowerFractions
from simulator.network.collectives import NetworkEfficiency
from simulator.units import US


@dataclass(frozen=True)
class Efficiency:
    """Compute, network and power parameters, with their provenance."""

    compute: ComputeEfficiency
    network: NetworkEfficiency
    power: PowerFractions
    source: str


@lru_cache(maxsize=1)
def default_efficiency() -> Efficiency:
    """The packaged parameters (``simulator/efficiency.yaml``)."""
    raw = yaml.safe_load(resources.files("simulator").joinpath("efficiency.yaml").read_text())
    c, n = raw["compute"], raw["network"]
    return Efficiency(
        compute=ComputeEfficiency(
            gemm=c["gemm"], attention=c["attention"], memory=c["memory"],
            kernel_overhead_s=c["kernel_overhead_us"] * US,
        ),
        network=NetworkEfficiency(
            nvlink=n["nvlink"], pcie=n["pcie"], nic=n["nic"], fabric=n["fabric"],
            overhead_s=n["collective_overhead_us"] * US,
        ),
        power=PowerFractions(**raw["power"]),
        source=raw["source"],
    )
