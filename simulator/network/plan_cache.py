"""The memo of collective planning for one topology.

Each :class:`simulator.network.topology.Topology` owns one :class:`PlanCache`
(``topology.plan_cache``), which :mod:`simulator.network.collectives` fills. It lives
exactly as long as its topology: plans refer to their topology, so a registry keyed by
topology would keep every topology alive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class PlanCache:
    """Plans and the size-independent work behind them, for one topology.

    Attributes:
        plans: ``(kind, groups, bytes, algorithm, efficiency or None)`` -> the plan.
        checked_groups: ``(kind, groups)`` -> (the validated groups, the algorithms
            ``"auto"`` chooses among).
        unit_phases: ``(kind, algorithm, groups)`` -> the phases for a 1-byte buffer
            (every phase's link bytes are linear in the buffer size).
    """

    plans: dict[tuple, Any] = field(default_factory=dict)
    checked_groups: dict[tuple, tuple] = field(default_factory=dict)
    unit_phases: dict[tuple, tuple] = field(default_factory=dict)
