"""The Chrome trace of a step (``trainsim run --trace``): valid Trace Event Format, readable tracks."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
import yaml
from typer.testing import CliRunner

from simulator.cli import app
from simulator.inputs.scenario import Scenario
from simulator.results.assemble import simulate
from simulator.results.trace import WAIT_KIND, _lanes, chrome_trace
from simulator.system.engine import ComputePass, PipelineSend

TOL_US = 1e-6  # microseconds
PLAN = dict(tp=2, pp=2, micro_batch=1, global_batch=16, zero_stage=1)


def scenario(**plan) -> Scenario:
    gpus = plan.pop("gpus", 16)
    fields = dict(PLAN)
    fields.update(plan)
    return Scenario(name="trace test", model={"preset": "tiny", "seq_len": 1024}, topology="dgx-a100-superpod",
                    gpus=gpus, plan=fields)


CASES = {
    "1f1b": scenario(),
    "1f1b-full": scenario().with_(simulation={"mode": "full"}),
    "interleaved": scenario(gpus=32, vpp=2, global_batch=16),
    "gpipe-pp4": scenario(gpus=32, tp=1, pp=4, schedule="gpipe", zero_stage=0),
}


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def traced(request):
    result = simulate(CASES[request.param])
    doc = json.loads(json.dumps(chrome_trace(result)))  # round trip: plain JSON
    return result, doc


def x_events(doc):
    return [e for e in doc["traceEvents"] if e["ph"] == "X"]


def thread_names(doc):
    return {(e["pid"], e["tid"]): e["args"]["name"] for e in doc["traceEvents"]
            if e["ph"] == "M" and e["name"] == "thread_name"}


def test_document_is_in_the_trace_event_format(traced):
    result, doc = traced
    assert set(doc) == {"traceEvents", "displayTimeUnit", "otherData"}
    assert doc["displayTimeUnit"] == "ms"
    other = doc["otherData"]
    for key in ("scenario", "model", "gpu", "n_gpus", "plan", "step_time_s"):
        assert key in other
    assert other["step_time_s"] == result.step_time_s and other["plan"]["pp"] == result.plan.pp
    events = x_events(doc)
    assert events
    for e in events:
        for key in ("name", "ph", "ts", "dur", "pid", "tid", "cat", "args"):
            assert key in e, (key, e)
        assert isinstance(e["name"], str) and e["name"]
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        assert e["ts"] >= 0 and e["dur"] >= 0
        assert e["cat"] in ("compute", "comm", "bubble")
        assert (e["ts"] + e["dur"]) <= result.step_time_s * 1e6 + 1e-3  # microseconds, within the step
        assert "stage" in e["args"]
    for e in doc["traceEvents"]:
        assert e["ph"] in ("X", "M")
        if e["ph"] == "M":
            assert e["name"] in ("process_name", "process_sort_index", "thread_name", "thread_sort_index")
    # every X event is on a named track, every process is named
    names = thread_names(doc)
    procs = {e["pid"] for e in doc["traceEvents"] if e["ph"] == "M" and e["name"] == "process_name"}
    for e in events:
        assert (e["pid"], e["tid"]) in names and e["pid"] in procs


def test_every_stage_has_a_compute_and_a_comm_track_per_replica(traced):
    result, doc = traced
    pp, dp = result.plan.pp, result.plan.dp
    by_pid = defaultdict(set)
    for (pid, _tid), name in thread_names(doc).items():
        by_pid[pid].add(name)
    assert len(by_pid) == (dp if result.mode == "full" else 1)
    for names in by_pid.values():
        for i in range(pp):
            assert f"stage {i} compute" in names and f"stage {i} comm" in names
    pnames = [e["args"]["name"] for e in doc["traceEvents"] if e["ph"] == "M" and e["name"] == "process_name"]
    if result.mode == "representative":
        assert pnames == [f"representative replica (stands for all {dp})"]
    else:
        assert pnames == [f"replica {r}" for r in range(dp)]


def test_forward_and_backward_passes_per_stage(traced):
    result, doc = traced
    pp, vpp, n_mb = result.plan.pp, result.plan.vpp, result.plan.n_microbatches
    names = thread_names(doc)
    count = defaultdict(int)
    for e in x_events(doc):
        if e["cat"] == "compute" and e["name"][:2] in ("F ", "B "):
            assert names[(e["pid"], e["tid"])] == f"stage {e['args']['stage']} compute"
            count[(e["pid"], e["name"][0])] += 1
    pids = {pid for pid, _ in names}
    for pid in pids:
        for kind in "FB":
            assert count[(pid, kind)] == pp * vpp * n_mb  # pp stages x micro-batches (x chunks)
    chunk_in_name = any("(chunk" in e["name"] for e in x_events(doc))
    assert chunk_in_name == (vpp > 1)


def test_events_on_one_track_never_overlap(traced):
    _result, doc = traced
    names = thread_names(doc)
    tracks = defaultdict(list)
    for e in x_events(doc):
        tracks[(e["pid"], e["tid"])].append(e)
    compute_tracks = [k for k in tracks if names[k].endswith("compute")]
    assert compute_tracks
    for key, evs in tracks.items():
        evs.sort(key=lambda e: e["ts"])
        for a, b in zip(evs, evs[1:]):
            assert a["ts"] + a["dur"] <= b["ts"] + TOL_US, (names[key], a, b)


def test_waits_are_bubbles_and_stand_out(traced):
    result, doc = traced
    waits = [e for e in x_events(doc) if e["cat"] == "bubble"]
    assert any(e["name"] == "pipeline wait" for e in waits)  # every case here is pipelined
    for e in waits:
        if e["name"] == "pipeline wait":
            assert e["args"]["kind"] == WAIT_KIND["wait_pp"]
        assert "stall" in e["args"]["kind"]
        assert e["dur"] > 0
        assert thread_names(doc)[(e["pid"], e["tid"])].endswith("compute")
    comm = [e for e in x_events(doc) if e["cat"] == "comm"]
    assert any(e["name"].startswith("PP send") for e in comm)
    assert any(e["name"].startswith("DP bucket") for e in comm)
    for e in comm:
        assert "transfer" in e["args"]
        assert " comm" in thread_names(doc)[(e["pid"], e["tid"])]


def test_timeline_is_fully_represented(traced):
    result, doc = traced
    tl = result.timeline
    n_waits_empty = int(((tl.end_s <= tl.start_s) & tl.name.str.startswith("wait_")).sum())
    n_collectives = int(tl.name.isin(["dp_bucket", "param_gather", "embedding_sync"]).sum())
    copies = result.plan.dp if result.mode == "full" else 1
    assert len(x_events(doc)) == len(tl) - n_waits_empty + n_collectives * (copies - 1)


def test_greedy_lanes_split_overlaps_only():
    assert _lanes([]) == []
    assert _lanes([(0, 1), (1, 2), (2, 3)]) == [0, 0, 0]  # touching is not overlapping
    assert _lanes([(0, 2), (1, 3), (2, 4), (3, 5)]) == [0, 1, 0, 1]
    assert _lanes([(5, 6), (0, 10), (1, 2), (1.5, 5.5)]) == [1, 0, 1, 2]


def test_overlapping_sends_go_to_an_extra_comm_track():
    """Without a timeline of overlapping sends from the engine, a hand-made one."""
    import dataclasses

    def send(mb, start_s, end_s):
        return PipelineSend(0, 0, start_s, end_s, microbatch=mb, chunk=0, direction="activation", to_stage=1,
                            to_chunk=0, bytes=0.0, collective="")

    result = simulate(CASES["1f1b"])
    events = [ComputePass(0, 0, 0.0, 1e-3, "F", 0, 0), send(0, 1e-3, 4e-3),
              ComputePass(0, 0, 1e-3, 2e-3, "F", 1, 0), send(1, 2e-3, 5e-3)]
    doc = chrome_trace(dataclasses.replace(result, events=events))
    names = thread_names(doc)
    sends = sorted((e for e in x_events(doc) if e["cat"] == "comm"), key=lambda e: e["ts"])
    assert [names[(e["pid"], e["tid"])] for e in sends] == ["stage 0 comm", "stage 0 comm 2"]
    assert sends[0]["name"] == "PP send act mb 0" and sends[0]["args"]["to_stage"] == 1


def write_scenario(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump({
        "name": "small", "model": {"preset": "tiny", "seq_len": 1024}, "topology": "dgx-a100-superpod",
        "gpus": 16, "plan": dict(PLAN),
    }))
    return path


def test_cli_writes_a_trace_that_loads(tmp_path):
    out = tmp_path / "step.json"
    res = CliRunner().invoke(app, ["run", str(write_scenario(tmp_path)), "--trace", str(out)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert x_events(doc) and doc["otherData"]["scenario"] == "small"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_cli_refuses_a_trace_in_a_missing_folder(tmp_path):
    out = tmp_path / "missing" / "step.json"
    res = CliRunner().invoke(app, ["run", str(write_scenario(tmp_path)), "--trace", str(out)])
    assert res.exit_code == 2
    assert "--trace" in res.output
    assert not out.parent.exists()


def test_communication_slices_carry_their_size_and_collective(traced):
    _, doc = traced
    comm = [e for e in x_events(doc) if e["cat"] == "comm"]
    assert comm and all(e["args"]["bytes_per_gpu"] > 0 for e in comm)
    assert all(" by " in e["args"]["collective"] and "GPUs" in e["args"]["collective"] for e in comm)


def test_recomputation_is_its_own_slice_before_the_backward_pass():
    doc = chrome_trace(simulate(scenario(recompute="full")))
    x = x_events(doc)
    recomputes = [e for e in x if e["name"].startswith("recompute mb")]
    backwards = {(e["tid"], e["name"].split(" ", 1)[1]): e for e in x if e["name"].startswith("B mb")}
    assert recomputes and len(recomputes) == len(backwards)
    for e in recomputes:
        b = backwards[(e["tid"], e["name"].split(" ", 1)[1])]
        assert e["ts"] + e["dur"] == pytest.approx(b["ts"], abs=1e-3)
