"""The correction layer on NCCL's cost model: a few named, physical parameters fitted on nccl-tests.

NCCL's tuner (:mod:`simulator.network.nccl.tuner`) ranks algorithm x protocol choices well
but predicts absolute time only roughly (``nccl-model.md`` §9): too optimistic at 1-64 MiB,
especially across nodes, and by about 15 % at large sizes. trainsim keeps NCCL's choice and
corrects its time::

    t = L_NCCL + L_add + S / (B_NCCL * eta * r(S / n))

- ``eta`` (bandwidth efficiency): on one node ``node_efficiency * (1 - drop / n)``, with the
  drop of the collective's family (all-reduce, gather = all-gather / reduce-scatter,
  all-to-all); across nodes ``inter_efficiency``.
- ``r(x) = 1 / (1 + (inter_ramp_bytes / x) ** inter_ramp_power)``, across nodes only, with x
  the bytes per rank: the size ramp of pipelined chunks (one node has none at >= 1 MiB).
- ``L_add``: ``node_latency_s`` on one node; across nodes ``inter_latency_s`` plus
  ``step_latency_<transport>_s`` per inter-node step (on top of the plugin latency NCCL
  already counts, e.g. aws-ofi-nccl's 75 µs on EFA).

Values are fitted by ``trainsim calibrate`` on the nccl-tests files of the reference set only;
the fit's provenance is the efficiency file's ``fit`` record. Units: seconds, bytes, fractions.
The file states the latencies in microseconds (:mod:`simulator.inputs.efficiency_file`).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from simulator.core.bounds import Fraction, real, span
from simulator.core.errors import InputError
from simulator.network.nccl.tables import check_version

MAX_LATENCY_S = 1e-2
"""The largest latency the correction may add per collective or per inter-node step, seconds."""
MAX_RAMP_BYTES = 1e9
"""The largest half-speed size of the ramp, bytes per rank."""
MAX_RAMP_POWER = 4.0
"""The steepest ramp exponent."""

def _known_version(value: str) -> str:
    try:
        return check_version(value)
    except InputError as err:
        raise ValueError(err.detail) from None


NcclVersion = Annotated[str, AfterValidator(_known_version)]
"""An NCCL version the tuner's tables cover (``"2.27"``); anything else is refused, naming them."""

_FRACTION = span(0, 1, lo_open=True)
_LATENCY = real(0, MAX_LATENCY_S)
_IN_LATENCY = f"seconds, in {span(0, MAX_LATENCY_S)}"


class NetworkEfficiency(BaseModel):
    """The correction of NCCL's estimate (module docstring) and the NCCL version simulated."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    nccl_version: NcclVersion = Field("2.29", description="NCCL version whose tuner the simulation follows, major.minor "
                              "('2.18' ... '2.30', simulator/network/nccl/tables.yaml), e.g. 2.27.")
    node_efficiency: Fraction = Field(0.93, description=f"Bandwidth efficiency on one node before the "
                                      f"group-size drop, in {_FRACTION}.")
    node_drop_all_reduce: real(0, 1) = Field(0.21, description="One-node efficiency drop d of all-reduce, "
                                             "broadcast and reduce: eta = node_efficiency (1 - d / n), in [0, 1].")
    node_drop_gather: real(0, 1) = Field(0.45, description="The drop of all-gather and reduce-scatter, in [0, 1].")
    node_drop_all_to_all: real(0, 1) = Field(0.84, description="The drop of all-to-all and send/recv, in [0, 1].")
    inter_efficiency: Fraction = Field(0.98, description=f"Bandwidth efficiency across nodes, in {_FRACTION}.")
    inter_ramp_bytes: real(0, MAX_RAMP_BYTES) = Field(
        1e3, description=f"Across nodes, bytes per rank at half speed of the size ramp, in {span(0, MAX_RAMP_BYTES)}.")
    inter_ramp_power: real(0, MAX_RAMP_POWER, lo_open=True) = Field(
        0.25, description=f"Exponent of the size ramp, in {span(0, MAX_RAMP_POWER, lo_open=True)}.")
    node_latency_s: _LATENCY = Field(10.5e-6, description=f"Latency added on one node, {_IN_LATENCY}.")
    inter_latency_s: _LATENCY = Field(37.5e-6, description=f"Latency added across nodes, {_IN_LATENCY}.")
    step_latency_ib_s: _LATENCY = Field(0.0, description=f"Per inter-node step on InfiniBand, {_IN_LATENCY}.")
    step_latency_roce_s: _LATENCY = Field(0.0, description=f"Per inter-node step on RoCE, {_IN_LATENCY}.")
    step_latency_efa_s: _LATENCY = Field(0.0, description=f"Per inter-node step on AWS EFA, {_IN_LATENCY}.")
    step_latency_tcpxo_s: _LATENCY = Field(28e-6, description=f"Per inter-node step on GPUDirect-TCPXO, "
                                           f"{_IN_LATENCY}.")
    step_latency_tcpx_s: _LATENCY = Field(759e-6, description=f"Per inter-node step on GPUDirect-TCPX, "
                                          f"{_IN_LATENCY}.")
    step_latency_socket_s: _LATENCY = Field(759e-6, description=f"Per inter-node step on TCP sockets, "
                                            f"{_IN_LATENCY}.")

    def step_latency_s(self, transport: str) -> float:
        """Latency added per inter-node step on ``transport`` (one of
        :data:`simulator.network.nccl.system.TRANSPORTS`), seconds."""
        return getattr(self, f"step_latency_{transport}_s")


NOMINAL = NetworkEfficiency(
    node_efficiency=1.0, node_drop_all_reduce=0.0, node_drop_gather=0.0, node_drop_all_to_all=0.0,
    inter_efficiency=1.0, inter_ramp_bytes=0.0, node_latency_s=0.0, inter_latency_s=0.0,
    **{name: 0.0 for name in NetworkEfficiency.model_fields if name.startswith("step_latency_")},
)
"""NCCL's own estimate, uncorrected (used when no efficiency is given)."""
