"""What a user hits at the edges of the command line (issue 12): outputs that cannot be written
are refused before any work, machine-readable output is strict, a command that produced nothing
says so with its exit code, and the basics (-h, --version) are there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from simulator.cli import BAD_INPUT, NOTHING_SIMULATED, app

runner = CliRunner()
SHARED = Path(__file__).resolve().parents[2] / "shared" / "validation" / "calibration.csv"
UNWRITABLE = "/proc/trainsim-cannot-write-here"


def one_bad_gpu_table(tmp_path: Path) -> Path:
    """Two rows of the validation format whose GPU the catalog does not have."""
    header = ("case_id,source_id,model,n_layers,d_model,n_heads,vocab,seq_len,global_batch_seqs,gpu,n_gpus,"
              "tp,pp,metric,value")
    rows = ["a,s,GPT,24,2048,16,51200,2048,64,tpu-v9,8,1,1,step_time_s,1.0",
            "b,s,GPT,24,2048,16,51200,2048,64,tpu-v9,8,1,1,mfu,0.4"]
    path = tmp_path / "cases.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.mark.parametrize("args", [
    ["run", "gpt2xl-8-l40s-dp", "--json", "--trace", f"{UNWRITABLE}/t.json"],
    ["run", "gpt2xl-8-l40s-dp", "--plot", f"{UNWRITABLE}/figures"],
    ["validate", "CASES", "--out", f"{UNWRITABLE}/p.csv"],
    ["validate", "CASES", "--plot", f"{UNWRITABLE}/p.png"],
    ["calibrate", "CASES", "--out", f"{UNWRITABLE}/fit.yaml"],
])
def test_an_output_that_cannot_be_written_is_refused_before_any_work(args, tmp_path, monkeypatch):
    if not Path("/proc").is_dir():
        pytest.skip("needs a folder no file can be created in")
    import simulator.results.assemble as assemble
    import simulator.validation.published as published

    def no_work(*_a, **_k):
        raise AssertionError("work started before the output path was checked")

    monkeypatch.setattr(assemble, "simulate_setup", no_work)
    monkeypatch.setattr(published, "simulate_setup", no_work)
    args = [str(one_bad_gpu_table(tmp_path)) if a == "CASES" else a for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == BAD_INPUT, result.output
    assert "cannot" in result.output and result.output.count("\n") <= 2 and "Traceback" not in result.output


def test_a_sweep_output_that_cannot_be_written_is_refused_as_such(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("base: gpt2xl-8-l40s-dp\ngrid:\n  plan.micro_batch: [1, 2]\n")
    result = runner.invoke(app, ["sweep", str(sweep), "--workers", "1", "--output", f"{UNWRITABLE}/x.csv"])
    assert result.exit_code == BAD_INPUT and "--output" in result.output and "cluster" not in result.output


@pytest.mark.parametrize("args", [["plan", "gpt2xl-8-l40s-dp", "--tokens", "nan"],
                                  ["plan", "gpt2xl-8-l40s-dp", "--objective", "cost", "--gpu-hour-usd", "inf"],
                                  ["plan", "gpt2xl-8-l40s-dp", "--tokens", "1e12", "--gpu-hour-usd", "2",
                                   "--budget-usd", "-inf"]])
def test_non_finite_numbers_on_the_command_line_are_refused(args):
    result = runner.invoke(app, args)
    assert result.exit_code == BAD_INPUT and "finite" in result.output


def test_run_json_is_strict_json():
    result = runner.invoke(app, ["run", "gpt2xl-8-l40s-dp", "--json"])
    assert result.exit_code == 0
    json.loads(result.stdout, parse_constant=lambda token: pytest.fail(f"non-JSON token {token}"))


def test_validate_exits_non_zero_when_no_row_could_be_simulated(tmp_path):
    out = tmp_path / "pred.csv"
    result = runner.invoke(app, ["validate", str(one_bad_gpu_table(tmp_path)), "--out", str(out)])
    assert result.exit_code == NOTHING_SIMULATED
    assert "none of the 2 rows could be simulated" in result.output and "tpu-v9" in result.output
    assert out.is_file()  # every row keeps its reason


def test_calibrate_on_no_usable_row_fails_and_writes_nothing(tmp_path):
    out = tmp_path / "fit.yaml"
    cases = one_bad_gpu_table(tmp_path)
    result = runner.invoke(app, ["calibrate", str(cases), "--out", str(out)])
    assert result.exit_code == BAD_INPUT
    assert f"{cases}: none of the 2 rows could be simulated, so nothing can be fitted" in result.output
    assert "fitted parameters" not in result.output and not out.exists()


def test_help_has_a_short_option_and_no_type_placeholders_on_flags():
    for args in (["-h"], ["run", "-h"], ["plan", "-h"]):
        result = runner.invoke(app, args, env={"COLUMNS": "80"})
        assert result.exit_code == 0 and "Usage:" in result.output
        assert "<bool>" not in result.output and "\u2502" not in result.output  # plain, rewrapped text


def test_version():
    from simulator import __version__

    done = subprocess.run([sys.executable, "-m", "simulator", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"trainsim {__version__}"
