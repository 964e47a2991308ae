"""`trainsim sweep`: what-if grids on Dask give the serial numbers, resume, and keep failures as rows."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import simulator
import simulator.studies.sweep_inputs as sweep_inputs
from simulator.cli import app
from simulator.core.errors import InputError
from simulator.results.assemble import simulate
from simulator.studies.sweep import (
    SweepInterrupted,
    apply_changes,
    load_sweep,
    run_sweep,
    variant_id,
)
from simulator.studies.sweep_csv import CsvSink, read_results
from simulator.studies.sweep_inputs import InputKeys, input_files

ROOT = Path(__file__).resolve().parents[1]

BASE = {
    "name": "sweep base",
    "model": {"preset": "tiny", "seq_len": 1024},
    "topology": "dgx-a100-superpod",
    "gpus": 16,
    "plan": {"global_batch": 16},
}
GRID = {"gpu": ["a100-80gb", "h100-sxm"], "plan.tp": [1, 2, 4]}  # 6 variants


@pytest.fixture(scope="module")
def client():
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    with Client(cluster) as c:
        yield c
    cluster.close()


def default_output(folder: Path) -> Path:
    """Where the rows of ``folder``/sweep.yaml go by default."""
    return folder / "sweep-results" / "sweep.csv"


def write_sweep(folder: Path, **fields) -> Path:
    (folder / "base.yaml").write_text(yaml.safe_dump(BASE))
    doc = {"base": "base.yaml", **fields}
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_dask_gives_exactly_the_serial_numbers(tmp_path, client):
    path = write_sweep(tmp_path, grid=GRID)
    sweep = load_sweep(path)
    assert len(sweep.variants) == 6 and sweep.output == default_output(tmp_path) and sweep.output_is_default
    on_dask = run_sweep(sweep, client=client, progress=False).set_index("id")
    serial = run_sweep(sweep, output=tmp_path / "serial.csv", progress=False).set_index("id")
    assert (on_dask.status == "ok").all() and len(on_dask) == 6
    for v in sweep.variants:
        direct = simulate(v.scenario, record_timeline=False)
        assert on_dask.loc[v.id, "step_time_s"] == serial.loc[v.id, "step_time_s"] == direct.step_time_s
        assert on_dask.loc[v.id, "tokens_per_s"] == direct.tokens_per_s
        assert on_dask.loc[v.id, "gpu"] == v.changes["gpu"] and on_dask.loc[v.id, "plan.tp"] == v.changes["plan.tp"]
        assert on_dask.loc[v.id, "tp"] == v.changes["plan.tp"] and on_dask.loc[v.id, "dp"] == 16 // v.changes["plan.tp"]
    assert list(on_dask.columns[:3]) == ["gpu", "plan.tp", "status"]
    assert {"n_microbatches", "mfu", "bubble_s", "memory_GB", "energy_per_token_J"} <= set(on_dask.columns)


def test_resume_runs_only_the_missing_variants(tmp_path, client):
    path = write_sweep(tmp_path, grid=GRID)
    first = run_sweep(path, client=client, progress=False)
    assert first.attrs["done"] == 6 and first.attrs["skipped"] == 0
    out = default_output(tmp_path)
    lines = out.read_text().split("\n")[:-1]
    kept = lines[:3] + [lines[3][:25]]  # header, 2 rows, and a last line cut off by a crash (no newline)
    out.write_text("\n".join(kept))
    again = run_sweep(path, client=client, progress=False)
    assert again.attrs["skipped"] == 2 and again.attrs["done"] == 4
    assert sorted(again.id) == sorted(first.id) and again.id.is_unique
    assert again.set_index("id").step_time_s.to_dict() == first.set_index("id").step_time_s.to_dict()
    done = run_sweep(path, client=client, progress=False)
    assert done.attrs["done"] == 0 and done.attrs["skipped"] == 6 and len(done) == 6


def test_a_new_field_in_a_rerun_grows_the_columns_and_keeps_the_rows(tmp_path):
    path = write_sweep(tmp_path, grid={"plan.tp": [1, 2]})
    run_sweep(path, progress=False)
    path.write_text(yaml.safe_dump({"base": "base.yaml", "grid": {"plan.tp": [1, 2]},
                                    "variants": [{}, {"plan.recompute": "full"}]}))
    df = run_sweep(path, progress=False)
    assert df.attrs["skipped"] == 2 and df.attrs["done"] == 2 and len(df) == 4
    assert (df["plan.recompute"].isna().sum(), (df["plan.recompute"] == "full").sum()) == (2, 2)
    header = default_output(tmp_path).read_text().split("\n")[0].split(",")
    assert header[:4] == ["id", "plan.tp", "status", "n_gpus"] and "plan.recompute" in header


def test_a_failing_variant_is_a_row_with_its_message(tmp_path, client):
    path = write_sweep(tmp_path, grid={"plan.tp": [2, 3]}, variants=[{}, {"gpu": "no-such-gpu"}])
    df = run_sweep(path, client=client, progress=False).set_index("id")
    assert len(df) == 4 and df.attrs["failed"] == 3
    by = {(r["plan.tp"], r["gpu"] if isinstance(r["gpu"], str) else None): r for _, r in df.iterrows()}
    assert by[(2, None)].status == "ok" and by[(2, None)].step_time_s > 0
    assert "does not fill the fleet" in by[(3, None)].status and "plan.dp" in by[(3, None)].status
    assert "gpu" in by[(2, "no-such-gpu")].status and "\n" not in by[(2, "no-such-gpu")].status


def test_ctrl_c_keeps_the_finished_rows(tmp_path, monkeypatch):
    import simulator.studies.sweep as sweep_module

    path = write_sweep(tmp_path, grid=GRID)
    real, calls = sweep_module.run_variant, []

    def interrupted_at_the_third(vid, scenario):
        calls.append(vid)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(vid, scenario)

    monkeypatch.setattr(sweep_module, "run_variant", interrupted_at_the_third)
    with pytest.raises(SweepInterrupted) as stop:
        run_sweep(path, progress=False)
    assert stop.value.stats["done"] == 2
    assert len(read_results(default_output(tmp_path))) == 2
    monkeypatch.setattr(sweep_module, "run_variant", real)
    assert run_sweep(path, progress=False).attrs["done"] == 4


def test_ids_are_stable_and_changes_apply_like_with_(tmp_path):
    assert variant_id({"a": 1, "b": "x"}) == variant_id({"b": "x", "a": 1}) != variant_id({"a": 2, "b": "x"})
    sweep = load_sweep(write_sweep(tmp_path, variants=[
        {"model.seq_len": 2048, "gpus": 32, "plan.recompute": "full", "energy.pue": 1.5},
        {"model": "gpt2-small", "variability.compute_jitter_cv": 0.05},
    ]))
    a, b = (v.scenario for v in sweep.variants)
    assert a.model == {"preset": "tiny", "seq_len": 2048} and a.gpus == 32 and a.plan.dp is None
    assert a.plan.recompute == "full" and a.energy.pue == 1.5
    assert b.model == "gpt2-small" and b.variability.compute_jitter_cv == 0.05 and b.gpus == 16
    assert pickle.loads(pickle.dumps(a)) == a  # sent to the workers
    assert apply_changes(sweep.base, {}) == sweep.base


@pytest.mark.parametrize("fields, field, words", [
    ({"grids": {"gpus": [8]}}, "grids", "unknown field"),
    ({"grid": {"plan.tpp": [1]}}, "grid.plan.tpp", "plan fields are"),
    ({"grid": {"tp": [1, 2]}}, "grid.tp", "plan.tp"),
    ({"grid": {"gpus": []}}, "grid", "no values"),
    ({"grid": {"gpus": 16}}, "grid.gpus", "list"),
    ({"grid": {"gpus": ["many"]}}, "grid.gpus", "integer"),
    ({"variants": [{}, {"plan.recompute": "sometimes"}]}, "variants[1].plan.recompute", "selective"),
    ({"variants": ["tp=2"]}, "variants.0", "dictionary"),
    ({}, "grid", "nothing to vary"),
    ({"base": "missing.yaml", "grid": {"gpus": [8]}}, "base", "no such file"),
])
def test_bad_sweep_files_name_the_file_and_field(tmp_path, fields, field, words):
    path = write_sweep(tmp_path)
    path.write_text(yaml.safe_dump({"base": "base.yaml", **fields}))
    with pytest.raises(InputError) as err:
        load_sweep(path)
    assert err.value.file == str(path) and err.value.field == field, str(err.value)
    assert words in str(err.value)


def test_a_sweep_file_that_is_not_yaml_or_has_no_base(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML") as err:
        load_sweep(bad)
    assert err.value.file == str(bad)
    bad.write_text("grid: {gpus: [8]}\n")
    with pytest.raises(InputError, match="required") as err:
        load_sweep(bad)
    assert err.value.field == "base"


def test_a_problem_inside_the_base_scenario_names_that_file(tmp_path):
    path = write_sweep(tmp_path, grid={"gpus": [8]})
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({**BASE, "gpuz": 3}))
    with pytest.raises(InputError) as err:
        load_sweep(path)
    assert err.value.file == str(tmp_path / "base.yaml") and err.value.field == "gpuz"


def test_a_bundled_base_by_name(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("base: gpt2xl-8-l40s-dp\ngrid: {plan.micro_batch: [1, 2]}\noutput: out/r.csv\n")
    sweep = load_sweep(path)
    assert sweep.base.gpus == 8 and len(sweep.variants) == 2 and sweep.output == tmp_path / "out" / "r.csv"


def test_csv_sink_drops_a_malformed_row_and_aligns_new_columns(tmp_path):
    out = tmp_path / "o.csv"
    out.write_text("id,x,status\na,1,ok\nbroken\nb,2,ok\n")
    sink = CsvSink(out, ["id", "x", "status"])
    assert set(sink.found) == {"a", "b"} and sink.found["b"] == {"id": "b", "x": "2", "status": "ok"}
    sink.append({"id": "c", "x": 3, "status": "ok", "y": 9})
    sink.close()
    assert out.read_text() == "id,x,status,y\na,1,ok,\nb,2,ok,\nc,3,ok,9\n"


def test_the_cli_runs_a_sweep_with_two_workers(tmp_path):
    path = write_sweep(tmp_path, grid={"plan.tp": [1, 2, 3]})
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(app, ["sweep", str(path), "--workers", "2", "--output", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "3 simulated (1 failed)" in result.output and str(out) in result.output
    assert "Top 2 by tokens/s" in result.output and "does not fill the fleet" in result.output
    assert len(read_results(out)) == 3
    again = CliRunner().invoke(app, ["sweep", str(path), "--output", str(out), "--workers", "1"])
    assert again.exit_code == 0 and "3 skipped as already finished" in again.output


def test_the_cli_reports_a_bad_sweep_file_in_one_line(tmp_path):
    path = write_sweep(tmp_path, grid={"plan.tpp": [1]})
    result = CliRunner().invoke(app, ["sweep", str(path), "--workers", "1"])
    assert result.exit_code == 2 and "grid.plan.tpp" in result.output and "Traceback" not in result.output


def test_the_example_sweep_loads():
    sweep = load_sweep(ROOT / "sweeps" / "gpu-and-fleet.yaml")
    assert len(sweep.variants) == 24 and sweep.output == ROOT / "sweeps" / "sweep-results" / "gpu-and-fleet.csv"
    assert "sweep-results/" in (ROOT / ".gitignore").read_text().split("\n")  # never an untracked file in the checkout


# --------------------------------------------------------------------------- stale rows (issue 12, defect 1)


def test_a_changed_base_scenario_is_recomputed_not_kept(tmp_path):
    path = write_sweep(tmp_path, grid={"plan.tp": [1, 2]})
    first = run_sweep(path, progress=False)
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({**BASE, "plan": {"global_batch": 32}}))
    again = run_sweep(path, progress=False)
    assert (again.attrs["done"], again.attrs["recomputed"], again.attrs["skipped"]) == (2, 2, 0)
    assert again.attrs["changed"] == [f"the base scenario {tmp_path / 'base.yaml'}"]
    assert sorted(again.id) == sorted(first.id) and len(read_results(default_output(tmp_path))) == 2
    for v in load_sweep(path).variants:
        row = again.set_index("id").loc[v.id]
        assert row.tokens_per_s == simulate(v.scenario, record_timeline=False).tokens_per_s
        assert row.inputs_sha256 == InputKeys().key(v.scenario).sha256 and row.sweep == "sweep.yaml"
    assert run_sweep(path, progress=False).attrs["skipped"] == 2


@pytest.mark.parametrize("field, make, edit", [
    ("efficiency_file", lambda d: (d / "eff.yaml").write_text("network: {nic: 0.9}\n"),
     lambda d: (d / "eff.yaml").write_text("network: {nic: 0.5}\n")),
    ("topology", lambda d: shutil.copy(ROOT / "topologies" / "dgx-a100-superpod.yaml", d / "topo.yaml"),
     lambda d: (d / "topo.yaml").write_text((d / "topo.yaml").read_text() + "# edited\n")),
])
def test_a_changed_input_file_is_recomputed_and_named(tmp_path, field, make, edit):
    make(tmp_path)
    name = {"efficiency_file": "eff.yaml", "topology": "topo.yaml"}[field]
    path = write_sweep(tmp_path, grid={"plan.tp": [1, 2]})
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({**BASE, field: name}))
    assert run_sweep(path, progress=False).attrs["done"] == 2
    edit(tmp_path)
    again = run_sweep(path, progress=False)
    assert (again.attrs["recomputed"], again.attrs["skipped"]) == (2, 0)
    assert again.attrs["changed"] == [f"{field} {tmp_path / name}"]


def test_another_trainsim_version_recomputes(tmp_path, monkeypatch):
    assert sweep_inputs.trainsim_version() == simulator.__version__
    path = write_sweep(tmp_path, grid={"plan.tp": [1, 2]})
    run_sweep(path, progress=False)
    monkeypatch.setattr(sweep_inputs, "trainsim_version", lambda: "99.0")
    again = run_sweep(path, progress=False)
    assert again.attrs["recomputed"] == 2 and again.attrs["changed"] == ["the trainsim version (now 99.0)"]


def test_the_input_key_covers_a_hugging_face_config(tmp_path):
    shutil.copytree(ROOT / "tests" / "data" / "hf" / "gpt2", tmp_path / "gpt2")
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({**BASE, "model": {"hf_config": "gpt2", "seq_len": 1024}}))
    scenario = simulator.load_scenario(tmp_path / "base.yaml")
    assert input_files(scenario)["model.hf_config"] == tmp_path / "gpt2" / "config.json"
    before = InputKeys().key(scenario)
    config = tmp_path / "gpt2" / "config.json"
    config.write_text(config.read_text().replace("50257", "50304"))
    after = InputKeys().key(scenario)
    assert after.sha256 != before.sha256 and after.changed(json.dumps(before.parts)) == ["model.hf_config"]


def test_fresh_simulates_everything_again(tmp_path):
    path = write_sweep(tmp_path, grid={"plan.tp": [1, 2]})
    run_sweep(path, progress=False)
    again = run_sweep(path, progress=False, fresh=True)
    assert (again.attrs["done"], again.attrs["skipped"], again.attrs["fresh"]) == (2, 0, True)
    assert len(read_results(default_output(tmp_path))) == 2


def test_the_cli_names_what_changed_and_has_fresh(tmp_path):
    path = write_sweep(tmp_path, grid={"plan.tp": [1, 2]})
    assert CliRunner().invoke(app, ["sweep", str(path), "--workers", "1"]).exit_code == 0
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({**BASE, "energy": {"pue": 1.5}}))
    again = CliRunner().invoke(app, ["sweep", str(path), "--workers", "1"])
    assert again.exit_code == 0 and "2 simulated" in again.output and "0 skipped" in again.output
    assert "2 of them recomputed because an input changed (the base scenario" in again.output
    fresh = CliRunner().invoke(app, ["sweep", str(path), "--workers", "1", "--fresh"])
    assert fresh.exit_code == 0 and "2 simulated" in fresh.output and "--fresh" in fresh.output


# --------------------------------------------------------------------------- clobbering (issue 12, defect 8)


def test_an_unrelated_csv_at_the_output_is_refused_untouched(tmp_path):
    path = write_sweep(tmp_path, grid={"plan.tp": [1, 2]})
    mine = tmp_path / "mine.csv"
    mine.write_text("name,score\nalice,3\n")
    with pytest.raises(InputError, match="not the output of a trainsim sweep.*delete the file") as err:
        run_sweep(path, output=mine, progress=False)
    assert err.value.file == str(mine) and mine.read_text() == "name,score\nalice,3\n"
    result = CliRunner().invoke(app, ["sweep", str(path), "--workers", "1", "--output", str(mine)])
    assert result.exit_code == 2 and str(mine) in result.output and "--output" in result.output
    assert mine.read_text() == "name,score\nalice,3\n"


def test_another_sweeps_output_is_refused(tmp_path):
    path = write_sweep(tmp_path, grid={"plan.tp": [1, 2]})
    run_sweep(path, progress=False)
    other = tmp_path / "other.yaml"
    other.write_text(path.read_text())
    before = default_output(tmp_path).read_text()
    with pytest.raises(InputError, match="rows of the sweep sweep.yaml, not of other.yaml"):
        run_sweep(other, output=default_output(tmp_path), progress=False)
    assert default_output(tmp_path).read_text() == before
