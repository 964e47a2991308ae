"""Error bands: known quantiles from known residuals, the fallback levels, the band on every
prediction (run, plan, validate) and the warning outside the calibrated regimes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from simulator.cli import app
from simulator.hardware.catalog import load_catalog
from simulator.inputs.scenario import load_scenario
from simulator.results.assemble import simulate
from simulator.results.band import (
    BAND_COLUMNS,
    BandTable,
    Regime,
    band_for,
    load_bands,
    metric_band,
    parallelism_family,
    regime_of,
)
from simulator.validation.bands import (
    band_document,
    coverage,
    cross_validated_coverage,
    predictive_sample,
    residuals,
)
from simulator.workload.plan import ParallelPlan

AMPERE_TP_PP = Regime("megatron-lm", "ampere", "tp+pp", 64)


def synthetic(values: dict[tuple[str, str, str], list[float]], sources: int = 3) -> pd.DataFrame:
    """A residual table: per (framework, generation, family), the given step-time residuals."""
    rows = []
    for (fw, gen, fam), res in values.items():
        for i, r in enumerate(res):
            rows.append((f"{fw}-{gen}-{fam}-{i}", f"src{i % sources}", "step_time", r, fw, gen, fam, 64))
    return pd.DataFrame(rows, columns=["case_id", "source_id", "kind", "residual", "framework", "generation",
                                       "family", "n_gpus"])


def test_quantiles_of_a_known_residual_table():
    # one source: the predictive sample is the residuals themselves
    res = synthetic({("megatron-lm", "ampere", "tp+pp"): list(np.linspace(-0.5, 0.5, 11))}, sources=1)
    doc = band_document(res, label="test", min_sources=1)
    q = doc["step_time"]["levels"]["regime"]["megatron-lm/ampere/tp+pp"]
    assert (q["p10"], q["p90"], q["rows"]) == (pytest.approx(-0.4), pytest.approx(0.4), 11)
    band = band_for(AMPERE_TP_PP, 10.0, 1e6, 50e9, BandTable(doc))
    assert band.step_time_s == (pytest.approx(10 * math.exp(-0.4)), pytest.approx(10 * math.exp(0.4)))
    assert band.tokens_per_s == (pytest.approx(1e5 * math.exp(-0.4)), pytest.approx(1e5 * math.exp(0.4)))
    assert (band.level, band.rows, band.calibrated, band.warning) == ("regime", 11, True, "")
    assert band.memory_level == "prior"  # no memory residuals: the stated prior
    assert band.memory_bytes[0] < 50e9 < band.memory_bytes[1]
    assert coverage(res, BandTable(doc))["step_time"] == {"runs": 11, "inside": 9,
                                                          "fraction": pytest.approx(9 / 11, abs=1e-4)}


def test_the_spread_between_sources_widens_the_band():
    # source a errs by -0.1/+0.1 around 0, source b around 0.4: offsets +-0.2 about 0.2, widened by sqrt(1 + 1/2)
    res = synthetic({("megatron-lm", "ampere", "tp+pp"): [-0.1, 0.1, 0.3, 0.5]})
    res["source_id"] = ["a", "a", "b", "b"]
    offsets = 0.2 + np.array([-0.2, 0.2]) * math.sqrt(1.5)
    sample = (offsets[:, None] + np.array([-0.1, 0.1, -0.1, 0.1])[None, :]).ravel()
    assert sorted(predictive_sample(res.residual, res.source_id)) == pytest.approx(sorted(sample))
    q = band_document(res, label="test")["step_time"]["levels"]["all"]["all"]
    assert (q["p10"], q["p90"]) == (pytest.approx(np.quantile(sample, 0.1), abs=1e-5),
                                    pytest.approx(np.quantile(sample, 0.9), abs=1e-5))
    assert q["p90"] - q["p10"] > np.quantile(res.residual, 0.9) - np.quantile(res.residual, 0.1)
    assert (q["rows"], q["sources"]) == (4, 2)


def test_a_small_regime_falls_back_to_the_coarser_levels():
    res = synthetic({("megatron-lm", "ampere", "tp+pp"): [0.1, 0.2, 0.3],
                     ("torchtitan", "ampere", "tp+pp"): list(np.linspace(-0.2, 0.2, 9)),
                     ("torchtitan", "hopper", "fsdp"): list(np.linspace(-0.3, 0.3, 6))})
    table = BandTable(band_document(res, label="test", min_rows=8, min_sources=3))
    assert table.quantiles("step_time", AMPERE_TP_PP).level == "generation_family"  # 3 runs < 8: 12 runs
    assert table.quantiles("step_time", AMPERE_TP_PP).rows == 12
    one_source = res.assign(source_id="only")
    assert BandTable(band_document(one_source, label="test")).quantiles("step_time", AMPERE_TP_PP).level == "all"
    assert table.quantiles("step_time", Regime("torchtitan", "ampere", "tp+pp", 64)).level == "regime"
    assert table.quantiles("step_time", Regime("torchtitan", "hopper", "fsdp", 64)).level == "all"  # 6 runs
    assert table.quantiles("step_time", Regime("torchtitan", "hopper", "tp", 64)).level == "all"
    assert BandTable({}).quantiles("step_time", AMPERE_TP_PP).level == "prior"


def test_the_band_holds_the_prediction_even_where_the_model_is_biased():
    res = synthetic({("megatron-lm", "ampere", "tp+pp"): list(np.linspace(0.1, 0.5, 9))}, sources=1)  # all slower
    table = BandTable(band_document(res, label="test", min_sources=1))
    band = band_for(AMPERE_TP_PP, 2.0, 1e6, 1e9, table)
    assert band.step_time_s[0] == 2.0 and band.step_time_s[1] > 2.0 * math.exp(0.4)
    lo, hi, _ = metric_band("mfu", 0.5, AMPERE_TP_PP, table)
    assert hi == 0.5 and lo < 0.5 * math.exp(-0.4)  # a rate's band is the step time's, inverted


def test_a_regime_outside_the_calibration_says_so():
    res = synthetic({("megatron-lm", "ampere", "tp+pp"): list(np.linspace(-0.2, 0.2, 9))})
    table = BandTable(band_document(res, label="test"))
    inside = band_for(Regime("megatron-lm", "ampere", "tp+pp", 64), 1.0, 1.0, 1.0, table)
    assert inside.calibrated
    outside = band_for(Regime("torchtitan", "blackwell", "fsdp", 100_000), 1.0, 1.0, 1.0, table)
    assert not outside.calibrated
    for words in ("framework torchtitan", "GPU generation blackwell", "parallelism family fsdp", "100,000 GPUs"):
        assert words in outside.warning
    assert outside.level == "all"


def test_parallelism_families():
    def family(**kw):
        base = {"tp": 1, "pp": 1, "dp": 8, "micro_batch": 1, "global_batch": 64}
        return parallelism_family(ParallelPlan(**{**base, **kw}))
    assert family() == "dp" and family(zero_stage=3) == "fsdp" and family(tp=2, dp=4) == "tp"
    assert family(pp=2, dp=4) == "pp" and family(tp=2, pp=2, dp=2) == "tp+pp" and family(cp=2, dp=4) == "cp"


def test_cross_validated_coverage_judges_each_source_by_the_others():
    # two sources erring opposite ways: the band built from either does not hold the other
    res = synthetic({("megatron-lm", "ampere", "tp+pp"): [-1.0] * 10})
    res.loc[res.index % 2 == 1, "residual"] = 1.0
    res["source_id"] = np.where(res.index % 2 == 1, "slower", "faster")
    cv = cross_validated_coverage(res, min_rows=2, min_sources=1)["step_time"]
    assert cv["runs"] == 10 and cv["inside"] == 0


def test_every_simulated_step_carries_its_band_and_json_documents_it():
    result = simulate(load_scenario("gpt2xl-8-l40s-dp"))
    band = result.band
    assert band.regime == regime_of(result.plan, load_catalog().get(result.gpu))
    assert band.step_time_s[0] <= result.step_time_s <= band.step_time_s[1]
    assert band.tokens_per_s[0] <= result.tokens_per_s <= band.tokens_per_s[1]
    assert band.memory_bytes[0] <= result.memory.total <= band.memory_bytes[1]
    out = CliRunner().invoke(app, ["run", "gpt2xl-8-l40s-dp", "--json"])
    doc = json.loads(out.stdout)["band"]
    assert set(doc) == {"step_time_s", "tokens_per_s", "memory_bytes", "quantiles", "level", "rows", "sources",
                        "memory_level",
                        "memory_rows", "residuals", "regime", "calibrated", "warning"}
    assert set(doc["regime"]) == {"framework", "gpu_generation", "parallelism", "n_gpus"}
    assert doc["step_time_s"][0] <= json.loads(out.stdout)["step_time_s"] <= doc["step_time_s"][1]
    text = CliRunner().invoke(app, ["run", "gpt2xl-8-l40s-dp"]).stdout
    assert "P10-P90" in text


def test_validate_out_has_a_band_per_row_in_the_metric_units(tmp_path: Path):
    from test_validation import COLUMNS, ROWS

    cases = tmp_path / "cases.csv"
    cases.write_text("\n".join([COLUMNS, ROWS[1], ROWS[2]]) + "\n")  # an MFU row and a row that fails
    out = tmp_path / "predicted.csv"
    done = CliRunner().invoke(app, ["validate", str(cases), "--out", str(out)])
    assert done.exit_code == 0, done.output
    df = pd.read_csv(out).set_index("case_id")
    assert set(BAND_COLUMNS) <= set(df.columns)
    mfu = df.loc["gpt3-mfu"]
    assert mfu.band_lo <= mfu.predicted <= mfu.band_hi < 1  # a fraction, like the metric
    assert mfu.regime_parallelism == "tp+pp" and mfu.regime_generation == "ampere"
    assert math.isnan(df.loc["unknown-gpu", "band_lo"])


def test_residuals_count_one_run_once(tmp_path: Path):
    from test_validation import COLUMNS, ROWS

    from simulator.validation.cases import read_cases
    from simulator.validation.published import validate

    cases = tmp_path / "cases.csv"
    cases.write_text("\n".join([COLUMNS, ROWS[0], ROWS[1]]) + "\n")  # one run as step time and MFU
    df = read_cases(cases)
    res = residuals(validate(df), df)
    assert list(res.case_id) == ["gpt3-step"]
    table = validate(df).set_index("case_id")
    assert res.residual.iloc[0] == pytest.approx(math.log(13.75 / table.loc["gpt3-step", "predicted"]))


def test_the_packaged_band_file_covers_the_calibration_regimes():
    table = load_bands()
    assert table.residuals["step_time"] in ("leave-one-source-out", "in-sample")
    assert {"ampere", "hopper"} <= set(table.covered["generations"])
    assert table.quantiles("step_time", AMPERE_TP_PP).rows >= table.min_rows
