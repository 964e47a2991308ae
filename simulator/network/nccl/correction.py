"""trainsim's correction of NCCL's time estimate for one collective (``nccl-model.md`` §9).

NCCL's tuner (:mod:`simulator.network.nccl.tuner`) picks an algorithm x protocol and
estimates ``t = L + S / B``; trainsim keeps that choice and corrects its time by the formula of
:class:`~simulator.network.efficiency.NetworkEfficiency` (defined in its docstring), with
``L_NCCL`` the choice's ``latency_us`` (µs -> s), ``B_NCCL`` its ``bandwidth_GBps`` (GB/s ->
bytes/s), ``n = system.n_ranks`` and ``n_inter`` the choice's inter-node steps.

With :data:`~simulator.network.efficiency.NOMINAL` the result is NCCL's own estimate
``latency_us * 1e-6 + S / (bandwidth_GBps * 1e9)``. Zero bytes or a single rank cost 0 s.
"""

from __future__ import annotations

from simulator.core.errors import InputError
from simulator.network.efficiency import NetworkEfficiency
from simulator.network.nccl.choice import Choice
from simulator.network.nccl.system import NcclSystem

FAMILY = {
    "all_reduce": "all_reduce", "broadcast": "all_reduce", "reduce": "all_reduce",
    "all_gather": "gather", "reduce_scatter": "gather",
    "all_to_all": "all_to_all", "send_recv": "all_to_all",
}
"""Collective kind -> the family whose one-node drop applies."""


def efficiency_factor(system: NcclSystem, kind: str, eff: NetworkEfficiency) -> float:
    """``eta``: the bandwidth efficiency of ``kind`` on ``system`` (a fraction)."""
    family = FAMILY.get(kind)
    if family is None:
        raise InputError(f"unknown collective kind {kind!r}; use one of {', '.join(FAMILY)}", field="kind")
    if system.n_nodes > 1:
        return eff.inter_efficiency
    drop = getattr(eff, f"node_drop_{family}")
    return eff.node_efficiency * (1.0 - drop / system.n_ranks)


def ramp(system: NcclSystem, nbytes: float, eff: NetworkEfficiency) -> float:
    """``r(S / n)``: the size ramp across nodes (1 on one node or without a ramp)."""
    if system.n_nodes <= 1 or eff.inter_ramp_bytes <= 0.0:
        return 1.0
    per_rank = nbytes / system.n_ranks
    return 1.0 / (1.0 + (eff.inter_ramp_bytes / per_rank) ** eff.inter_ramp_power)


def added_latency_s(system: NcclSystem, n_inter: int, eff: NetworkEfficiency) -> float:
    """``L_add``, seconds: one node's constant, or across nodes the constant plus the
    transport's latency per inter-node step (``n_inter`` steps)."""
    if system.n_nodes <= 1:
        return eff.node_latency_s
    return eff.inter_latency_s + n_inter * eff.step_latency_s(system.transport)


def corrected_time_s(system: NcclSystem, choice: Choice, nbytes: float, eff: NetworkEfficiency) -> float:
    """Time of one collective of ``nbytes`` (nccl-tests size S, bytes) as NCCL chose it
    (``choice``), corrected by ``eff``; seconds."""
    if nbytes <= 0 or system.n_ranks <= 1:
        return 0.0
    bandwidth_Bps = choice.bandwidth_GBps * 1e9
    if bandwidth_Bps <= 0:
        raise ValueError(f"{choice.algorithm}/{choice.protocol} has no bandwidth; NCCL would not choose it")
    eta = efficiency_factor(system, choice.kind, eff)
    r = ramp(system, nbytes, eff)
    return (choice.latency_us * 1e-6 + added_latency_s(system, choice.n_inter, eff)
            + nbytes / (bandwidth_Bps * eta * r))
