"""User efficiency files: the packaged parameters with some replaced, from every entry point."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from simulator.cli import app
from simulator.core.errors import InputError
from simulator.inputs.efficiency_file import (
    default_efficiency,
    efficiency_to_dict,
    load_efficiency,
)
from simulator.inputs.resolve import setup
from simulator.inputs.scenario import Scenario
from simulator.results.assemble import simulate
from simulator.studies.sweep import run_sweep
from simulator.validation.cases import read_cases
from simulator.validation.published import validate


def write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def scenario(**fields) -> Scenario:
    return Scenario(**{"name": "eff", "model": {"preset": "tiny", "seq_len": 1024}, "topology": "dgx-a100-superpod",
                       "plan": {"global_batch": 8, "tp": 2, "dp": 4}, "gpus": 8, **fields})


def test_a_file_written_from_the_packaged_parameters_loads_as_them(tmp_path):
    packaged = default_efficiency()
    eff = load_efficiency(write(tmp_path / "all.yaml", efficiency_to_dict(packaged)))
    assert (eff.compute, eff.network, eff.power, eff.source, eff.fit) == (
        packaged.compute, packaged.network, packaged.power, packaged.source, packaged.fit)


def test_a_partial_file_replaces_only_its_values_and_says_so(tmp_path):
    packaged = default_efficiency()
    eff = load_efficiency(write(tmp_path / "mine.yaml", {"network": {"inter_efficiency": 0.45},
                                                         "compute": {"gemm_by_generation": {"hopper": 0.7}}}))
    assert eff.network.inter_efficiency == 0.45 and eff.network.node_efficiency == packaged.network.node_efficiency
    assert eff.compute.gemm_by_generation == {**packaged.compute.gemm_by_generation, "hopper": 0.7}
    assert eff.compute.attention == packaged.compute.attention and eff.power == packaged.power
    assert eff.source.startswith("mine.yaml: compute.gemm_by_generation.hopper, network.inter_efficiency from this file")
    assert eff.fit is None  # the packaged fit record does not describe these values


def test_halving_every_compute_fraction_doubles_a_step_without_communication(tmp_path):
    """One GPU, no launch cost: every kernel is max(FLOPs / (peak f), bytes / (HBM m)) and the
    optimizer bytes / (HBM m), so halving f and m doubles each, and the step, exactly."""
    c = default_efficiency().compute
    no_launch = {"kernel_overhead_us": 0.0}
    halved = {**no_launch, "gemm": c.gemm / 2, "attention": c.attention / 2, "memory": c.memory / 2,
              "attention_scale": c.attention_scale / 2,
              "gemm_by_generation": {g: v / 2 for g, v in c.gemm_by_generation.items()}}
    one_gpu = dict(gpus=1, plan={"global_batch": 4})
    base = simulate(scenario(**one_gpu, efficiency_file=str(write(tmp_path / "a.yaml", {"compute": no_launch}))))
    slow = simulate(scenario(**one_gpu, efficiency_file=str(write(tmp_path / "b.yaml", {"compute": halved}))))
    assert slow.step_time_s == pytest.approx(2 * base.step_time_s, rel=1e-12)


def test_the_scenario_field_the_run_option_and_an_explicit_argument_agree(tmp_path):
    path = write(tmp_path / "slow-nic.yaml", {"network": {"inter_efficiency": 0.3, "inter_ramp_bytes": 1e5}})
    sc = scenario(gpus=16, plan={"global_batch": 16, "tp": 8, "dp": 2})
    default = simulate(sc)
    by_field = simulate(sc.with_(efficiency_file=str(path)))
    assert by_field.step_time_s == simulate(sc, load_efficiency(path)).step_time_s
    assert by_field.step_time_s > default.step_time_s  # DP crosses the slower NICs
    (tmp_path / "sc.yaml").write_text(yaml.safe_dump(sc.model_dump(exclude={"base_dir", "source_file"})))
    res = CliRunner().invoke(app, ["run", str(tmp_path / "sc.yaml"), "--json", "--efficiency", str(path)])
    assert res.exit_code == 0, res.output
    doc = yaml.safe_load(res.stdout)
    assert doc["step_time_s"] == pytest.approx(by_field.step_time_s, rel=1e-12)
    assert doc["simulation"]["efficiency_source"].startswith(
        "slow-nic.yaml: network.inter_efficiency, network.inter_ramp_bytes from")
    assert default.efficiency_source == default_efficiency().source


def test_a_sweep_can_vary_the_efficiency_file(tmp_path):
    write(tmp_path / "fast.yaml", {"network": {"inter_efficiency": 1.0}})
    write(tmp_path / "slow.yaml", {"network": {"inter_efficiency": 0.3, "inter_ramp_bytes": 1e5}})
    base = scenario(gpus=16, plan={"global_batch": 16, "tp": 8, "dp": 2})
    write(tmp_path / "base.yaml", base.model_dump(exclude={"base_dir", "source_file"}))
    grid = {"efficiency_file": ["fast.yaml", "slow.yaml"]}
    rows = run_sweep(write(tmp_path / "sweep.yaml", {"base": "base.yaml", "grid": grid}), progress=False)
    rows = rows.set_index("efficiency_file")
    assert (rows.status == "ok").all()
    assert rows.loc["slow.yaml", "step_time_s"] > rows.loc["fast.yaml", "step_time_s"]


def test_a_scenario_names_the_nccl_version_its_collectives_follow():
    sc = scenario(gpus=16, plan={"global_batch": 16, "tp": 8, "dp": 2})
    assert setup(sc).efficiency.network.nccl_version == default_efficiency().network.nccl_version
    old = setup(sc.with_(nccl_version="2.21"))
    assert old.efficiency.network.nccl_version == "2.21"
    (bucket, *_) = old.step_plan.chunks[0].grad_buckets
    assert bucket.system.version == "2.21"
    with pytest.raises(InputError, match="is not modelled; use one of 2.18") as err:
        sc.with_(nccl_version="2.99")
    assert err.value.field == "nccl_version"


@pytest.mark.parametrize("content, field, words", [
    ({"network": {"nicc": 0.5}}, "network.nicc", "allowed here: nccl_version, node_efficiency, "),
    ({"network": {"nccl_version": "2.99"}}, "network.nccl_version", "is not modelled"),
    ({"compute": {"attention": 1.5}}, "compute.attention", r"finite number in \(0, 1\]"),
    ({"compute": {"gemm_by_generation": {"hopper": 0}}}, "compute.gemm_by_generation.hopper", r"finite number in \(0, 1\]"),
    ([1, 2], None, "expected a mapping"),
])
def test_bad_files_name_the_file_and_the_field(tmp_path, content, field, words):
    path = write(tmp_path / "bad.yaml", content)
    with pytest.raises(InputError, match=words) as err:
        load_efficiency(path)
    assert err.value.file == str(path) and err.value.field == field


def test_the_commands_refuse_a_bad_file_with_a_message_and_exit_2(tmp_path):
    bad = write(tmp_path / "bad.yaml", {"power": {"compute": -1}})
    cases = tmp_path / "cases.csv"
    cases.write_text("case_id,n_layers,d_model,n_heads,vocab,seq_len,global_batch_seqs,gpu,n_gpus,metric,value\n"
                     "a,2,256,4,1000,512,8,a100-80gb,8,step_time_s,1.0\n")
    for args in (["run", "--efficiency", str(bad)], ["validate", str(cases), "--efficiency", str(bad)],
                 ["calibrate", str(cases), "--efficiency", str(bad)],
                 ["run", "--efficiency", str(tmp_path / "none.yaml")]):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2 and "Traceback" not in res.output
        assert "bad.yaml" in res.output or "none.yaml: file not found" in res.output


def test_fit_on_your_own_cases_then_validate_and_run_with_the_fit(tmp_path):
    """The workflow the option exists for: `calibrate --out` on one's own measurements (here
    starting from a slower network), then `validate` and `run` with the written file."""
    cases = tmp_path / "cases.csv"
    cases.write_text("case_id,source_id,n_layers,d_model,n_heads,vocab,seq_len,global_batch_seqs,gpu,n_gpus,"
                     "tp,metric,value\n"
                     "a,mine,4,1024,16,32000,1024,16,a100-80gb,8,2,step_time_s,0.5\n"
                     "b,mine,4,2048,16,32000,2048,16,a100-80gb,8,2,step_time_s,1.5\n")
    network = write(tmp_path / "network.yaml", {"network": {"inter_efficiency": 0.5, "node_efficiency": 0.6}})
    fitted = tmp_path / "fitted.yaml"
    runner = CliRunner()
    res = runner.invoke(app, ["calibrate", str(cases), "--efficiency", str(network), "--out", str(fitted)])
    assert res.exit_code == 0, res.output
    eff = load_efficiency(fitted)
    assert (eff.network.inter_efficiency, eff.network.node_efficiency) == (0.5, 0.6)  # kept from the starting file
    assert eff.fit["command"].endswith(f"--efficiency {network}") and "efficiency_sha256" in eff.fit["fitted_on"]
    out = tmp_path / "pred.csv"
    assert runner.invoke(app, ["validate", str(cases), "--efficiency", str(fitted), "--out", str(out)]).exit_code == 0
    with_fit = pd.read_csv(out).set_index("case_id")
    packaged = validate(read_cases(cases)).set_index("case_id")
    assert with_fit.loc["b", "predicted"] == pytest.approx(
        validate(read_cases(cases), efficiency=eff).set_index("case_id").loc["b", "predicted"], rel=1e-12)
    assert abs(with_fit.loc["b", "error_pct"]) < abs(packaged.loc["b", "error_pct"])
