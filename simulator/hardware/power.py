"""Energy of a timeline: power per device state integrated over time.

A GPU is in one of three states: *computing* (draws ``power.compute x TDP``),
*communicating* only (``power.communicate x TDP``) or *idle* (the catalog's
idle draw). Communication hidden behind compute costs nothing extra here: the
GPU is already in the computing state. Node power other than GPUs (CPUs,
memory, NICs, fans) and switch power come from the topology and are drawn for
the whole step; the facility's PUE multiplies everything.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from simulator.core.bounds import real, span

_DRAW = real(0, 1.2, lo_open=True)


class PowerFractions(BaseModel):
    """GPU power draw per state as a fraction of TDP (idle draw comes from the catalog)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    compute: _DRAW = Field(description=f"Draw while computing, fraction of TDP, in {span(0, 1.2, lo_open=True)}.")
    communicate: _DRAW = Field(description="Draw while only communicating, fraction of TDP, in "
                               f"{span(0, 1.2, lo_open=True)}.")


@dataclass(frozen=True)
class StateTimes:
    """Seconds one GPU spent in each state during a step."""

    compute_s: float
    communicate_s: float
    idle_s: float


def gpu_energy_J(times: StateTimes, tdp_W: float, idle_W: float, fractions: PowerFractions) -> float:
    """Joules one GPU draws over ``times``."""
    return (
        times.compute_s * fractions.compute * tdp_W
        + times.communicate_s * fractions.communicate * tdp_W
        + times.idle_s * idle_W
    )


@dataclass(frozen=True)
class StepEnergy:
    """Energy of one step for the whole fleet, joules."""

    gpu_J: float
    node_overhead_J: float
    network_J: float
    pue: float

    @property
    def it_J(self) -> float:
        """IT energy: GPUs, rest of the nodes and the network."""
        return self.gpu_J + self.node_overhead_J + self.network_J

    @property
    def facility_J(self) -> float:
        """IT energy times PUE."""
        return self.it_J * self.pue


def step_energy(stage_times: list[StateTimes], gpus_per_stage: int, *, tdp_W: float, idle_W: float,
                fractions: PowerFractions, nodes_W: float, switches_W: float, step_s: float,
                pue: float) -> StepEnergy:
    """Energy of one step of the fleet: each pipeline stage's GPU state times (one GPU's),
    times the ``gpus_per_stage`` GPUs that behave like it, plus node and switch power for the
    whole step, joules."""
    gpu_J = sum(gpu_energy_J(t, tdp_W, idle_W, fractions) for t in stage_times) * gpus_per_stage
    return StepEnergy(gpu_J=gpu_J, node_overhead_J=nodes_W * step_s, network_J=switches_W * step_s, pue=pue)
