"""Links shared by concurrent transfers: a flow-level model on SimPy.

A *flow* moves ``link_bytes[i]`` bytes over each link ``link_ids[i]`` at the same
time (one transfer, or a whole class of identical transfers with the load that
class puts on each link, such as a :class:`~simulator.network.phases.Phase`).

Sharing model
-------------
Alone, flow f takes ``T_f = max over its links L of bytes_fL / bandwidth_L``: its
bottleneck link is busy all the time and the others proportionally less. When
flows overlap, each progresses at a *speed* ``s_f`` in (0, 1], the fraction of
its standalone speed; at speed s it uses ``s * bytes_fL / T_f`` bytes/s of link L.
Speeds are max-min fair (progressive filling): all speeds rise together from 0;
when a link becomes full, the flows crossing it freeze at the current speed;
the others keep rising, up to 1. So a flow throttled on one link leaves the
capacity it cannot use elsewhere to others, and no link ever carries more than
its bandwidth. Speeds are recomputed when a flow starts or ends, and completion
times rescheduled (a generation counter per flow discards the stale timeouts,
which SimPy cannot cancel). ``latency_s`` is a pure delay before a flow's bytes
start moving; it occupies no link.

Fast path: when a new flow fits at full speed (no link over capacity with it
added) and no flow is throttled, it starts at speed 1 and nothing else is
recomputed; likewise when a flow ends while nothing is throttled. Then a flow
costs a few small numpy operations. Measured on a shared 2-core machine:
100,000 sequential non-contending flows of 50 links each run in 0.65-0.9 s
(7-9 us per flow, of which ~2.5 us is SimPy's own event handling); a cached
collective plan through :meth:`FlowNetwork.run` costs ~9 us per phase.

Note on monotonicity: like every work-conserving max-min allocation, this one is
not monotone in link bandwidth for *other* flows: raising the bandwidth of a
link that throttles flow A lets A take more of another link it shares with
flow B, which can make B finish later (a test pins a hand-computed case). For
flows that each cross one link (processor sharing per link), more bandwidth
never delays any flow.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from simulator.core.errors import InputError, SimulationError

_TOL = 1e-9  # relative slack on link capacity (float accumulation)
_max = np.maximum.reduce  # cheaper than ndarray.max() on the fast path
_min = np.minimum.reduce


class _Flow:
    __slots__ = (
        "seq",
        "links",
        "occ",
        "real",
        "T",
        "u",
        "speed",
        "rem",
        "t_upd",
        "gen",
        "done",
        "on_done",
        "issued",
        "ended",
        "latency",
        "tag",
    )


@dataclass(frozen=True)
class FlowRecord:
    """What happened to one finished flow (times in seconds of simulated time).

    ``standalone_s`` = latency + T (its time alone); ``actual_s`` = end - issue.
    ``slowdown`` = actual / standalone (1 = not slowed by sharing).
    """

    tag: Any
    issued_s: float
    ended_s: float
    latency_s: float
    standalone_s: float

    @property
    def actual_s(self) -> float:
        return self.ended_s - self.issued_s

    @property
    def slowdown(self) -> float:
        return self.actual_s / self.standalone_s if self.standalone_s > 0 else 1.0


class FlowNetwork:
    """Links with bandwidth shared max-min fairly by the flows crossing them.

    A :class:`~simulator.network.fabric.Fabric` (:meth:`collective`, :meth:`run`): the step
    engine's default network.

    Args:
        env: the SimPy environment.
        bandwidth_Bps: capacity of every link, bytes/s, by link id (> 0).
        link_kind: optional kind of every link (for :meth:`bytes_by_kind`).
        keep_records: keep every finished flow for :meth:`records` (memory grows
            with the number of flows; turn off for long runs).

    Raises:
        InputError: a non-positive or non-finite bandwidth, or a ``link_kind`` of
            the wrong length.
    """

    def __init__(
        self,
        env: simpy.Environment,
        bandwidth_Bps: np.ndarray,
        link_kind: Sequence[str] | None = None,
        *,
        keep_records: bool = True,
    ):
        bw = np.array(bandwidth_Bps, dtype=float)
        if bw.ndim != 1 or not np.all(np.isfinite(bw)) or np.any(bw <= 0):
            raise InputError("link bandwidths must be a 1-D array of finite numbers > 0 bytes/s", field="bandwidth_Bps")
        if link_kind is not None and len(link_kind) != bw.size:
            raise InputError(f"{len(link_kind)} link kinds for {bw.size} links", field="link_kind")
        self.env = env
        self.bandwidth_Bps = bw
        self.link_kind = list(link_kind) if link_kind is not None else None
        self._cap = bw * (1 + _TOL)
        self._may_fill = bw * (1 - 1e-6)  # a link whose demand at full speed is below this never fills
        self._load = np.zeros_like(bw)  # bytes/s in use per link
        self._moved = np.zeros_like(bw)  # bytes delivered per link by _finished[:_n_counted]
        self._n_counted = 0
        self._uncounted: dict[tuple[int, int], list] = {}  # keep_records=False: (links, bytes, flows)
        self._active: dict[int, _Flow] = {}  # moving flows (latency over), in start order
        self._n_throttled = 0
        self._alone: _Flow | None = None  # the only moving flow, load not entered
        self._seq = 0
        self._pending = 0  # issued, not finished
        self._finished: list[_Flow] = []
        self._keep = keep_records
        self._recomputes = 0
        self._prepared: dict[int, tuple] = {}  # run(): per plan

    @classmethod
    def for_topology(cls, env: simpy.Environment, topology: Any) -> "FlowNetwork":
        """A network over a topology's links at their nominal bandwidth."""
        return cls(env, topology.bandwidth_Bps, topology.link_kind)

    # -- public -----------------------------------------------------------------------
    def transfer(self, link_ids, link_bytes, latency_s: float = 0.0, *, tag: Any = None) -> simpy.Event:
        """Start a flow now; the returned event fires when its last byte arrives.

        Args:
            link_ids: distinct link ids (int array-like).
            link_bytes: bytes over each of them (float array-like, >= 0).
            latency_s: delay before the bytes start moving, seconds (>= 0).
            tag: anything, kept in the flow's :class:`FlowRecord`.

        Raises:
            InputError: mismatched lengths, negative bytes or latency.
        """
        links = np.asarray(link_ids, dtype=np.intp)
        b = np.asarray(link_bytes, dtype=float)
        if links.shape != b.shape or links.ndim != 1:
            raise InputError(f"{links.size} link ids but {b.size} byte counts", field="link_bytes")
        if b.size and not _min(b) >= 0:
            raise InputError("byte counts must be >= 0 (and not NaN)", field="link_bytes")
        if not latency_s >= 0:
            raise InputError(f"latency {latency_s!r} must be >= 0 seconds", field="latency_s")
        return self._issue(links, b, b, float(latency_s), tag)

    def run(self, plan: Any) -> Generator[simpy.Event, Any, None]:
        """SimPy process body running a collective plan's phases one after another.

        ``env.process(net.run(plan))``: one flow per phase, each with its latency (a plan alone
        takes ``plan.standalone_time_s()``: its bytes are scaled to the NCCL-corrected time on
        nominal bandwidth, :mod:`simulator.network.collectives`). The link ids must be those of
        this network (the plan's topology).
        """
        Ts = self._prepare(plan)
        for i, phase in enumerate(plan.phases):
            tag = (plan.kind, plan.algorithm, i)
            yield self._issue(phase.link_ids, phase.link_bytes, phase.link_bytes, phase.latency_s, tag, Ts[i])

    def collective(self, plan: Any, on_done: Callable[[], None] | None = None) -> simpy.Event | None:
        """Start a collective plan now; the returned event fires when it completes.

        The same timing as ``env.process(self.run(plan))``, but a single-phase plan (every plan
        of :func:`~simulator.network.collectives.plan_collective`) becomes one flow: no process,
        two events fewer. With ``on_done``, no event is made: ``on_done()`` is called at the
        moment the collective completes, and ``None`` is returned. This is the hot path of the
        step simulation.
        """
        if len(plan.phases) != 1:
            proc = self.env.process(self.run(plan))
            if on_done is None:
                return proc
            proc.callbacks.append(lambda _ev: on_done())
            return None
        Ts = self._prepare(plan)
        phase = plan.phases[0]
        return self._issue(phase.link_ids, phase.link_bytes, phase.link_bytes, phase.latency_s,
                           (plan.kind, plan.algorithm, 0), Ts[0], on_done)

    def _prepare(self, plan: Any) -> list[float]:
        """The standalone time of each phase of ``plan`` on this network, cached per plan."""
        key = id(plan)
        prepared = self._prepared.get(key)
        if prepared is None:  # the plan is kept in the value, so its id stays valid
            prepared = self._prepared[key] = (plan, [self._standalone(p.link_ids, p.link_bytes) for p in plan.phases])
        return prepared[1]

    @property
    def pending(self) -> int:
        """Flows issued and not finished."""
        return self._pending

    @property
    def link_load_Bps(self) -> np.ndarray:
        """Bytes/s in use on every link right now (a copy)."""
        load = self._load.copy()
        if self._alone is not None:
            f = self._alone
            load[f.links] += f.occ / f.T
        return load

    @property
    def bytes_by_link(self) -> np.ndarray:
        """Bytes delivered over every link by finished flows (a copy)."""
        self._count_moved()
        return self._moved.copy()

    def _count_moved(self) -> None:
        # Accumulated on demand, not per flow, to keep the fast path short.
        for links, real, count in self._uncounted.values():
            np.add.at(self._moved, links, real * count)
        self._uncounted.clear()
        new = self._finished[self._n_counted :]
        if new:
            ids = np.concatenate([f.links for f in new])
            w = np.concatenate([f.real for f in new])
            self._moved += np.bincount(ids, weights=w, minlength=self._moved.size)
            self._n_counted = len(self._finished)

    def bytes_by_kind(self) -> dict[str, float]:
        """Bytes delivered by finished flows, summed by link kind (needs ``link_kind``)."""
        if self.link_kind is None:
            raise InputError("this network was built without link kinds", field="link_kind")
        self._count_moved()
        out: dict[str, float] = {}
        for kind, moved in zip(self.link_kind, self._moved):
            out[kind] = out.get(kind, 0.0) + float(moved)
        return out

    def records(self) -> list[FlowRecord]:
        """One :class:`FlowRecord` per finished flow, in finishing order (empty if not kept)."""
        return [FlowRecord(f.tag, f.issued, f.ended, f.latency, f.latency + f.T) for f in self._finished]

    @property
    def n_recomputes(self) -> int:
        """How many times the max-min speeds were recomputed (slow path)."""
        return self._recomputes

    def check_idle(self) -> None:
        """Raise :class:`SimulationError` if flows are still pending (call after ``env.run()``)."""
        if self._pending:
            tags = [f.tag for f in self._active.values()][:5]
            raise SimulationError(f"{self._pending} flows never finished (first tags: {tags})")

    # -- mechanics --------------------------------------------------------------------
    def _standalone(self, links: np.ndarray, occ: np.ndarray) -> float:
        """T = max(occ / bandwidth) over the flow's links, seconds (0 without links)."""
        return float(_max(occ / self.bandwidth_Bps[links])) if links.size else 0.0

    def _issue(
        self, links: np.ndarray, occ: np.ndarray, real: np.ndarray, latency: float, tag: Any, T: float | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> simpy.Event | None:
        env = self.env
        f = _Flow()
        f.T = self._standalone(links, occ) if T is None else T
        f.seq = self._seq
        self._seq += 1
        f.links, f.occ, f.real, f.latency, f.tag = links, occ, real, latency, tag
        f.on_done = on_done
        f.done = done = env.event() if on_done is None else None
        f.issued = env.now
        f.gen = 0
        self._pending += 1
        if latency > 0:
            env.timeout(latency, f).callbacks.append(self._on_latency)
        else:
            self._begin(f)
        return done

    def _on_latency(self, ev: simpy.Event) -> None:
        self._begin(ev.value)

    def _begin(self, f: _Flow) -> None:
        f.t_upd = self.env.now
        links = f.links
        T = f.T
        if T <= 0.0:
            self._finish(f)
            return
        f.rem = 1.0
        active = self._active
        if not active:
            # Idle network: the flow runs alone at full speed. Its load enters
            # self._load (all zero now) only if another flow starts meanwhile.
            f.speed = 1.0
            active[f.seq] = f
            self._alone = f
            self.env.timeout(T, (f, 0)).callbacks.append(self._on_due)
            return
        if self._alone is not None:
            self._materialize()
        u = f.occ / T
        f.u = u
        if self._n_throttled == 0:
            new = self._load[links] + u
            if (new <= self._cap[links]).all():
                self._load[links] = new
                f.speed = 1.0
                active[f.seq] = f
                self.env.timeout(T, (f, 0)).callbacks.append(self._on_due)
                return
        f.speed = 0.0  # not scheduled yet
        active[f.seq] = f
        self._rebalance()

    def _materialize(self) -> None:
        f, self._alone = self._alone, None
        f.u = f.occ / f.T
        self._load[f.links] = f.u

    def _on_due(self, ev: simpy.Event) -> None:
        """A flow's scheduled completion (ignored if a later rescheduling superseded it)."""
        f, gen = ev.value
        if f.gen != gen:
            return
        active = self._active
        del active[f.seq]
        if f is self._alone:
            self._alone = None  # its load was never entered
        elif not active:
            # The load was this flow's alone; zeroing also clears rounding residue.
            self._load[f.links] = 0.0
        elif self._n_throttled == 0:
            self._load[f.links] -= f.u  # speed was 1
        self._finish(f)
        if self._n_throttled:
            self._rebalance()

    def _finish(self, f: _Flow) -> None:
        f.ended = self.env.now
        self._pending -= 1
        if self._keep:
            self._finished.append(f)  # bytes counted on demand (_count_moved)
        elif f.links.size:
            # count finished flows per (links, bytes) pair; the arrays are added up on demand
            key = (id(f.links), id(f.real))
            entry = self._uncounted.get(key)
            if entry is None:
                self._uncounted[key] = [f.links, f.real, 1]
            else:
                entry[2] += 1
        if f.on_done is None:
            f.done.succeed()
        else:
            f.on_done()

    def _rebalance(self) -> None:
        """Recompute max-min speeds of all moving flows and reschedule those that changed.

        Only links that can fill enter the progressive filling: those crossed by two or more
        moving flows whose demand at full speed exceeds the link's bandwidth. A link crossed by
        one flow never holds it below full speed (a flow's demand is at most the bandwidth of
        each of its links), nor does a link whose total demand fits, so the speeds are those of
        the filling over every link. In full mode a data-parallel ring crosses every replica's
        links but shares few of them at any moment, so this keeps the filling small.
        """
        self._recomputes += 1
        now = self.env.now
        flows = list(self._active.values())
        for f in flows:
            if f.speed > 0:
                f.rem = max(0.0, f.rem - (now - f.t_upd) * f.speed / f.T)
            f.t_upd = now
        idx = np.concatenate([f.links for f in flows])
        val = np.concatenate([f.u for f in flows])
        fid = np.repeat(np.arange(len(flows)), [f.links.size for f in flows])
        n_links = self._load.size
        demand = np.bincount(idx, weights=val, minlength=n_links)
        crossing = np.bincount(idx, minlength=n_links)
        hot = np.flatnonzero((crossing[idx] > 1) & (demand[idx] > self._may_fill[idx]))
        speeds = _progressive_filling(idx[hot], val[hot], fid[hot], len(flows), self.bandwidth_Bps)
        # per link, the same additions in the same order as adding s * u flow by flow from 0
        self._load = np.bincount(idx, weights=speeds[fid] * val, minlength=n_links)
        n_throttled = 0
        for f, s in zip(flows, speeds.tolist()):
            if s < 1.0 - 1e-12:
                n_throttled += 1
            else:
                s = 1.0
            if s != f.speed:
                f.speed = s
                f.gen += 1
                self.env.timeout(f.rem * f.T / s, (f, f.gen)).callbacks.append(self._on_due)
        self._n_throttled = n_throttled


def max_min_speeds(
    links: Sequence[np.ndarray], demand_Bps: Sequence[np.ndarray], bandwidth_Bps: np.ndarray
) -> np.ndarray:
    """Max-min fair speeds in (0, 1] by progressive filling.

    Flow i, at speed s_i, uses ``s_i * demand_Bps[i][k]`` bytes/s of link
    ``links[i][k]``. All unfrozen speeds rise together; when a link fills, the
    flows crossing it freeze; speeds stop at 1. Returns one speed per flow.
    """
    if not links:
        return np.ones(0)
    idx = np.concatenate(links)
    fid = np.repeat(np.arange(len(links)), [len(x) for x in links])
    return _progressive_filling(idx, np.concatenate(demand_Bps), fid, len(links), bandwidth_Bps)


def _progressive_filling(idx: np.ndarray, val: np.ndarray, fid: np.ndarray, n: int, bandwidth_Bps: np.ndarray
                         ) -> np.ndarray:
    """Speeds of ``n`` flows from their (link id, demand, flow index) entries, entries in flow order.

    Each round sums the demand of the unfrozen flows per link (entries in flow order), takes the
    lowest level at which a link fills, and freezes every flow crossing a link within 1e-12 of it.
    Frozen flows' entries are dropped from the arrays (order kept), so later rounds are smaller.
    A flow without entries runs at speed 1.
    """
    speeds = np.ones(n)
    if not idx.size:
        return speeds
    used, inv = np.unique(idx, return_inverse=True)  # the links crossed, in increasing order
    cap = bandwidth_Bps[used]
    frozen_load = np.zeros(used.size)
    level_at = np.empty(used.size)
    l_inv, l_val, l_fid = inv, val, fid  # the entries of flows not frozen yet
    while l_fid.size:
        U = np.bincount(l_inv, weights=l_val, minlength=used.size)
        has = U > 0
        level_at.fill(np.inf)
        level_at[has] = (cap[has] - frozen_load[has]) / U[has]
        level = float(level_at.min())
        if level >= 1.0:
            break  # the rest run at full speed
        level = max(level, 0.0)
        full = level_at <= level * (1 + 1e-12) + 1e-300
        hit = np.zeros(n, dtype=bool)
        hit[l_fid[full[l_inv]]] = True
        speeds[hit] = level
        entries = hit[l_fid]
        frozen_load += np.bincount(l_inv[entries], weights=level * l_val[entries], minlength=used.size)
        rest = ~entries
        l_inv, l_val, l_fid = l_inv[rest], l_val[rest], l_fid[rest]
    return speeds
