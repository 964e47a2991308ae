"""A simulated step as a Chrome trace (Trace Event Format), for Perfetto and chrome://tracing.

``trainsim run SCENARIO --trace step.json`` writes :func:`chrome_trace` of the
step; open the file at https://ui.perfetto.dev or chrome://tracing.

Layout: one process per data-parallel replica (in ``representative`` mode only
replica 0, which stands for all), and in it per pipeline stage a compute track
(forward ``F``, backward ``B``, optimizer, and the waits of the stage: pipeline
bubble or synchronisation stall) and a communication track (pipeline sends,
data-parallel gradient buckets, parameter gathers, the tied-embedding gradient
sync). Communication events of one stage can overlap in time; the format wants
the events of one track to nest, so overlapping ones go to extra tracks
("stage i comm 2", ...). Times are microseconds from the start of the step.

Data-parallel collectives (gradient buckets, parameter gathers, embedding sync)
involve every replica; in ``full`` mode they are shown on every replica's comm
track.

The slices come from the result's typed timeline events (``StepResult.events``, see
:mod:`simulator.system.engine.events`): each renders itself, with what the engine knew when it
recorded it (e.g. the direction and destination of a pipeline send).
"""

from __future__ import annotations

from typing import Any

from simulator.results.step import StepResult
from simulator.system.engine import WAIT_TYPES, TimelineEvent, TraceLayout, microseconds

WAIT_KIND = {wait.name: wait.counted_as for wait in WAIT_TYPES}
"""What the breakdown counts each kind of wait as (see simulator.system.engine.stage)."""

Track = list[tuple[dict[str, Any], float]]  # slices and their end (microseconds), in timeline order


def _lanes(intervals: list[tuple[float, float]]) -> list[int]:
    """Greedy interval partitioning: the lane of each (start, end), such that the intervals of a
    lane do not overlap (touching is fine); lanes are reused lowest-first."""
    order = sorted(range(len(intervals)), key=lambda k: intervals[k])
    lane_end: list[float] = []
    lanes = [0] * len(intervals)
    for k in order:
        start, end = intervals[k]
        for j, busy_until in enumerate(lane_end):
            if busy_until <= start:
                lane_end[j] = end
                lanes[k] = j
                break
        else:
            lanes[k] = len(lane_end)
            lane_end.append(end)
    return lanes


def chrome_trace(result: StepResult) -> dict[str, Any]:
    """The step's timeline as a Trace Event Format document (a JSON-serialisable dict).

    Requires a result simulated with ``record_timeline=True`` (the default of
    :func:`simulator.simulate`): it renders ``result.events``; without them the document has
    only the track names.
    """
    plan = result.plan
    layout = TraceLayout(pp=plan.pp, vpp=plan.vpp, dp=plan.dp, zero_stage=plan.zero_stage)
    replicas = sorted({e.replica for e in result.events} | {0})
    if result.mode == "full":
        replicas = sorted(set(replicas) | set(range(layout.dp)))
    compute, comm = _tracks_by_stage(result.events, layout, replicas if result.mode == "full" else None)
    meta: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for rep in replicas:
        pname = (f"representative replica (stands for all {layout.dp})" if result.mode == "representative"
                 else f"replica {rep}")
        _add_process(meta, events, rep, pname, layout.pp, compute, comm)
    events.sort(key=lambda e: (e["pid"], e["tid"], e["ts"]))
    return {"traceEvents": meta + events, "displayTimeUnit": "ms", "otherData": _other_data(result, layout.dp)}


def _tracks_by_stage(timeline: list[TimelineEvent], layout: TraceLayout, all_replicas: list[int] | None
                     ) -> tuple[dict[tuple[int, int], Track], dict[tuple[int, int], Track]]:
    """(compute, comm) slices by (replica, stage); with ``all_replicas``, a data-parallel
    collective is on the comm track of each of them."""
    compute: dict[tuple[int, int], Track] = {}
    comm: dict[tuple[int, int], Track] = {}
    for e in timeline:
        slices = e.slices(layout)
        if not slices:
            continue
        tracks = comm if e.stream == "comm" else compute
        end = microseconds(e.end_s)
        targets = all_replicas if (all_replicas is not None and e.involves_all_replicas) else [e.replica]
        for t in targets:
            track = tracks.setdefault((t, e.stage), [])
            for piece in slices:
                track.append((dict(piece), end))
    return compute, comm


def _add_process(meta: list[dict[str, Any]], events: list[dict[str, Any]], rep: int, pname: str, pp: int,
                 compute: dict[tuple[int, int], Track], comm: dict[tuple[int, int], Track]) -> None:
    """Replica ``rep``'s process: per stage a compute track and as many comm tracks as overlaps need."""
    pid = rep + 1
    meta.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": pname}})
    meta.append({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0, "args": {"sort_index": rep}})
    tid = 0
    for stage in range(pp):
        tid += 1
        tracks = [(tid, f"stage {stage} compute", [s for s, _ in compute.get((rep, stage), [])])]
        comm_slices = comm.get((rep, stage), [])
        lanes = _lanes([(s["ts"], end) for s, end in comm_slices])
        for lane in range(max(lanes, default=0) + 1):
            tid += 1
            name = f"stage {stage} comm" + (f" {lane + 1}" if lane else "")
            tracks.append((tid, name, [s for (s, _), ln in zip(comm_slices, lanes) if ln == lane]))
        for t, tname, slices in tracks:
            meta.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": t, "args": {"name": tname}})
            meta.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": t, "args": {"sort_index": t}})
            for s in slices:
                s["pid"], s["tid"] = pid, t
                events.append(s)


def _other_data(result: StepResult, dp: int) -> dict[str, Any]:
    other = {
        "generator": "trainsim",
        "scenario": result.scenario,
        "model": result.model,
        "gpu": result.gpu,
        "topology": result.topology,
        "n_gpus": result.n_gpus,
        "mode": result.mode,
        "plan": {k: (list(v) if isinstance(v, tuple) else v) for k, v in result.plan_dict().items()},
        "step_time_s": result.step_time_s,
        "time_unit": "microseconds from the start of the step",
    }
    if result.mode == "representative" and dp > 1:
        other["note"] = (f"representative mode: replica 0 stands for all {dp} data-parallel replicas; "
                         "simulate with --mode full to see every replica")
    return other
