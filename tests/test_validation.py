"""`trainsim validate`: every row comes back, with its prediction or the reason it has none."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from simulator.cli import app
from simulator.core.errors import InputError
from simulator.hardware.catalog import load_catalog
from simulator.inputs.efficiency_file import default_efficiency
from simulator.system.estimate import estimate_step
from simulator.system.workplan import build_step_plan
from simulator.validation.cases import case_setup, read_cases
from simulator.validation.published import summary, validate
from simulator.workload.loading import get_preset
from simulator.workload.memory import memory_per_gpu

COLUMNS = ("case_id,source_id,model,n_params_b,n_layers,d_model,n_heads,n_kv_heads,d_ffn,vocab,seq_len,"
           "global_batch_seqs,micro_batch,gpu,n_gpus,gpus_per_node,tp,pp,dp,cp,vpp,seq_parallel,recompute,"
           "zero_stage,precision,inter_node_gbps_per_gpu,metric,value,notes")

ROWS = [
    # a GPT-3 175B step on 64 A100s (Korthikanti et al. 2022, Table 5 shape)
    "gpt3-step,src-a,GPT-3,174.6,96,12288,96,,,51200,2048,64,1,a100-80gb,64,8,8,8,1,1,,1,selective,0,bf16,200,"
    "step_time_s,13.75,",
    "gpt3-mfu,src-a,GPT-3,174.6,96,12288,96,,,51200,2048,64,1,a100-80gb,64,8,8,8,1,1,,1,selective,0,bf16,200,mfu,0.514,",
    "unknown-gpu,src-b,X,1.3,24,2048,16,,,50000,2048,64,1,tpu-v9,8,8,1,1,8,1,,0,none,0,bf16,200,step_time_s,1.0,",
    "context-parallel,src-b,X,1.3,24,2048,16,,,50000,2048,64,1,a100-80gb,8,8,1,1,4,2,,0,none,0,bf16,200,step_time_s,1.0,",
    "small-defaults,src-b,X,,24,2048,16,,,50000,2048,64,,h100-sxm,8,,,,,,,,,,,,tokens_per_s_per_gpu,20000,",
]


@pytest.fixture
def cases_csv(tmp_path: Path) -> Path:
    path = tmp_path / "cases.csv"
    path.write_text("\n".join([COLUMNS, *ROWS]) + "\n")
    return path


def test_every_row_comes_back_with_a_prediction_or_a_reason(cases_csv):
    out = validate(read_cases(cases_csv))
    assert list(out.columns[:6]) == ["case_id", "metric", "published", "predicted", "error_pct", "status"]
    assert list(out.case_id) == ["gpt3-step", "gpt3-mfu", "unknown-gpu", "context-parallel", "small-defaults"]
    by_id = out.set_index("case_id")
    assert by_id.loc["gpt3-step", "status"] == "ok" and by_id.loc["gpt3-step", "predicted"] > 0
    assert by_id.loc["gpt3-step", "error_pct"] == pytest.approx(
        (by_id.loc["gpt3-step", "predicted"] - 13.75) / 13.75 * 100)
    assert 0 < by_id.loc["gpt3-mfu", "predicted"] < 1
    assert "tpu-v9" in by_id.loc["unknown-gpu", "status"]
    assert by_id.loc["context-parallel", "status"] == "ok" and by_id.loc["context-parallel", "cp"] == 2


def test_rows_sharing_a_configuration_share_one_simulation(cases_csv, monkeypatch):
    import simulator.validation.published as v

    calls = []
    real = v.simulate_setup
    monkeypatch.setattr(v, "simulate_setup", lambda setup, **kw: calls.append(setup.model.name) or real(setup, **kw))
    cases = read_cases(cases_csv)
    out = validate(cases).set_index("case_id")
    assert out.loc["gpt3-step", "step_time_s"] == out.loc["gpt3-mfu", "step_time_s"]
    assert calls.count("GPT-3") == 1  # two rows of one run, one simulation
    changed = cases.copy()
    changed.loc[changed.case_id == "gpt3-mfu", "micro_batch"] = 2  # one cell differs: another run
    calls.clear()
    validate(changed.iloc[:2])
    assert calls.count("GPT-3") == 2


def test_bad_cells_fail_their_row_with_the_column_named(cases_csv, tmp_path):
    text = cases_csv.read_text().replace("gpt3-mfu,src-a,GPT-3,174.6,96,", "gpt3-mfu,src-a,GPT-3,174.6,ninety-six,")
    bad = tmp_path / "bad.csv"
    bad.write_text(text.replace(",step_time_s,1.0,\n", ",step_time_s,,\n", 1))
    out = validate(read_cases(bad)).set_index("case_id")
    assert "n_layers" in out.loc["gpt3-mfu", "status"]
    assert "column value" in out.loc["unknown-gpu", "status"] or "tpu-v9" in out.loc["unknown-gpu", "status"]
    assert summary(validate(read_cases(bad))).loc["ALL", "failed"] == 2


def test_a_header_only_csv_or_a_folder_is_a_clear_error(tmp_path):
    header = tmp_path / "empty.csv"
    header.write_text(COLUMNS + "\n")
    with pytest.raises(InputError, match="no cases"):
        read_cases(header)
    with pytest.raises(InputError, match="cannot read"):
        read_cases(tmp_path)


def test_an_output_folder_that_does_not_exist_is_refused_before_any_work(cases_csv, tmp_path):
    result = CliRunner().invoke(app, ["validate", str(cases_csv), "--out", str(tmp_path / "nope" / "p.csv")])
    assert result.exit_code == 2 and "--out" in result.output


def test_defaults_for_empty_cells_are_listed(cases_csv):
    out = validate(read_cases(cases_csv)).set_index("case_id")
    used = out.loc["small-defaults", "defaults_used"]
    for default in ("tp=1", "pp=1", "micro_batch=1", "precision=bf16", "gpus_per_node=8",
                    "inter_node_gbps_per_gpu=400", "recompute=none"):
        assert default in used
    assert out.loc["small-defaults", "status"] == "ok"


def test_the_model_variant_is_the_one_matching_the_stated_size(cases_csv):
    out = validate(read_cases(cases_csv)).set_index("case_id")
    assert "4h MLP, tied" in out.loc["gpt3-step", "defaults_used"]


def test_failures_are_counted_in_the_summary(cases_csv):
    summ = summary(validate(read_cases(cases_csv)))
    assert summ.loc["src-b", "failed"] == 1  # the unknown GPU
    assert summ.loc["ALL", "rows"] == 5 and summ.loc["ALL", "failed"] == 1
    assert summ.loc["src-a", "MAPE_pct"] == pytest.approx(
        validate(read_cases(cases_csv)).query("source_id == 'src-a'").error_pct.abs().mean())


def test_a_csv_without_a_required_column_names_it(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("case_id,metric,value\nx,mfu,0.5\n")
    with pytest.raises(InputError, match="missing column.*n_layers") as err:
        read_cases(path)
    assert err.value.file == str(path)


def test_the_command_prints_a_summary_and_writes_the_table_atomically(cases_csv, tmp_path):
    out = tmp_path / "predictions.csv"
    result = CliRunner().invoke(app, ["validate", str(cases_csv), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "MAPE" in result.output and "ALL" in result.output
    table = pd.read_csv(out)
    assert len(table) == len(ROWS)
    assert not list(tmp_path.glob(".predictions.csv.*"))  # no temporary file left behind


def test_the_plot_shows_each_simulated_case_in_its_metrics_panel(cases_csv, tmp_path):
    from simulator.results.parity import parity_figure

    results = validate(read_cases(cases_csv))
    fig = parity_figure(results)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    ok = results[results.status == "ok"]
    assert [ax.get_xlabel() for ax in panels] == [
        "published step time (s)", "published MFU", "published tokens/s per GPU"]
    assert sum(len(c.get_offsets()) for ax in panels for c in ax.collections if c.get_label() != "±10 %") == len(ok)
    assert f"{len(ok)} of {len(results)} cases simulated" in fig._suptitle.get_text()
    plot = tmp_path / "parity.svg"
    result = CliRunner().invoke(app, ["validate", str(cases_csv), "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert plot.read_text().lstrip().startswith("<?xml") and not list(tmp_path.glob(".parity.svg.*"))
    refused = CliRunner().invoke(app, ["validate", str(cases_csv), "--plot", str(tmp_path / "parity.jpg")])
    assert refused.exit_code == 2 and "ending in .png, .svg, .pdf" in refused.output


def test_spaces_after_the_commas_and_a_byte_order_mark_change_nothing(cases_csv, tmp_path):
    spaced = tmp_path / "spaced.csv"
    spaced.write_text(cases_csv.read_text().replace(",", ", "), encoding="utf-8-sig")
    a, b = validate(read_cases(cases_csv)), validate(read_cases(spaced))
    assert list(a.status) == list(b.status)
    assert a.predicted.fillna(-1).tolist() == b.predicted.fillna(-1).tolist()


def test_the_command_reports_a_missing_file(tmp_path):
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "nope.csv")])
    assert result.exit_code == 2
    assert "no such file" in result.output


def test_a_user_hardware_file_covers_a_gpu_the_catalog_lacks(cases_csv, tmp_path):
    gpus = tmp_path / "gpus.yaml"
    gpus.write_text("tpu-v9:\n  base: h100-sxm\n  source: test part\n")
    out = tmp_path / "p.csv"
    result = CliRunner().invoke(app, ["validate", str(cases_csv), "--hardware", str(gpus), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out).set_index("case_id").loc["unknown-gpu", "status"] == "ok"


def test_megatron_switches_quoted_in_the_notes_set_the_overlap_options(tmp_path):
    from simulator.hardware.catalog import load_catalog
    from simulator.inputs.efficiency_file import default_efficiency
    from simulator.validation.cases import case_setup

    row = ("gpt-7b,src-c,GPT,,32,4096,32,,,50000,4096,64,1,h100-sxm,16,8,8,1,2,1,,,,,bf16,400,mfu,0.5,")
    noted = row + '"ran with --overlap-grad-reduce --overlap-param-gather --tp-comm-overlap, PP overlap default"'
    path = tmp_path / "cases.csv"
    path.write_text("\n".join([COLUMNS, row, noted.replace("gpt-7b,", "gpt-7b-noted,", 1)]) + "\n")
    cases = read_cases(path)
    plain, _ = case_setup(cases.iloc[0], load_catalog(), default_efficiency())
    setup, used = case_setup(cases.iloc[1], load_catalog(), default_efficiency())
    assert (plain.plan.tp_overlap, plain.plan.sequence_parallel, plain.plan.overlap_param_gather) == \
        ("backward", False, False)
    p = setup.plan
    assert (p.tp_overlap, p.sequence_parallel, p.overlap_param_gather, p.overlap_grad_reduce, p.zero_stage) == \
        ("full", True, True, True, 1)  # --tp-comm-overlap needs SP, --overlap-param-gather the distributed optimizer
    assert any(u.startswith("from notes: --overlap-grad-reduce --overlap-param-gather --tp-comm-overlap")
               for u in used)
    out = validate(cases).set_index("case_id")
    assert out.loc["gpt-7b-noted", "step_time_s"] < out.loc["gpt-7b", "step_time_s"]


def test_a_row_whose_size_its_shape_cannot_give_is_not_simulated(cases_csv, tmp_path):
    # Mixtral-8x7B-like: the dense shape gives about 7B parameters, the row states 46.7B
    moe = ("mixtral,src-c,Mixtral 8x7B,46.7,32,4096,32,8,14336,32000,4096,64,1,h100-sxm,8,8,8,1,1,1,,1,none,0,"
           "bf16,400,tokens_per_s_per_gpu,2000,")
    path = tmp_path / "moe.csv"
    path.write_text(cases_csv.read_text() + moe + "\n")
    out = validate(read_cases(path)).set_index("case_id")
    assert "mixture of experts" in out.loc["mixtral", "status"] and "46.7" in out.loc["mixtral", "status"]


def test_a_row_without_parallel_sizes_gets_the_fastest_plan_that_fits(cases_csv, tmp_path):
    # GPT-3 175B on 64 A100s, no tp/pp/dp: data parallelism alone cannot hold it
    open_row = "gpt3-open,src-a,GPT-3,174.6,96,12288,96,,,51200,2048,64,1,a100-80gb,64,8,,,,1,,1,,,bf16,200,mfu,0.5,"
    path = tmp_path / "open.csv"
    path.write_text(cases_csv.read_text() + open_row + "\n")
    cases = read_cases(path)
    setup, used = case_setup(cases[cases.case_id == "gpt3-open"].iloc[0], load_catalog(), default_efficiency())
    assert setup.plan.tp * setup.plan.pp > 1 and "fastest plan that fits" in "; ".join(used)

    def estimate_s(plan) -> float:
        sp = build_step_plan(setup.model, plan, setup.topology, setup.device, setup.efficiency)
        return estimate_step(sp, setup.device, setup.efficiency, pue=setup.scenario.energy.pue).step_s

    chosen_s = estimate_s(setup.plan)
    for tp, pp, recompute in ((8, 8, "full"), (8, 4, "full"), (4, 8, "full"), (8, 8, "none"), (8, 2, "full")):
        other = setup.plan.model_copy(update=dict(tp=tp, pp=pp, dp=64 // (tp * pp), recompute=recompute))
        if memory_per_gpu(setup.model, other, capacity_bytes=setup.device.hbm_bytes).fits:
            assert chosen_s <= estimate_s(other)
    assert validate(cases).set_index("case_id").loc["gpt3-open", "status"] == "ok"


def test_a_row_stating_tp_and_dp_gets_the_pipeline_that_fills_the_fleet(cases_csv, tmp_path):
    row = ("gpt3-pp-open,src-a,GPT-3,174.6,96,12288,96,,,51200,2048,64,1,a100-80gb,128,8,8,,8,1,,1,full,1,bf16,200,"
           "mfu,0.4,")
    path = tmp_path / "pp.csv"
    path.write_text(cases_csv.read_text() + row + "\n")
    cases = read_cases(path)
    setup, used = case_setup(cases[cases.case_id == "gpt3-pp-open"].iloc[0], load_catalog(), default_efficiency())
    assert (setup.plan.tp, setup.plan.pp, setup.plan.dp) == (8, 2, 8)  # 128 GPUs / (tp 8 x dp 8)
    assert "tp=8, pp=2" in "; ".join(used)


def test_a_row_naming_a_preset_without_its_shape_gets_the_preset(tmp_path):
    """Shape cells empty: the model named (by preset name or an alias, any spelling) gives it;
    stated shape cells still count; an unknown name or a size the preset cannot have fails."""
    tail = ",4096,64,1,h100-sxm,64,8,8,1,8,1,,1,selective,1,bf16,400,mfu,0.45,"
    rows = {
        "by-alias": "src,meta-llama/Llama-2-70b-hf,70,,,,,,",
        "spelled-out": "src,Llama 2 70B,70,80,8192,64,8,28672,32000",
        "by-name-short-vocab": "src,LLAMA2-70B,,,,,,,16000",
        "unknown": "src,Falcon 180B,180,,,,,,",
        "wrong-size": "src,Llama 2 70B,7,,,,,,",
    }
    path = tmp_path / "presets.csv"
    path.write_text("\n".join([COLUMNS, *(f"{k},{v}{tail}" for k, v in rows.items())]) + "\n")
    out = validate(read_cases(path)).set_index("case_id")
    assert out.loc["by-alias", "status"] == "ok"
    assert "model shape from preset llama2-70b (n_layers, d_model, n_heads, vocab empty)" in \
        out.loc["by-alias", "defaults_used"]
    cases = read_cases(path).set_index("case_id", drop=False)
    setup, _ = case_setup(cases.loc["by-alias"], load_catalog(), default_efficiency())
    preset = get_preset("llama2-70b").model_dump()
    assert {k: v for k, v in setup.model.model_dump().items() if k != "name"} == \
        {k: v for k, v in preset.items() if k != "name"}
    # the spelled-out shape differs only in what the columns cannot say (its variant is a close call)
    assert out.loc["by-alias", "step_time_s"] == pytest.approx(out.loc["spelled-out", "step_time_s"], rel=0.01)
    assert out.loc["by-name-short-vocab", "status"] == "ok"
    assert out.loc["by-name-short-vocab", "step_time_s"] < out.loc["by-alias", "step_time_s"]  # half the vocab
    assert "column n_layers is empty and model 'Falcon 180B' is not a preset" in out.loc["unknown", "status"]
    assert "preset llama2-70b has 69" in out.loc["wrong-size", "status"]


def test_an_mfu_given_as_a_percentage_is_refused_with_the_fraction(cases_csv, tmp_path):
    path = tmp_path / "pct.csv"
    path.write_text(cases_csv.read_text().replace(",mfu,0.514,", ",mfu,51.4,"))
    out = validate(read_cases(path)).set_index("case_id")
    assert "not a fraction <= 1" in out.loc["gpt3-mfu", "status"] and "0.514" in out.loc["gpt3-mfu", "status"]
    assert out.loc["gpt3-step", "status"] == "ok"
