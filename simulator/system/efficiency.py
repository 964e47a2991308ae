"""The named efficiency parameters one simulation takes: compute, network and power, and where
they came from. :mod:`simulator.inputs.efficiency_file` reads them from a file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from simulator.hardware.compute import ComputeEfficiency
from simulator.hardware.power import PowerFractions
from simulator.network.efficiency import NetworkEfficiency


@dataclass(frozen=True)
class Efficiency:
    """Compute, network and power parameters, with their provenance (``fit``: how they were
    fitted, as written by ``trainsim calibrate``; None for priors;
    ``network_fit``: likewise for the network section, fitted on nccl-tests files)."""

    compute: ComputeEfficiency
    network: NetworkEfficiency
    power: PowerFractions
    source: str
    fit: dict[str, Any] | None = field(default=None, compare=False)
    network_fit: dict[str, Any] | None = field(default=None, compare=False)
