"""Every number of every input is finite, physical and of the right type (simulator.core.bounds):
`.inf`, `.nan`, `1e300`, `true` for an integer, a number for a boolean and negative values each
give exit 2 from the CLI and one line naming the file and the field and showing the range."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ValidationError
from typer.testing import CliRunner

from simulator.cli import app
from simulator.core.bounds import MAX_GPUS, real, span, whole
from simulator.core.errors import InputError, from_validation_error
from simulator.hardware.catalog import GPUSpec, _GPUEntry
from simulator.hardware.compute import ComputeEfficiency
from simulator.hardware.power import PowerFractions
from simulator.inputs.efficiency_file import (
    EfficiencyFile,
    _ComputeSection,
    _NetworkSection,
)
from simulator.inputs.scenario import EnergySpec, PlanSpec, Scenario
from simulator.network.efficiency import NetworkEfficiency
from simulator.network.topology import load_topology
from simulator.network.topology_file import FabricSpec, NodeSpec, ScaleUpSpec
from simulator.system.variability import Variability
from simulator.workload.model import ModelConfig
from simulator.workload.plan import ParallelPlan

ROOT = Path(__file__).resolve().parents[1]
GOOD = yaml.safe_load((ROOT / "scenarios" / "gpt2xl-8-l40s-dp.yaml").read_text())
TOPOLOGY = yaml.safe_load((ROOT / "topologies" / "pcie-ethernet-small.yaml").read_text())
runner = CliRunner()

SCHEMAS: tuple[type[BaseModel], ...] = (
    Scenario, PlanSpec, EnergySpec, ParallelPlan, ModelConfig, Variability, _GPUEntry, GPUSpec, ComputeEfficiency,
    PowerFractions, _ComputeSection, _NetworkSection, EfficiencyFile, ScaleUpSpec, NodeSpec, FabricSpec,
)


def _error_line(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def _scenario(tmp_path: Path, **changes) -> Path:
    data = json.loads(json.dumps(GOOD))
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


INF, NAN = math.inf, math.nan

SCENARIO_CASES = {
    "pue-inf": ({"energy__pue": INF}, "energy.pue", "[1, 3]"),
    "pue-nan": ({"energy__pue": NAN}, "energy.pue", "[1, 3]"),
    "pue-1e300": ({"energy__pue": 1e300}, "energy.pue", "[1, 3]"),
    "pue-below-1": ({"energy__pue": 0.5}, "energy.pue", "[1, 3]"),
    "bucket-inf": ({"plan__dp_bucket_MB": INF}, "plan.dp_bucket_MB", "[1, 1000000]"),
    "tp-true": ({"plan__tp": True}, "plan.tp", "expected an integer"),
    "micro-batch-1e300": ({"plan__micro_batch": 1e300}, "plan.micro_batch", "[1, 16777216]"),
    "gpus-negative": ({"gpus": -8}, "gpus", f"[1, {MAX_GPUS}]"),
    "gpus-beyond-max": ({"gpus": 2 * MAX_GPUS}, "gpus", f"[1, {MAX_GPUS}]"),
    "sp-one": ({"plan__sequence_parallel": 1}, "plan.sequence_parallel", "true or false"),
    "jitter-nan": ({"variability__compute_jitter_cv": NAN}, "variability.compute_jitter_cv", "[0, 1]"),
    "slow-gpu-inf": ({"variability__slow_gpus": {0: INF}}, "variability.slow_gpus.0", "[1, 100]"),
    "seed-negative": ({"variability__seed": -1}, "variability.seed", "[0, 4294967295]"),
    "model-seq-len-1e300": ({"model": {"preset": "gpt2-xl", "seq_len": 1e300}}, "model.seq_len", "[1, 16777216]"),
    "model-d-model-true": ({"model": {"preset": "gpt2-xl", "d_model": True}}, "model.d_model", "[1, 262144]"),
}


@pytest.mark.parametrize("case", sorted(SCENARIO_CASES))
def test_scenario_value_out_of_range_names_file_field_and_range(case, tmp_path):
    changes, field, words = SCENARIO_CASES[case]
    path = _scenario(tmp_path, **changes)
    line = _error_line(["run", str(path)])
    assert f"{path}: {field}: " in line
    assert words in line


def test_yaml_spellings_of_inf_nan_and_huge_numbers_are_refused(tmp_path):
    for text in (".inf", "-.inf", ".nan", ".NaN", "1e300", "1.0e+300"):
        path = tmp_path / "s.yaml"
        path.write_text((ROOT / "scenarios" / "gpt2xl-8-l40s-dp.yaml").read_text().replace("pue: 1.3", f"pue: {text}"))
        line = _error_line(["run", str(path)])
        assert f"{path}: energy.pue: expected a finite number in [1, 3]" in line


def test_internal_fields_are_neither_allowed_nor_listed(tmp_path):
    line = _error_line(["run", str(_scenario(tmp_path, colour="blue"))])
    assert "unknown field" in line and "base_dir" not in line and "source_file" not in line
    line = _error_line(["run", str(_scenario(tmp_path, base_dir="/etc"))])
    assert "scenario.yaml: base_dir: unknown field" in line and "source_file" not in line


def test_union_members_do_not_appear_in_locations(tmp_path):
    line = _error_line(["run", str(_scenario(tmp_path, model=5))])
    assert "scenario.yaml: model: must be a valid string" in line
    assert "model.str" not in line and "dict[" not in line


def _efficiency(tmp_path: Path, section: str, name: str, value) -> Path:
    eff = tmp_path / "eff.yaml"
    eff.write_text(yaml.safe_dump({section: {name: value}}))
    return _scenario(tmp_path, efficiency_file=str(eff))


EFFICIENCY_CASES = {
    "half-dim-inf": ("compute", "gemm_half_dim", INF, "[0, 65536]"),
    "half-dim-1e300": ("compute", "gemm_half_dim", 1e300, "[0, 65536]"),
    "gemm-nan": ("compute", "gemm", NAN, "(0, 1]"),
    "generation-inf": ("compute", "gemm_by_generation", {"ampere": INF}, "(0, 1]"),
    "kernel-us-negative": ("compute", "kernel_overhead_us", -1, "[0, 1000000]"),
    "inter-efficiency-true": ("network", "inter_efficiency", True, "(0, 1]"),
    "inter-latency-us-inf": ("network", "inter_latency_us", INF, "[0, 10000]"),
    "step-latency-us-above": ("network", "step_latency_tcpx_us", 2e4, "[0, 10000]"),
    "power-negative": ("power", "compute", -0.5, "(0, 1.2]"),
}


@pytest.mark.parametrize("case", sorted(EFFICIENCY_CASES))
def test_efficiency_file_value_out_of_range(case, tmp_path):
    section, name, value, words = EFFICIENCY_CASES[case]
    line = _error_line(["run", str(_efficiency(tmp_path, section, name, value))])
    assert f"eff.yaml: {section}.{name}" in line and words in line


CATALOG_CASES = {
    "tdp-inf": ({"tdp_W": INF}, "tdp_W", "(0, 100000]"),
    "hbm-1e300": ({"hbm_GB": 1e300}, "hbm_GB", "(0, 100000]"),
    "tflops-nan": ({"peak_tflops": {"bf16": NAN}}, "peak_tflops.bf16", "(0, 100000]"),
    "idle-negative": ({"idle_W": -1}, "idle_W", "[0, 100000]"),
    "bandwidth-true": ({"intra_node_bandwidth_GBps": True}, "intra_node_bandwidth_GBps", "(0, 1000000]"),
}


@pytest.mark.parametrize("case", sorted(CATALOG_CASES))
def test_gpu_catalog_value_out_of_range(case, tmp_path):
    fields, field, words = CATALOG_CASES[case]
    hw = tmp_path / "gpus.yaml"
    hw.write_text(yaml.safe_dump({"l40s-x": {"base": "l40s", **fields}}))
    line = _error_line(["run", str(_scenario(tmp_path, hardware_file=str(hw), gpu="l40s-x"))])
    assert f"gpus.yaml: l40s-x.{field}: " in line and words in line


TOPOLOGY_CASES = {
    "bandwidth-inf": ("node.scale_up.bandwidth_GBps", INF, "(0, 1000000]"),
    "bandwidth-1e300": ("node.scale_up.bandwidth_GBps", 1e300, "(0, 1000000]"),
    "latency-negative": ("node.nic_latency_us", -1.0, "[0, 1000000]"),
    "nic-rate-nan": ("node.nic_bandwidth_Gbps", NAN, "(0, 8000000]"),
    "gpus-true": ("node.gpus", True, "expected an integer"),
    "grow-one": ("fabric.grow", 1, "true or false"),
    "tiers-true": ("fabric.tiers", True, "[1, 3]"),
    "power-inf": ("fabric.switch_power_W", INF, "[0, 1000000]"),
    "max-nodes-beyond-fleet": ("fabric.max_nodes", MAX_GPUS, "MAX_GPUS"),
}


@pytest.mark.parametrize("case", sorted(TOPOLOGY_CASES))
def test_topology_file_value_out_of_range(case, tmp_path):
    dotted, value, words = TOPOLOGY_CASES[case]
    data = json.loads(json.dumps(TOPOLOGY))
    *parents, leaf = dotted.split(".")
    node = data
    for p in parents:
        node = node[p]
    node[leaf] = value
    topo = tmp_path / "topo.yaml"
    topo.write_text(yaml.safe_dump(data))
    line = _error_line(["run", str(_scenario(tmp_path, topology=str(topo)))])
    assert f"topo.yaml: {dotted}: " in line and words in line


HF_CASES = {
    "vocab-huge": ("vocab_size", 10**30, "[1, 16777216]"),
    "positions-1e300": ("n_positions", 1e300, "n_positions"),
    "embd-true": ("n_embd", True, "n_embd"),
    "layers-negative": ("n_layer", -12, "n_layer"),
    "layers-inf": ("n_layer", INF, "n_layer"),
}


@pytest.mark.parametrize("case", sorted(HF_CASES))
def test_hugging_face_config_value_out_of_range(case, tmp_path):
    key, value, words = HF_CASES[case]
    config = json.loads((ROOT / "tests" / "data" / "hf" / "gpt2" / "config.json").read_text())
    config[key] = value
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
    line = _error_line(["run", str(_scenario(tmp_path, model={"hf_config": "hf"}))])
    assert f"config.json: {key}: " in line and words in line


def test_a_fleet_beyond_max_gpus_is_refused_before_building_it():
    with pytest.raises(InputError, match=f"MAX_GPUS = {MAX_GPUS}") as err:
        load_topology("dgx-h100-superpod", MAX_GPUS + 8)
    assert err.value.field == "n_gpus"


def test_network_efficiency_refuses_booleans_non_finite_and_absurd_values():
    for kwargs, text in (({"node_efficiency": True}, r"\(0, 1\]"), ({"inter_efficiency": math.nan}, r"\(0, 1\]"),
                         ({"inter_latency_s": math.inf}, r"\[0, 0.01\]"), ({"node_latency_s": 5.0}, r"\[0, 0.01\]"),
                         ({"inter_latency_s": True}, r"\[0, 0.01\]"), ({"node_efficiency": "0.5"}, r"\(0, 1\]"),
                         ({"nccl_version": "2.99"}, "is not modelled")):
        with pytest.raises(ValidationError, match=text):
            NetworkEfficiency(**kwargs)
    assert NetworkEfficiency(inter_efficiency=1, node_latency_s=0).inter_efficiency == 1


def test_the_types_accept_numbers_of_either_kind_and_nothing_else():
    class M(BaseModel):
        x: real(0, 10, lo_open=True) = 1.0
        n: whole(1, 5) = 1

    import numpy as np

    assert M(x=3, n=np.int64(2)).x == 3.0 and isinstance(M(x=3).x, float)
    assert M(x=np.float64(2.5)).x == 2.5
    for bad in ({"x": 0}, {"x": True}, {"x": "1"}, {"x": 10**400}, {"n": 2.0}, {"n": "2"}, {"n": False}, {"n": 6}):
        with pytest.raises(ValidationError):
            M(**bad)


def test_message_of_a_range_error_states_the_range():
    with pytest.raises(ValidationError) as err:
        EnergySpec(pue=math.inf)
    assert str(from_validation_error(err.value, schema=EnergySpec, file="f.yaml", prefix="energy")) == (
        "f.yaml: energy.pue: expected a finite number in [1, 3] (got inf)")


def _bounded_fields(schema: type[BaseModel]):
    for name, info in schema.model_fields.items():
        for meta in info.metadata:
            low = getattr(meta, "ge", None) if hasattr(meta, "ge") else getattr(meta, "gt", None)
            if low is not None:
                yield name, info


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.__name__)
def test_every_number_field_is_bounded_and_its_description_states_the_range(schema):
    for name, info in schema.model_fields.items():
        annotation = info.annotation
        bounds = {type(m).__name__: m for m in info.metadata}
        if annotation in (int, float):
            assert ("Ge" in bounds or "Gt" in bounds) and ("Le" in bounds or "Lt" in bounds), f"{schema.__name__}.{name}"
            lo = bounds["Ge"].ge if "Ge" in bounds else bounds["Gt"].gt
            hi = bounds["Le"].le if "Le" in bounds else bounds["Lt"].lt
            text = span(lo, hi, lo_open="Gt" in bounds, hi_open="Lt" in bounds)
            assert info.description and text in info.description, f"{schema.__name__}.{name}: {info.description}"


def test_bundled_inputs_fit_the_ranges():
    for path in sorted((ROOT / "topologies").glob("*.yaml")):
        load_topology(str(path))
    assert isinstance(NetworkEfficiency(), BaseModel)
