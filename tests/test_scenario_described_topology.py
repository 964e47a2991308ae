"""A scenario may describe its fleet's topology in a few fields (``topology:`` a mapping) instead
of naming a file: it is built by simulator/network/describe.py on the catalog GPU, runs like any
fleet, and bad fields fail in one line naming the scenario file and ``topology.<field>``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from simulator.cli import app
from simulator.core.errors import InputError
from simulator.inputs.resolve import resolve_fleet, setup
from simulator.inputs.scenario import Scenario, TopologyDescription, load_scenario
from simulator.results.assemble import simulate
from simulator.studies.sweep import apply_changes
from simulator.studies.sweep_inputs import InputKeys

P5 = {"gpu": "h100-sxm", "gpus_per_node": 8, "scale_up": "nvswitch", "nics_per_node": 8, "nic_Gbps": 400,
      "transport": "efa"}
"""A short description of AWS p5 nodes (topologies/aws-p5.yaml)."""
P5_AS_BUNDLED = {**P5, "scale_up_latency_us": 1.0, "nvlink_links": 18, "multicast": True, "pcie_bandwidth_GBps": 64,
                 "net_plugin_latency_us": 75, "cpu": "amd", "nodes_per_unit": 32, "switch_latency_us": 1.0,
                 "power_W": 4600, "switch_power_W": 1500}
"""The description with every figure topologies/aws-p5.yaml states (its name aside)."""
PLAN = {"tp": 8, "pp": 1, "micro_batch": 1, "global_batch": 64, "precision": "bf16"}


def scenario(topology, gpus: int = 64, **fields) -> Scenario:
    return Scenario(model="llama3-8b", topology=topology, gpus=gpus, plan=PLAN, **fields)


def write(tmp_path: Path, topology, **fields) -> Path:
    path = tmp_path / "described.yaml"
    path.write_text(yaml.safe_dump({"model": "llama3-8b", "topology": topology, "gpus": 64, "plan": PLAN, **fields}))
    return path


def test_a_described_fleet_runs():
    result = simulate(scenario(P5))
    assert result.step_time_s > 0
    assert result.topology == "8 x h100-sxm per node (nvswitch), 8 x 400 Gb/s efa per node"
    fleet = resolve_fleet(scenario({**P5, "name": "my p5"}))
    assert (fleet.topology.name, fleet.topology.n_nodes, fleet.topology.gpus_per_node) == ("my p5", 8, 8)
    assert fleet.device.name == "h100-sxm"
    assert fleet.topology.spec.node.scale_up.bandwidth_GBps == pytest.approx(450)  # the catalog's NVLink


def test_a_description_matching_a_bundled_file_predicts_the_same_step():
    described, bundled = simulate(scenario(P5_AS_BUNDLED)), simulate(scenario("aws-p5"))
    assert described.step_time_s == pytest.approx(bundled.step_time_s, rel=1e-12)
    assert described.energy_per_step_J == pytest.approx(bundled.energy_per_step_J, rel=1e-12)
    a, b = resolve_fleet(scenario(P5_AS_BUNDLED)).topology, resolve_fleet(scenario("aws-p5")).topology
    assert (a.n_nodes, a.n_gpus, a.n_edges, a.n_units) == (b.n_nodes, b.n_gpus, b.n_edges, b.n_units)


def test_a_described_topology_is_built_once_per_fleet():
    assert resolve_fleet(scenario(P5)).topology is resolve_fleet(scenario(dict(P5))).topology
    assert resolve_fleet(scenario(P5, gpus=128)).topology.n_gpus == 128


def test_the_gpu_comes_from_either_side_and_both_must_agree(tmp_path):
    no_gpu = {k: v for k, v in P5.items() if k != "gpu"}
    assert resolve_fleet(scenario(no_gpu, gpu="h100-sxm")).topology.spec.gpu == "h100-sxm"
    assert resolve_fleet(scenario(P5, gpu="h100-sxm")).device.name == "h100-sxm"
    with pytest.raises(InputError) as info:
        setup(load_scenario(write(tmp_path, P5, gpu="a100-80gb")))
    assert info.value.field == "topology.gpu" and "differs" in info.value.detail
    with pytest.raises(InputError) as info:
        setup(load_scenario(write(tmp_path, no_gpu)))
    assert info.value.field == "topology.gpu" and str(tmp_path) in str(info.value)
    with pytest.raises(InputError) as info:
        setup(load_scenario(write(tmp_path, {**P5, "gpu": "h900"})))
    assert info.value.field == "topology.gpu"


@pytest.mark.parametrize("change, field, says", [
    ({"nic_gbps": 400}, "topology.nic_gbps", "unknown field; allowed here: gpu, gpus_per_node"),
    ({"scale_up": "nvlink"}, "topology.scale_up", "nvswitch"),
    ({"transport": "udp"}, "topology.transport", "efa"),
    ({"gpus_per_node": "eight"}, "topology.gpus_per_node", "integer"),
    ({"nics_per_node": 3}, "topology.nics_per_node", "divide"),
    ({"nic_Gbps": -1}, "topology.nic_Gbps", ""),
    ({"nic_Gbps": True}, "topology.nic_Gbps", "must be a number, not true"),
    ({"scale_up": "nvlink_bridge"}, "topology.bandwidth_GBps", "bridge"),
])
def test_a_bad_field_gives_one_line_naming_the_file_and_field(tmp_path, change, field, says):
    path = write(tmp_path, {**P5, **change})
    with pytest.raises(InputError) as info:
        setup(load_scenario(path))
    err = info.value
    assert (err.file, err.field) == (str(path), field)
    assert says in err.detail and "\n" not in str(err)


def test_a_missing_field_and_a_fleet_of_part_nodes_are_named(tmp_path):
    with pytest.raises(InputError) as info:
        load_scenario(write(tmp_path, {k: v for k, v in P5.items() if k != "nic_Gbps"}))
    assert info.value.field == "topology.nic_Gbps" and "Gbit/s" in info.value.detail
    path = tmp_path / "odd.yaml"
    path.write_text(yaml.safe_dump({"model": "llama3-8b", "topology": P5, "gpus": 60, "plan": {**PLAN, "tp": 4}}))
    with pytest.raises(InputError) as info:
        setup(load_scenario(path))
    assert info.value.field == "gpus" and "whole nodes" in info.value.detail


def test_a_described_scenario_dumps_hashes_and_sweeps():
    s = scenario(P5)
    assert isinstance(s.topology, TopologyDescription)
    dumped = s.model_dump(mode="json")
    assert dumped["topology"]["nic_Gbps"] == 400 and json.dumps(dumped)
    again = Scenario(**dumped)
    assert again.topology == s.topology
    keys = InputKeys()
    assert keys.key(s).sha256 == keys.key(again).sha256
    assert keys.key(s).sha256 != keys.key(scenario({**P5, "nic_Gbps": 200})).sha256
    assert s.with_(tp=4).topology == s.topology
    swept = apply_changes(scenario("aws-p5"), {"topology": {**P5, "nics_per_node": 4}})
    assert resolve_fleet(swept).topology.spec.node.nics == 4


def test_trainsim_run_on_a_described_scenario_exits_0(tmp_path):
    path = write(tmp_path, P5)
    result = CliRunner().invoke(app, ["run", str(path), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "8 x h100-sxm per node (nvswitch)" in result.output
    bad = write(tmp_path, {**P5, "nics": 8})
    result = CliRunner().invoke(app, ["run", str(bad)])
    assert result.exit_code != 0 and "topology.nics: unknown field" in result.output


def test_a_sweep_hashes_the_generator_as_the_described_topology_file():
    from simulator.network import describe
    from simulator.studies.sweep_inputs import input_files

    assert input_files(scenario(P5))["topology"] == Path(describe.__file__)


def test_trainsim_plan_compares_gpus_on_a_description_without_its_own_gpu(tmp_path):
    path = tmp_path / "plan.yaml"
    no_gpu = {k: v for k, v in P5.items() if k != "gpu"}
    path.write_text(yaml.safe_dump({"model": "llama3-8b", "topology": no_gpu, "gpu": "h100-sxm", "gpus": 16,
                                    "plan": {**PLAN, "global_batch": 16}}))
    result = CliRunner().invoke(app, ["plan", str(path), "--gpu", "h100-sxm,h200"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
