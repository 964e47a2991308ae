"""The memo of collective planning for one topology.

Each :class:`simulator.network.topology.Topology` owns one :class:`PlanCache`
(``topology.plan_cache``), which :mod:`simulator.network.collectives` and
:mod:`simulator.network.nccl.from_topology` fill. It lives exactly as long as its topology:
plans refer to their topology, so a registry keyed by topology would keep every topology alive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class PlanCache:
    """Plans and the size-independent work behind them, for one topology.

    Attributes:
        plans: ``(kind, groups, bytes, algorithm, efficiency, generation)`` -> the plan.
        checked_groups: ``(kind, groups)`` -> the validated groups.
        unit_phases: ``(kind, pattern, groups)`` -> the link loads of the pattern for a 1-byte
            buffer, and its bandwidth time on nominal links for the first group alone.
        nccl_systems: ``(group shape, generation, NCCL version)`` (and ``(group, generation
            argument, version)``) -> the
            :class:`~simulator.network.nccl.system.NcclSystem` of such a communicator.
    """

    plans: dict[tuple, Any] = field(default_factory=dict)
    checked_groups: dict[tuple, Any] = field(default_factory=dict)
    unit_phases: dict[tuple, tuple] = field(default_factory=dict)
    nccl_systems: dict[tuple, Any] = field(default_factory=dict)
