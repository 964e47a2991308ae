"""`trainsim validate` on memory rows: peak memory per the statistic and rank a row names, fits
verdicts (a plan that does not fit is a prediction), the framework's FLOP formula, and the
rerunnable fit of the allocator slack."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from simulator.core.units import GiB
from simulator.hardware.catalog import load_catalog
from simulator.inputs.efficiency_file import default_efficiency
from simulator.validation.cases import case_setup, read_cases
from simulator.validation.memory_fit import (
    fit_allocator,
    memory_predictions,
    record_fit,
)
from simulator.validation.published import (
    UNKNOWN_STATISTIC,
    memory_stage,
    memory_statistic,
    metric_error_pct,
    predicted_metric,
    validate,
)
from simulator.workload.counting import six_n_flops_per_token

COLUMNS = ("case_id,source_id,model,n_params_b,n_layers,d_model,n_heads,n_kv_heads,d_ffn,vocab,seq_len,"
           "global_batch_seqs,micro_batch,gpu,n_gpus,gpus_per_node,tp,pp,dp,cp,vpp,seq_parallel,recompute,"
           "zero_stage,precision,inter_node_gbps_per_gpu,metric,value,notes,memory_statistic,memory_rank")
GPT = "GPT,,24,2048,16,,,51200,2048"
ROWS = [
    f"alloc,src,{GPT},32,1,a100-80gb,8,8,1,4,2,1,,0,none,1,bf16,200,peak_memory_gib,20,,allocated,last",
    f"resv,src,{GPT},32,1,a100-80gb,8,8,1,4,2,1,,0,none,1,bf16,200,peak_memory_gib,20,,reserved,0",
    f"unk,src,{GPT},32,1,a100-80gb,8,8,1,4,2,1,,0,none,1,bf16,200,peak_memory_gib,20,,unknown,",
    f"fits-no,src,{GPT},8,8,a100-40gb,1,1,1,1,1,1,,0,none,0,bf16,200,fits,0,,,",
    f"fits-yes,src,{GPT},8,1,a100-80gb,8,8,1,1,8,1,,0,full,1,bf16,200,fits,1,,,",
    f"bad-stat,src,{GPT},32,1,a100-80gb,8,8,1,4,2,1,,0,none,1,bf16,200,peak_memory_gib,20,,peak,",
    f"bad-fits,src,{GPT},8,1,a100-80gb,8,8,1,1,8,1,,0,full,1,bf16,200,fits,0.5,,,",
]


@pytest.fixture
def cases(tmp_path: Path):
    path = tmp_path / "memory.csv"
    path.write_text("\n".join([COLUMNS, *ROWS]) + "\n")
    return read_cases(path)


def test_memory_rows_compare_the_statistic_and_stage_they_name(cases):
    out = validate(cases).set_index("case_id")
    setup, _ = case_setup(cases.iloc[0], load_catalog(), default_efficiency())
    last = setup.fleet.memory(setup.plan)  # peak stage
    assert out.loc["alloc", "status"] == "ok"
    from simulator.workload.memory import memory_per_gpu
    by_stage = [memory_per_gpu(setup.model, setup.plan, capacity_bytes=setup.device.hbm_bytes, stage=i)
                for i in range(4)]
    assert out.loc["alloc", "predicted"] == pytest.approx(by_stage[3].allocated / GiB)
    assert out.loc["resv", "predicted"] == pytest.approx(by_stage[0].reserved / GiB)
    assert out.loc["unk", "predicted"] == pytest.approx(last.statistic(UNKNOWN_STATISTIC) / GiB)
    assert out.loc["resv", "predicted"] > by_stage[0].allocated / GiB
    assert out.loc["alloc", "error_pct"] == pytest.approx((out.loc["alloc", "predicted"] - 20) / 20 * 100)
    assert "memory_statistic" in out.loc["bad-stat", "status"]
    assert "fits" in out.loc["bad-fits", "status"]


def test_a_plan_that_does_not_fit_is_a_fits_prediction_not_a_failure(cases):
    """1.3B-class GPT with micro-batch 8, no recompute, one 40 GB A100: it does not fit, which is what
    the row says: predicted 0, error 0 %, status ok. The 8-GPU full-recompute row fits: 1, 0 %."""
    out = validate(cases).set_index("case_id")
    assert (out.loc["fits-no", "predicted"], out.loc["fits-no", "error_pct"], out.loc["fits-no", "status"]) == \
        (0.0, 0.0, "ok")
    assert (out.loc["fits-yes", "predicted"], out.loc["fits-yes", "error_pct"]) == (1.0, 0.0)


def test_a_wrong_verdict_is_a_100_percent_error():
    assert metric_error_pct("fits", 1.0, 0.0) == 100.0 and metric_error_pct("fits", 0.0, 0.0) == 0.0
    assert metric_error_pct("peak_memory_gib", 11.0, 10.0) == pytest.approx(10.0)


def test_statistic_and_rank_cells():
    assert memory_statistic("unknown") == memory_statistic(float("nan")) == UNKNOWN_STATISTIC == "reserved"
    assert memory_statistic(" Allocated ") == "allocated"
    with pytest.raises(ValueError, match="memory_statistic"):
        memory_statistic("max")
    plan = SimpleNamespace(pp=4, n_gpus=8, gpu_grid=__import__("numpy").arange(8).reshape(1, 2, 4, order="F"))
    setup = SimpleNamespace(plan=plan)
    assert memory_stage(setup, "last") == 3 and memory_stage(setup, 0) == 0 and memory_stage(setup, "") is None
    with pytest.raises(ValueError, match="memory_rank"):
        memory_stage(setup, 8)


def test_tflops_use_the_frameworks_formula(cases):
    setup, _ = case_setup(cases.iloc[0], load_catalog(), default_efficiency())
    result = SimpleNamespace(step_time_s=2.0)
    titan = SimpleNamespace(**{k: getattr(setup, k) for k in ("model", "device")},
                            plan=setup.plan.model_copy(update={"framework": "torchtitan"}))
    value, formula = predicted_metric("tflops_per_gpu", titan, result)
    tokens = setup.plan.global_batch * setup.model.seq_len
    assert formula == "6N+12Lhs"
    assert value == pytest.approx(six_n_flops_per_token(setup.model, causal=False) * tokens / 2.0 / 8 / 1e12)
    _, megatron = predicted_metric("tflops_per_gpu", setup, result, with_recompute_term=True)
    assert megatron == "Megatron eq. 3 with recomputation term"


def test_the_allocator_fit_is_rerunnable_and_records_its_provenance(cases, tmp_path):
    rows, failed = memory_predictions(cases)
    assert {r.case_id for r in rows} >= {"alloc", "resv", "unk", "fits-no"} and failed
    fit = fit_allocator(rows)
    assert 0.0 <= fit["fragmentation"] <= 0.35 and fit["mape_pct_fitted"] <= fit["mape_pct_at_prior"]
    target = tmp_path / "allocator.yaml"
    target.write_text((Path(__file__).parents[1] / "simulator" / "workload" / "allocator.yaml").read_text())
    csv = tmp_path / "memory.csv"
    csv.write_text("x")
    record_fit(fit, csv, target)
    record_fit(fit, csv, target)  # rerunning replaces the record
    data = yaml.safe_load(target.read_text())
    assert data["fitted"]["fragmentation"] == fit["fragmentation"] and "sha256" in data["fitted"]["provenance"]
    assert target.read_text().count("\nfitted:") == 1 and data["fragmentation"]["prior"] == 0.10


MEMORY_CSV = Path(__file__).resolve().parents[2] / "shared" / "validation" / "memory.csv"


@pytest.mark.skipif(not MEMORY_CSV.is_file(), reason="shared/ not beside the checkout")
def test_memory_csv_holds_the_megatron_peaks_and_every_verdict():
    """On ../shared/validation/memory.csv: Megatron-LM CI's max-allocated peaks within 5 % each,
    and every Korthikanti fits/does-not-fit statement right."""
    cases = read_cases(MEMORY_CSV)
    cases = cases[cases.source_id.isin(["megatron-ci", "korthikanti22"])]
    out = validate(cases)
    assert (out.status == "ok").all()
    peaks = out[out.metric == "peak_memory_gib"]
    assert len(peaks) == 6 and peaks.error_pct.abs().max() <= 5.0
    verdicts = out[out.metric == "fits"]
    assert len(verdicts) == 20 and (verdicts.error_pct == 0).all()
