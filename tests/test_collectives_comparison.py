"""Collectives against measured nccl-tests results: parsing a row into the system NCCL saw, the
comparison (NCCL's tuner + the correction), its summary, the fit, and the CLI on nccl files."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from simulator.cli import BAD_INPUT, app
from simulator.inputs.efficiency_file import default_efficiency
from simulator.network.efficiency import NOMINAL, NetworkEfficiency
from simulator.validation.collectives import (
    COLUMNS,
    MiB,
    compare,
    compare_prepared,
    is_nccl_table,
    mape_pct,
    prepare,
    read_nccl_csv,
    summary,
)
from simulator.validation.nccl_fit import points, predict
from simulator.validation.nccl_rows import NotComparable, int_or_range, parse_row, source_key, value

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
FILES = (REFERENCE / "nccl.csv", REFERENCE / "nccl_calibration.csv")
NOT_SINGLE = {"iss212_h100_expected", "iss119_a100_3n", "azure_ndh100v5_8n_ar_16G"}
"""The rows that are not one measurement (a maintainer's expected value, a peak/average summary,
a vendor baseline): the only ones allowed to stay not comparable."""


def _row(**over) -> dict:
    base = {"case_id": "x", "collective": "all_reduce", "gpu": "H100 80GB HBM3", "n_gpus": "16", "n_nodes": "2",
            "gpus_per_node": "8", "interconnect": "NVLink4/NVSwitch + 8x400 Gb/s NDR InfiniBand per node",
            "message_bytes": "1073741824", "algbw_gbs": "", "busbw_gbs": "300", "time_us": "", "source": "a/b@1 x",
            "notes": ""}
    return {**base, **over}


@pytest.fixture(scope="module")
def tables() -> pd.DataFrame:
    missing = [p for p in FILES if not p.is_file()]
    if missing:
        pytest.skip(f"{missing[0]} not present")
    return pd.concat([read_nccl_csv(p) for p in FILES], ignore_index=True)


@pytest.fixture(scope="module")
def compared(tables) -> pd.DataFrame:
    return compare(tables)


# --------------------------------------------------------------------------- parsing


def test_small_parsers():
    assert int_or_range("1024", "size") == (1024, 1024)
    assert int_or_range("4-8", "size") == (4, 8)
    assert int_or_range("<=1073741824", "size") == (0, 1073741824)
    assert value("~480", "busbw")[0] == 480
    assert value("365-370", "busbw")[0] == 367.5
    with pytest.raises(NotComparable, match="not a single figure"):
        value("96 (peak); 84.8 (avg)", "busbw")
    assert source_key("github NVIDIA/nccl#527 (someone, 2022)") == "NVIDIA/nccl#527"
    assert source_key("coreweave/nccl-tests@cb865533 README.md") == "coreweave/nccl-tests@cb865533"


def test_nvswitch_ib_row():
    r = parse_row(_row(notes="NCCL 2.21.5"))
    s = r.system
    assert (s.sm, s.n_nodes, s.gpus_per_node, s.scale_up) == (90, 2, 8, "nvswitch")
    assert s.nvlink_GBps == pytest.approx(18 * 20.6) and s.pcie_GBps == 48
    assert (s.nics_per_node, s.nic_GBps, s.transport, s.latency_inter_us) == (8, 50, "ib", 0)
    assert s.multicast and not s.collnet and s.version == "2.21"
    assert r.measured_busbw_GBps == 300 and r.algorithm is None


def test_p5_efa_is_eight_400g_nics_with_the_plugin_latency():
    s = parse_row(_row(gpu="H100 80GB HBM3 (AWS p5.48xlarge)",
                       interconnect="NVLink4/NVSwitch + 32x100 Gb/s EFA per node (aws-ofi-nccl)")).system
    assert (s.nics_per_node, s.nic_GBps, s.transport, s.latency_inter_us) == (8, 50, "efa", 75)
    s = parse_row(_row(gpu="A100-SXM4-40GB (AWS p4dn.24xlarge)", interconnect="4x100 Gb/s EFA per node")).system
    assert (s.sm, s.nics_per_node, s.nic_GBps, s.latency_inter_us, s.version) == (80, 4, 12.5, 75, "2.27")


def test_gb200_rack_is_nccls_node():
    r = parse_row(_row(gpu="GB200 (CoreWeave GB200 NVL72)", n_gpus="1440", n_nodes="360", gpus_per_node="4",
                       interconnect="MNNVL within rack + Quantum-X800 InfiniBand between 20 racks",
                       notes="NCCL 2.26.2"))
    s = r.system
    assert (s.sm, s.n_nodes, s.gpus_per_node, s.cpu, s.multicast) == (100, 20, 72, "arm", True)
    assert s.nvlink_GBps == pytest.approx(18 * 40.1) and s.version == "2.28"  # Blackwell: 2.28+ tables (§11)
    assert any("NIC rate not stated" in n for n in r.notes)


def test_other_scale_ups_forced_algorithm_and_defaults():
    dgx1 = parse_row(_row(gpu="V100-SXM2-32GB (NVIDIA DGX-1)", interconnect="NVLink2 hybrid cube-mesh + "
                          "2x100 GbE RoCE (ConnectX-5, SR-IOV) per node")).system
    assert (dgx1.sm, dgx1.scale_up, dgx1.nvlink_GBps, dgx1.transport, dgx1.nics_per_node, dgx1.nic_GBps) == \
        (70, "mesh", 120, "roce", 2, 12.5)
    mi = parse_row(_row(gpu="MI300X (OCI BM.GPU.MI300X.8)", interconnect="Infinity Fabric (xGMI) + RDMA cluster "
                        "network (OCI MI300X.8; NIC rate not stated)")).system
    assert (mi.scale_up, mi.nvlink_GBps, mi.transport, mi.multicast) == ("mesh", 448, "roce", False)
    bridge = parse_row(_row(gpu="H100 PCIe", n_gpus="2", n_nodes="1", gpus_per_node="2",
                            interconnect="NVLink bridge")).system
    assert (bridge.scale_up, bridge.n_nodes, bridge.multicast) == ("nvlink_bridge", 1, False)
    forced = parse_row(_row(interconnect="4 NICs per node (RoCE, GID 3), NCCL_ALGO=Tree", n_gpus="2",
                            gpus_per_node="1"))
    assert forced.algorithm == "tree" and forced.system.nics_per_node == 4 and forced.system.gpus_per_node == 1
    old = parse_row(_row(notes="NCCL v2.9.9-1"))
    assert old.system.version == "2.18" and any("older than the tables" in n for n in old.notes)
    assert parse_row(_row(gpu="B200")).system.version == "2.28"


def test_ranges_and_blank_sizes():
    r = parse_row(_row(n_gpus="2-8", n_nodes="1", gpus_per_node="2-8", message_bytes="2147483648-4294967296",
                       busbw_gbs="365-370"))
    assert [p[0].n_ranks for p in r.points] == [2, 8] and r.nbytes == 4294967296
    assert parse_row(_row(message_bytes="")).nbytes == 4 << 30


def test_not_single_measurements_are_not_comparable():
    with pytest.raises(NotComparable, match="expected value"):
        parse_row(_row(notes="EXPECTED value stated by NCCL maintainer, not a pasted measurement"))
    with pytest.raises(NotComparable, match="GPU"):
        parse_row(_row(gpu="TPU v5p"))


# --------------------------------------------------------------------------- the comparison


def test_every_row_with_a_known_gpu_is_comparable(tables, compared):
    assert list(compared["case_id"]) == list(tables["case_id"])
    bad = compared[compared["status"] != "ok"]
    assert set(bad["case_id"]) == NOT_SINGLE, bad[["case_id", "status"]].to_string()
    ok = compared[compared["status"] == "ok"]
    assert (ok["predicted"] > 0).all() and (ok["published"] > 0).all()
    assert ok["algorithm"].notna().all() and (ok["channels"] >= 1).all()


def test_columns_and_summary(compared):
    assert list(compared.columns) == list(COLUMNS)
    assert (compared["metric"] == "busbw_gbs").all()
    s = summary(compared)
    assert list(s.columns) == ["collective", "size_range", "scale", "count", "mape_pct", "median_abs_err_pct",
                               "mean_err_pct"]
    assert {"< 1 MiB", "1-64 MiB", ">= 64 MiB"} <= set(s["size_range"])
    assert {"one node", "2 nodes", "> 2 nodes"} <= set(s["scale"])
    assert s.iloc[-1]["count"] == (compared["status"] == "ok").sum()
    assert mape_pct(compared, MiB) == pytest.approx(
        compared[(compared.status == "ok") & (compared.message_bytes >= MiB)].error_pct.abs().mean())


def test_nominal_is_nccl_and_the_correction_helps(tables):
    prepared = prepare(tables)
    before = compare_prepared(tables, prepared, NOMINAL)
    after = compare_prepared(tables, prepared, default_efficiency().network)
    assert mape_pct(after, MiB) < mape_pct(before, MiB)
    assert mape_pct(after) < mape_pct(before)


def test_the_fit_times_rows_as_the_comparison_does(tables):
    prepared = [p for p in prepare(tables) if not isinstance(p, str)]
    eff = NetworkEfficiency(node_efficiency=0.9, inter_ramp_bytes=5e4, inter_ramp_power=0.7, inter_latency_s=2e-5,
                            step_latency_efa_s=3e-6, step_latency_roce_s=4e-6)
    from simulator.validation.collectives import predicted_busbw_GBps

    expected = np.array([predicted_busbw_GBps(p, eff) for p in prepared])
    assert predict(points(prepared), eff) == pytest.approx(expected, rel=1e-9)


def test_the_comparison_is_fast(tables):
    start = time.perf_counter()
    compare(tables, NOMINAL)
    assert time.perf_counter() - start < 10


# --------------------------------------------------------------------------- the CLI


def test_validate_recognises_an_nccl_file(tables, tmp_path):
    out = tmp_path / "nccl-out.csv"
    done = CliRunner().invoke(app, ["validate", str(FILES[0]), "--out", str(out)])
    assert done.exit_code == 0, done.output
    written = pd.read_csv(out)
    assert len(written) == len(read_nccl_csv(FILES[0])) and "busbw" in done.stdout
    assert is_nccl_table(read_nccl_csv(FILES[0]).columns)


def test_calibrate_refuses_nccl_and_throughput_files_together(tables, tmp_path):
    other = tmp_path / "throughput.csv"
    other.write_text("case_id,metric,published\nx,tflops_per_gpu,100\n")
    out = tmp_path / "eff.yaml"
    done = CliRunner().invoke(app, ["calibrate", str(FILES[0]), str(other), "--out", str(out)])
    assert done.exit_code == BAD_INPUT
    lines = [line for line in done.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot be calibrated together" in lines[0], done.output
    assert not out.exists()


def test_calibrate_on_nccl_files_writes_the_network_fit(tables, tmp_path):
    import yaml

    from simulator.inputs.efficiency_file import load_efficiency

    out = tmp_path / "eff.yaml"
    done = CliRunner().invoke(app, ["calibrate", *map(str, FILES), "--out", str(out)])
    assert done.exit_code == 0, done.output
    doc = yaml.safe_load(out.read_text())
    record = doc["network_fit"]
    assert [f["file"] for f in record["fitted_on"]["files"]] == ["nccl.csv", "nccl_calibration.csv"]
    assert len(record["fitted_on"]["files"][0]["sha256"]) == 64
    assert record["in_sample"]["all"]["MAPE_pct_ge_1MiB"] > 0
    assert "compute" in doc and doc["fit"] == yaml.safe_load(
        (Path(__file__).parents[1] / "simulator/inputs/efficiency.yaml").read_text())["fit"]
    assert load_efficiency(out).network.node_efficiency == pytest.approx(doc["network"]["node_efficiency"])
