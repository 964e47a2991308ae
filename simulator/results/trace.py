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
"""

from __future__ import annotations

from typing import Any

from simulator.results.step import StepResult

COMPUTE_NAMES = ("F", "B", "optimizer")
WAIT_NAMES = {
    "wait_pp": "pipeline wait",
    "wait_dp": "DP wait",
    "wait_param_gather": "param-gather wait",
    "wait_embedding_sync": "embedding-sync wait",
}
COLLECTIVES = ("dp_bucket", "param_gather", "embedding_sync")
WAIT_KIND = {
    "wait_pp": "pipeline bubble, stall or exposed PP communication",
    "wait_embedding_sync": "pipeline bubble, stall or exposed DP communication",
}
"""What the breakdown counts a wait as (see simulator.system.engine); other waits: stall or
exposed DP communication."""
_WAIT_ON = {
    "wait_pp": "the previous stage's activation (F) or the next stage's gradient (B)",
    "wait_dp": "the data-parallel gradient reduction of this stage",
    "wait_param_gather": "the data-parallel all-gather of the updated parameters",
    "wait_embedding_sync": "the all-reduce of the tied embedding gradients (first and last stage)",
}
_NS = 3  # decimals of microseconds kept: nanoseconds


def _us(seconds: float) -> float:
    return round(float(seconds) * 1e6, _NS)


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
    :func:`simulator.simulate`); without a timeline the document has only the
    track names.
    """
    plan = result.plan
    pp = int(plan.get("pp", 1))
    vpp = int(plan.get("vpp", 1))
    dp = int(plan.get("dp", 1))
    zero = int(plan.get("zero_stage", 0))
    tl = result.timeline
    rows = tl.to_dict("records") if len(tl) else []
    replicas = sorted({int(r["replica"]) for r in rows} | {0})
    if result.mode == "full":
        replicas = sorted(set(replicas) | set(range(dp)))

    def suffix(chunk: int) -> str:
        return f" (chunk {chunk})" if vpp > 1 and chunk >= 0 else ""

    # which compute pass a pipeline send comes from: the F or B that ended when it started
    ends = {(int(r["replica"]), int(r["stage"]), int(r["microbatch"]), int(r["chunk"]), float(r["end_s"])): r["name"]
            for r in rows if r["name"] in ("F", "B")}
    starts = {(int(r["replica"]), int(r["stage"]), int(r["microbatch"]), int(r["chunk"]), float(r["start_s"])):
              r["name"] for r in rows if r["name"] in ("F", "B")}

    compute: dict[tuple[int, int], list[dict]] = {}
    comm: dict[tuple[int, int], list[dict]] = {}
    for r in rows:
        name, rep, stage = r["name"], int(r["replica"]), int(r["stage"])
        mb, chunk = int(r["microbatch"]), int(r["chunk"])
        ts, end = _us(r["start_s"]), _us(r["end_s"])
        args: dict[str, Any] = {"stage": stage}
        if r.get("bytes", 0) > 0:
            args.update(bytes_per_gpu=float(r["bytes"]), collective=r["collective"])
        if name in ("F", "B"):
            label, cat = f"{name} mb {mb}{suffix(chunk)}", "compute"
            args.update(microbatch=mb, chunk=chunk, virtual_stage=chunk * pp + stage)
            args["pass"] = "forward" if name == "F" else "backward"
        elif name == "optimizer":
            label, cat = "optimizer", "compute"
        elif name in WAIT_NAMES or name.startswith("wait_"):
            label, cat = WAIT_NAMES.get(name, name.replace("_", " ")), "bubble"
            args.update(kind=WAIT_KIND.get(name, "stall or exposed DP communication"),
                        waiting_for=_WAIT_ON.get(name, name[5:]))
            nxt = starts.get((rep, stage, mb, chunk, float(r["end_s"]))) if name == "wait_pp" else None
            if nxt is not None:  # the pass that waited: its input is known
                src = (chunk * pp + stage) + (-1 if nxt == "F" else 1)
                what = "activation" if nxt == "F" else "activation gradient"
                args["waiting_for"] = f"the {what} of micro-batch {mb} from stage {src % pp}" + suffix(src // pp)
            if mb >= 0:
                args.update(microbatch=mb, chunk=chunk)
            if end <= ts:  # nothing to see
                continue
        elif name == "pp_send":
            cat = "comm"
            v = chunk * pp + stage
            src = ends.get((rep, stage, mb, chunk, float(r["start_s"])))
            args.update(microbatch=mb, chunk=chunk)
            if src == "F":
                to = v + 1
                label = f"PP send act mb {mb}{suffix(chunk)}"
                args.update(transfer="point-to-point: forward activation to the next pipeline stage")
            elif src == "B":
                to = v - 1
                label = f"PP send grad mb {mb}{suffix(chunk)}"
                args.update(transfer="point-to-point: backward activation gradient to the previous pipeline stage")
            else:
                to = None
                label = f"PP send mb {mb}{suffix(chunk)}"
                args.update(transfer="point-to-point between pipeline stages")
            if to is not None:
                args.update(to_stage=to % pp, to_chunk=to // pp)
        elif name == "dp_bucket":
            cat = "comm"
            label = f"DP bucket {mb}{suffix(chunk)}"
            args.update(bucket=mb, chunk=chunk,
                        transfer=f"data-parallel gradient {'all-reduce' if zero == 0 else 'reduce-scatter'} "
                                 f"over {dp} replicas")
        elif name == "param_gather":
            label, cat = "param gather", "comm"
            args.update(transfer=f"data-parallel all-gather of the updated parameters over {dp} replicas (ZeRO)")
        elif name == "embedding_sync":
            label, cat = "embedding sync", "comm"
            args.update(transfer=f"all-reduce of the tied embedding gradients between stage 0 and stage {pp - 1}")
        else:  # a name this module does not know yet: show it as it is
            label, cat = name, "comm" if r.get("stream") == "comm" else "compute"
        ev = {"name": label, "cat": cat, "ph": "X", "ts": ts, "dur": round(max(0.0, end - ts), _NS), "args": args,
              "_end": end}
        if cat == "bubble":
            ev["cname"] = "terrible"  # red in chrome://tracing
        on_comm = r.get("stream") == "comm" or cat == "comm"
        targets = replicas if (name in COLLECTIVES and result.mode == "full") else [rep]
        parts = [ev]
        recompute = _us(r.get("recompute_s", 0.0))
        if name == "B" and recompute > 0:  # the recomputed forward runs first: its own slice
            split = round(ts + recompute, _NS)
            parts = [dict(ev, name=f"recompute mb {mb}{suffix(chunk)}", dur=round(split - ts, _NS), _end=split,
                          args=dict(args, **{"pass": "recompute (forward again)"})),
                     dict(ev, ts=split, dur=round(max(0.0, end - split), _NS))]
        for t in targets:
            for part in parts:
                (comm if on_comm else compute).setdefault((t, stage), []).append(dict(part))

    events: list[dict[str, Any]] = []
    meta: list[dict[str, Any]] = []
    for rep in replicas:
        pid = rep + 1
        pname = (f"representative replica (stands for all {dp})" if result.mode == "representative"
                 else f"replica {rep}")
        meta.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": pname}})
        meta.append({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0, "args": {"sort_index": rep}})
        tid = 0
        for stage in range(pp):
            tid += 1
            tracks = [(tid, f"stage {stage} compute", compute.get((rep, stage), []))]
            comm_events = comm.get((rep, stage), [])
            lanes = _lanes([(e["ts"], e["_end"]) for e in comm_events])
            n_lanes = max(lanes, default=0) + 1
            for lane in range(n_lanes):
                tid += 1
                name = f"stage {stage} comm" + (f" {lane + 1}" if lane else "")
                tracks.append((tid, name, [e for e, ln in zip(comm_events, lanes) if ln == lane]))
            for t, tname, evs in tracks:
                meta.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": t, "args": {"name": tname}})
                meta.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": t,
                             "args": {"sort_index": t}})
                for e in evs:
                    e.pop("_end")
                    e["pid"], e["tid"] = pid, t
                    events.append(e)
    events.sort(key=lambda e: (e["pid"], e["tid"], e["ts"]))

    other = {
        "generator": "trainsim",
        "scenario": result.scenario,
        "model": result.model,
        "gpu": result.gpu,
        "topology": result.topology,
        "n_gpus": result.n_gpus,
        "mode": result.mode,
        "plan": {k: (list(v) if isinstance(v, tuple) else v) for k, v in plan.items()},
        "step_time_s": result.step_time_s,
        "time_unit": "microseconds from the start of the step",
    }
    if result.mode == "representative" and dp > 1:
        other["note"] = (f"representative mode: replica 0 stands for all {dp} data-parallel replicas; "
                         "simulate with --mode full to see every replica")
    return {"traceEvents": meta + events, "displayTimeUnit": "ms", "otherData": other}
