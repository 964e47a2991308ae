"""Link efficiency: the achieved fraction of each link's nominal bandwidth, by link kind.

A collective never runs at the nominal bandwidth of its links (protocol headers,
chunking, kernel limits); the network model describes that with one fraction per link
kind (:data:`simulator.network.cabling.LINK_KINDS`) and one fixed overhead per
collective. They are the only free parameters of the network model: a calibration fits
them against nccl-tests measurements, and the simulator's values come from
:mod:`simulator.inputs.efficiency_file`.

Units: fractions are dimensionless in (0, 1]; ``overhead_s`` is seconds; bandwidths
are bytes/s in one direction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from weakref import WeakKeyDictionary

import numpy as np

from simulator.core.bounds import real_problem
from simulator.core.errors import InputError
from simulator.network.cabling import LINK_KINDS
from simulator.network.topology import Topology


@dataclass
class _LinkTables:
    """One topology's link-kind codes and, per efficiency, its factor and bandwidth arrays."""

    kind_codes: np.ndarray
    factors: dict[NetworkEfficiency, np.ndarray] = field(default_factory=dict)
    bandwidth: dict[NetworkEfficiency, np.ndarray] = field(default_factory=dict)


_TABLES: WeakKeyDictionary[Topology, _LinkTables] = WeakKeyDictionary()
# Keyed weakly by topology: the arrays do not refer to their topology, so an entry goes
# away with it.


def _tables(topology: Topology) -> _LinkTables:
    tables = _TABLES.get(topology)
    if tables is None:
        kinds = list(topology.link_kind)
        for kind in set(kinds) - set(LINK_KINDS):
            raise InputError(f"unknown link kind {kind!r}; use one of {', '.join(LINK_KINDS)}", field="kind")
        tables = _TABLES[topology] = _LinkTables(np.array([LINK_KINDS.index(k) for k in kinds], dtype=np.intp))
    return tables


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


MAX_OVERHEAD_S = 1.0
"""The largest fixed cost of one collective, seconds."""


@dataclass(frozen=True)
class NetworkEfficiency:
    """Achieved fraction of nominal link bandwidth, by link kind, and a launch overhead.

    The defaults (every fraction 1.0, no overhead) give the ideal, nominal-bandwidth time.

    Attributes:
        nvlink, pcie, nic, fabric: fraction in (0, 1] of the nominal bandwidth a
            collective achieves on links of that kind.
        overhead_s: fixed time added once per collective (kernel launch and
            synchronisation), seconds, in [0, 1].

    Raises:
        InputError: a fraction outside (0, 1] or an overhead outside [0, 1] s (or not a finite
            number: a boolean, a string, inf or nan).
    """

    nvlink: float = 1.0
    pcie: float = 1.0
    nic: float = 1.0
    fabric: float = 1.0
    overhead_s: float = 0.0

    def __post_init__(self) -> None:
        for kind in LINK_KINDS:
            value = getattr(self, kind)
            problem = real_problem(value, 0.0, 1.0, lo_open=True)
            if problem is not None:
                raise InputError(f"{problem} (got {value!r}): a bandwidth fraction", field=f"efficiency.{kind}")
        problem = real_problem(self.overhead_s, 0.0, MAX_OVERHEAD_S)
        if problem is not None:
            raise InputError(f"{problem} (got {self.overhead_s!r}): seconds per collective",
                             field="efficiency.overhead_s")

    def factor(self, kind: str) -> float:
        """Bandwidth fraction of one link kind; raises :class:`InputError` for an unknown kind."""
        if kind not in LINK_KINDS:
            raise InputError(f"unknown link kind {kind!r}; use one of {', '.join(LINK_KINDS)}", field="kind")
        return float(getattr(self, kind))

    def link_factors(self, topology: Topology) -> np.ndarray:
        """Bandwidth fraction of every link of ``topology``, by edge id (cached; read-only)."""
        tables = _tables(topology)
        factors = tables.factors.get(self)
        if factors is None:
            by_kind = np.array([self.factor(k) for k in LINK_KINDS])
            factors = tables.factors[self] = _read_only(by_kind[tables.kind_codes])
        return factors

    def effective_bandwidth(self, topology: Topology) -> np.ndarray:
        """Achieved bandwidth of every link of ``topology``, bytes/s, by edge id (cached; read-only)."""
        tables = _tables(topology)
        bandwidth = tables.bandwidth.get(self)
        if bandwidth is None:
            nominal = np.asarray(topology.bandwidth_Bps, dtype=float)
            bandwidth = tables.bandwidth[self] = _read_only(nominal * self.link_factors(topology))
        return bandwidth


NOMINAL = NetworkEfficiency()
"""Nominal bandwidth everywhere, no overhead: the ideal time (used when no efficiency is given)."""
