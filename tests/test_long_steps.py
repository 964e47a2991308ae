"""A step that takes long to simulate says why before it starts and reports its progress
(issue 12, defect 9); running it that way changes no number."""

from __future__ import annotations

import simulator.results.assemble as assemble
from simulator import load_scenario, simulate
from simulator.system.engine import StepSize


def test_a_long_step_says_what_makes_it_slow_and_reports_progress(monkeypatch):
    sc = load_scenario("gpt3-175b-1024-a100")
    plain = simulate(sc, record_timeline=False)
    monkeypatch.setattr(assemble, "LONG_STEP_EVENTS", 1000)
    monkeypatch.setattr("simulator.system.engine.simulation.PROGRESS_EVERY", 500)
    told, reports = [], []

    def slow(note):
        told.append(note)
        return lambda done, total: reports.append((done, total))

    watched = simulate(sc, record_timeline=False, slow=slow)
    assert len(told) == 1 and told[0].startswith("long simulation: about") and "micro-batches" in told[0]
    assert watched.notes[-1] == told[0]
    done = [d for d, _ in reports]
    assert len(reports) > 2 and done == sorted(done) and reports[-1][0] == reports[-1][1]
    assert watched.to_dict() | {"notes": []} == plain.to_dict() | {"notes": []}


def test_small_buckets_and_full_mode_are_named_as_the_cause():
    sc = load_scenario("gpt2xl-8-l40s-dp").with_(dp_bucket_MB=1, simulation={"mode": "full"})
    from simulator.inputs.resolve import setup

    s = setup(sc)
    size = StepSize.of(s.step_plan, "full")
    assert size.replicas == 8 and size.buckets > size.passes
    note = assemble.long_step_note(StepSize(size.passes, size.sends, 10**6, size.replicas), s.step_plan, "full")
    assert "gradient buckets of 1.0 MB" in note and "dp_bucket_MB" in note and "8 data-parallel replicas" in note
    assert assemble.long_step_note(size, s.step_plan, "full") == ""  # this one is not long
