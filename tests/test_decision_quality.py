"""Decision quality (issue 13): on every contender set of the calibration files (several measured
plans of one model on one fleet) trainsim's ranking of the plans agrees with the measured one.

Only the contender sets that simulate quickly run here (Korthikanti's recompute variants of the 22B
and 175B models, Zero Bubble's schedule x micro-batch scans, Megatron-LM SC21's ZeRO-3 vs PTD-P);
MegaScale's sets take 20 s and are measured by ``benchmarks/decision_quality.py`` with the rest."""

from __future__ import annotations

import golden
import numpy as np
import pandas as pd
import pytest

from simulator.validation.calibration import contender_sets, decision_quality, read_calibration_files
from simulator.validation.published import validate

FILES = [golden.VALIDATION_FILES[0], golden.VALIDATION_FILES[0].with_name("calibration-2.csv")]
SOURCES = ("korthikanti22", "zerobubble24", "megatron21")
TARGET = 0.9


@pytest.fixture(scope="module")
def quality() -> pd.DataFrame:
    if not all(f.is_file() for f in FILES):
        pytest.skip("the calibration files are not beside the checkout")
    cases = read_calibration_files(FILES)
    quick = [s for s in contender_sets(cases) if s.source_id.iloc[0] in SOURCES
             and not (s.source_id.iloc[0] == "korthikanti22" and s.n_gpus.iloc[0] > 64)]  # 530B and 1T: 4 s
    rows = pd.concat(quick, ignore_index=True)
    dq = decision_quality(rows, validate(rows))
    dq["source"] = dq.set.str.split(":").str[0]
    return dq


def test_contender_sets_are_plans_of_one_model_on_one_fleet():
    cases = pd.DataFrame({"case_id": list("abcd"), "source_id": "s", "n_layers": 2, "d_model": 64, "seq_len": 128,
                          "gpu": "a100-80gb", "n_gpus": [8, 8, 8, 16], "metric": "step_time_s",
                          "micro_batch": [1, 2, 2, 1], "value": [1.0, 0.8, 0.8, 0.5],
                          "global_batch_seqs": 8})
    sets = contender_sets(cases)
    assert [list(s.case_id) for s in sets] == [["a", "b"]]  # c repeats b's run; d is another fleet
    table = pd.DataFrame({"case_id": ["a", "b"], "status": "ok", "predicted": [1.2, 0.9]})
    dq = decision_quality(cases, table)
    assert dq.spearman.tolist() == [1.0] and dq.concordant.tolist() == [1.0]


def test_recompute_and_pipeline_schedule_variants_are_ranked_as_measured(quality):
    plans = quality[quality.source.isin(["korthikanti22", "zerobubble24"]) & quality.spearman.notna()]
    assert len(plans) >= 6
    assert (plans.spearman >= TARGET).all(), plans.to_string()


def test_what_is_achieved_on_zero3_against_ptdp_holds(quality):
    """Megatron-LM SC21 Table 2: DeepSpeed ZeRO-3 against PTD-P on the same model and fleet. The
    measured ZeRO-3 throughput halves each time the fleet doubles at a fixed batch (144, 88, 44
    TFLOP/s); trainsim's ZeRO-3 (every micro-batch re-gathers, prefetched a layer ahead) keeps it
    compute-bound and ranks it first: pinned here until the ZeRO-3 model explains those runs."""
    zero3 = quality[(quality.source == "megatron21") & quality.spearman.notna()]
    assert len(zero3) >= 3 and (zero3.spearman == -1.0).all()


@pytest.mark.xfail(strict=True, reason="ZeRO-3 vs PTD-P (megatron21 Table 2) is ranked the wrong way round: the "
                   "2021 DeepSpeed ZeRO-3 runs are far slower than trainsim's ZeRO-3 model")
def test_every_contender_set_reaches_the_target(quality):
    assert (quality.spearman.dropna() >= TARGET).all()
    assert np.isfinite(quality.spearman).all()
