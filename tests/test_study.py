"""What-if studies: variants in, one tidy DataFrame out; failures are rows, not exceptions."""

from __future__ import annotations

import pandas as pd
import pytest

from simulator.inputs.scenario import Scenario
from simulator.results.assemble import simulate
from simulator.studies.study import compare, grid

BASE = Scenario(name="study", model={"preset": "tiny", "seq_len": 1024}, topology="dgx-a100-superpod", gpus=16,
                plan={"global_batch": 16})


def test_grid_is_every_combination():
    assert grid(tp=[1, 2], pp=[1, 2, 4]) == [
        {"tp": 1, "pp": 1}, {"tp": 1, "pp": 2}, {"tp": 1, "pp": 4},
        {"tp": 2, "pp": 1}, {"tp": 2, "pp": 2}, {"tp": 2, "pp": 4},
    ]


def test_compare_gives_one_row_per_variant_with_the_simulated_numbers():
    df = compare(BASE, grid(tp=[1, 2], pp=[1, 2]))
    assert len(df) == 4 and df.error.isna().all()
    direct = simulate(BASE.with_(tp=2, pp=2), record_timeline=False)
    row = df[(df.tp == 2) & (df.pp == 2)].iloc[0]
    assert row.step_time_s == direct.step_time_s
    assert row.dp == 4 and row.mfu == pytest.approx(direct.mfu)
    assert {"bubble_s", "tp_comm_s", "memory_GB", "fits", "energy_per_token_J"} <= set(df.columns)


def test_a_variant_that_cannot_run_is_a_row_with_its_reason():
    df = compare(BASE, [{"tp": 2}, {"tp": 3}])
    assert pd.isna(df.error.iloc[0])
    assert "plan.dp" in df.error.iloc[1] and "does not fill the fleet" in df.error.iloc[1]
