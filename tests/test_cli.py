"""The command line, end to end: every bundled scenario runs, every bad input gets one clear message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from simulator.cli import app

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_bundled_scenario_runs_and_reports(path):
    result = run("run", str(path))
    assert result.exit_code == 0, result.output
    assert "Where the step time goes" in result.output
    assert "Memory per GPU" in result.output


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_json_output_has_the_documented_keys(path):
    result = run("run", str(path), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    for key in ("step_time_s", "breakdown_s", "hidden_comm_s", "throughput", "memory", "energy", "plan"):
        assert key in doc
    assert doc["step_time_s"] > 0
    assert sum(doc["breakdown_s"].values()) == pytest.approx(doc["step_time_s"], rel=1e-9)
    assert 0 < doc["throughput"]["mfu"] < 1
    assert doc["energy"]["facility_J"] > doc["energy"]["gpu_J"] > 0
    assert doc["memory"]["total"] > 0


def test_run_without_argument_runs_the_bundled_default():
    result = run("run", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["n_gpus"] == 1024


def test_bundled_scenario_by_name():
    result = run("run", "gpt2xl-8-l40s-dp", "--json")
    assert result.exit_code == 0, result.output


GOOD = (ROOT / "scenarios" / "gpt2xl-8-l40s-dp.yaml").read_text()


def _bad_cases():
    return {
        "not-yaml": ("model: [unclosed\n", None, "not valid YAML"),
        "not-a-mapping": ("- just\n- a list\n", None, "mapping"),
        "missing-field": (GOOD.replace("gpus: 8\n", ""), "gpus", "missing"),
        "mistyped-field": (GOOD.replace("gpus: 8", "gpus: eight"), "gpus", "integer"),
        "unknown-field": (GOOD + "colour: blue\n", "colour", "unknown field"),
        "unknown-gpu": (GOOD + "gpu: tpu-v9\n", "gpu", "a100-80gb"),
        "unknown-model": (GOOD.replace("model: gpt2-xl", "model: gpt-17"), "model", "gpt3-175b"),
        "unknown-topology": (GOOD.replace("topology: pcie-ethernet-small", "topology: moon-base"), "topology", "dgx-a100-superpod"),
        "plan-not-dividing-heads": (GOOD.replace("plan:\n", "plan:\n  tp: 7\n  dp: 1\n").replace("gpus: 8", "gpus: 7"), "plan.tp", "n_heads"),
        "plan-not-filling-fleet": (GOOD.replace("plan:\n", "plan:\n  dp: 3\n"), "plan.dp", "fleet"),
        "batch-not-divisible": (GOOD.replace("global_batch: 256", "global_batch: 100"), "plan", "global_batch"),
        "bad-schedule": (GOOD.replace("plan:\n", "plan:\n  schedule: zigzag\n"), "plan.schedule", "1f1b"),
    }


@pytest.mark.parametrize("case", sorted(_bad_cases()))
def test_bad_input_gives_one_clear_message(case, tmp_path):
    text, field, words = _bad_cases()[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2, result.output
    out = result.output
    assert "Traceback" not in out
    assert isinstance(result.exception, SystemExit)
    assert str(path) in out
    if field:
        assert field in out
    assert words.lower() in out.lower()


def test_missing_file_names_it(tmp_path):
    missing = tmp_path / "nope.yaml"
    result = runner.invoke(app, ["run", str(missing)])
    assert result.exit_code == 2
    assert str(missing) in result.output and "no such file" in result.output


def test_bad_input_writes_nothing(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: [")
    before = set(tmp_path.iterdir())
    runner.invoke(app, ["run", str(path), "--json"])
    assert set(tmp_path.iterdir()) == before
