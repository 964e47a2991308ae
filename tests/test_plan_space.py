"""The plan space teams use (issue 15): every pp up to the layer count with Megatron-LM's uneven
split, the global batch as a range or a tokens-per-step target, and plans on fewer whole nodes
than the fleet with the idle GPUs paid for."""

from __future__ import annotations

import pytest
from rich.console import Console
from typer.testing import CliRunner

from simulator import load_scenario
from simulator.cli import BAD_INPUT, app
from simulator.core.errors import InputError
from simulator.inputs.resolve import resolve_fleet
from simulator.inputs.scenario import Scenario
from simulator.studies.plan_report import print_search
from simulator.studies.planner import plan_search
from simulator.studies.space import (
    batch_choices,
    candidate_plans,
    parse_range,
    smaller_fleets,
)
from simulator.workload.megatron import megatron_flags, plan_from_megatron_flags

BLOOM = {"n_layers": 70, "d_model": 14336, "n_heads": 112, "d_ffn": 57344, "vocab": 250880, "seq_len": 2048}
"""BLOOM-176B (BigScience 2022, arXiv:2211.05100, Table 3): 70 layers, hidden 14,336, 112 heads, 2,048 tokens."""


def bloom() -> Scenario:
    """BLOOM's run: 384 A100-80GB (48 nodes), TP 4 PP 12 DP 8, global batch 2,048."""
    return Scenario(name="bloom", model=BLOOM, topology="dgx-a100-superpod", gpus=384, plan={"global_batch": 2048})


def llama405b() -> Scenario:
    """Llama 3.1 405B: 16,384 H100, TP 8 PP 16 DP 128 (CP 1 in the 8K phase), 2,048 sequences of 8,192."""
    return Scenario(name="405b", model="llama3-405b", topology="dgx-h100-superpod", gpus=16384,
                    plan={"global_batch": 2048})


def _published(sc: Scenario, tp: int, pp: int, dp: int, split: tuple[int, ...]):
    fleet = resolve_fleet(sc)
    plans = [p for p in candidate_plans(sc, {"tp": tp, "pp": pp, "cp": 1}, fleet=fleet) if p.dp == dp]
    assert plans, "the published plan is outside the space"
    fitting = [p for p in plans if fleet.memory(p).fits]
    assert fitting, "the published plan does not fit"
    p = next(p for p in fitting if p.vpp == 1 and p.zero_stage <= 1)
    assert p.layers(fleet.model.n_layers) == split
    flags = megatron_flags(p, fleet.model)
    assert flags[flags.index("--decoder-first-pipeline-num-layers") + 1] == str(split[0])
    assert flags[flags.index("--decoder-last-pipeline-num-layers") + 1] == str(split[-1])
    assert plan_from_megatron_flags(flags, p.n_gpus) == p
    assert plan_from_megatron_flags(" ".join(flags), p.n_gpus) == p
    other = [f if f != str(split[0]) or flags[i - 1] != "--decoder-first-pipeline-num-layers" else str(split[0] - 1)
             for i, f in enumerate(flags)]  # a split trainsim would not simulate
    with pytest.raises(InputError, match="trainsim splits"):
        plan_from_megatron_flags(other, p.n_gpus)
    return plans


def test_bloom_published_plan_is_in_the_space_and_fits():
    _published(bloom(), 4, 12, 8, (5,) + (6,) * 10 + (5,))
    # 2,048 / 8 micro-batches are not in groups of 12; in a batch range interleaving is searched too, wherever
    # every virtual stage keeps a layer (12 x 5 = 60 <= 70, 12 x 6 = 72 > 70)
    plans = candidate_plans(bloom(), {"tp": 4, "pp": 12, "micro_batch": 1}, batch_range=(1024, 2048))
    assert {p.vpp for p in plans} == {1, 2, 3, 4, 5} and {p.global_batch for p in plans} == {1024, 1056, 2016, 2048}  # x 8 and x 8 x 12


def test_llama_405b_published_plan_is_in_the_space_and_fits():
    _published(llama405b(), 8, 16, 128, (7,) + (8,) * 14 + (7,))


def test_nemotron4_340b_published_plan_is_in_the_space_and_fits():
    sc = Scenario(name="340b", model="nemotron4-340b", topology="dgx-h100-superpod", gpus=6144,
                  plan={"global_batch": 2304})  # NVIDIA 2024, arXiv:2406.11704: TP 8 PP 12 DP 64, batch 2,304
    fleet = resolve_fleet(sc)
    plans = [p for p in candidate_plans(sc, {"tp": 8, "pp": 12}, fleet=fleet) if p.dp == 64]
    assert any(fleet.memory(p).fits for p in plans)


def test_every_pp_up_to_the_layers_that_fills_the_fleet():
    sc = bloom()
    pps = {p.pp for p in candidate_plans(sc, {"tp": 4, "vpp": 1, "micro_batch": 1, "recompute": "full",
                                              "zero_stage": 0, "placement": ("tp", "dp", "pp")})}
    assert pps == {pp for pp in range(1, 71) if 96 % pp == 0 and 2048 % (96 // pp) == 0}
    assert {3, 12, 24, 48} <= pps  # none of them divides 70


def test_uneven_splits_megatron_cannot_state_have_no_flags():
    sc = bloom()
    p = next(p for p in candidate_plans(sc, {"tp": 4, "pp": 48, "vpp": 1}))  # 70 on 48: 1s and 2s in the middle
    with pytest.raises(InputError, match="Megatron-LM cannot split"):
        megatron_flags(p, resolve_fleet(sc).model)


def test_5128_gpus_gives_a_pipelined_plan_on_5120():
    sc = load_scenario("gpt3-175b-1024-a100").with_(gpus=5128)  # 641 nodes, a prime: TP 8 leaves only pp = 1
    fleet = resolve_fleet(sc)
    batches = (1024, 4096)
    assert {p.pp for p in candidate_plans(sc, {"tp": 8}, fleet=fleet, batch_range=batches)} == {1}
    assert not candidate_plans(sc, {"tp": 8}, fleet=fleet)  # dp = 641 does not divide 1,536
    assert smaller_fleets(sc, fleet, batches, {})[0] == 5120
    fixed = {"tp": 8, "micro_batch": 1, "recompute": "full", "zero_stage": 1, "placement": ("tp", "dp", "pp"),
             "vpp": 1}
    search = plan_search(sc, constraints=fixed, top_k=2, gpu_hour_usd=2.0, tokens=1e9, batch_range=batches)
    best = search.best
    assert best.plan.n_gpus == 5120 and best.plan.pp > 1 and best.booked == 5128 and search.smaller_fleets
    # the idle GPUs are paid for and draw power
    assert best.training_cost_usd == pytest.approx(2.0 * 5128 * best.training_hours)
    assert best.energy_per_token_J > best.result.energy_per_step_J / best.result.tokens_per_step
    for width, shown in ((200, "GPUs used"), (80, "on 5,120 of")):
        console = Console(width=width, record=True)
        print_search(console, search, name="5128", objective="throughput", top=2, tokens=None, gpu_hour_usd=None,
                     budget_usd=None)
        text = console.export_text()
        assert shown in text and "Also searched on fewer GPUs: 5,120" in text
        assert max(len(line) for line in text.splitlines() if "│" in line) <= width  # the table's rows
    fixed.pop("zero_stage")  # on one stage the model fits only with ZeRO-3
    alone = plan_search(sc, constraints=fixed, top_k=2, smaller=False, batch_range=batches)
    assert alone.best.plan.n_gpus == 5128 and alone.best.plan.pp == 1 and not alone.smaller_fleets
    assert alone.best.plan.zero_stage == 3
    assert best.tokens_per_s > alone.best.tokens_per_s


def test_batch_ranges():
    assert parse_range("1024..4096", "--global-batch") == (1024, 4096)
    assert parse_range("4M..16M", "--tokens-per-step") == (4 * 2**20, 16 * 2**20)
    assert parse_range(" 2k ", "--global-batch") == (2048, 2048)
    for bad in ("10..5", "abc", "0..4", "1..2..3", "4M..", "1.5K", "-3"):
        with pytest.raises(InputError, match="--global-batch"):
            parse_range(bad, "--global-batch")
    assert batch_choices(1000, 4096, 48) == [4080, 1008]
    assert batch_choices(2048, 2048, 64) == [2048] and batch_choices(10, 20, 32) == []

    sc = Scenario(name="tiny", model="tiny", topology="pcie-ethernet-small", gpus=8, plan={"global_batch": 32})
    plans = candidate_plans(sc, batch_range=(20, 100))
    assert {p.global_batch for p in plans} > {32} and all(20 <= p.global_batch <= 100 for p in plans)
    for p in plans:
        step = p.dp * p.micro_batch * (p.pp if p.vpp > 1 else 1)
        assert p.global_batch in batch_choices(20, 100, step)
    search = plan_search(sc, batch_range=(20, 100), top_k=8)
    assert search.batch_range == (20, 100)
    assert [r.tokens_per_s for r in search.results] == sorted((r.tokens_per_s for r in search.results), reverse=True)
    seq = resolve_fleet(sc).model.seq_len
    by_tokens = plan_search(sc, tokens_range=(20 * seq - 1, 100 * seq + 1), top_k=8)
    assert by_tokens.batch_range == (20, 100)
    assert by_tokens.best.plan == search.best.plan
    with pytest.raises(InputError, match="--tokens-per-step"):
        plan_search(sc, tokens_range=(1, seq - 1))


def test_cli_batch_range_and_bad_input(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text("name: tiny\nmodel: tiny\ntopology: pcie-ethernet-small\ngpus: 8\nplan:\n  global_batch: 32\n")
    runner = CliRunner()
    res = runner.invoke(app, ["plan", str(path), "--global-batch", "16..64", "--simulate", "2", "--top", "2",
                              "--workers", "1"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "per token over global batches 16..64" in res.output and "batch" in res.output
    res = runner.invoke(app, ["plan", str(path), "--tokens-per-step", "16K..64K", "--simulate", "2", "--top", "2",
                              "--workers", "1", "--format", "csv"])
    assert res.exit_code == 0, res.output
    header = res.output.splitlines()[0].split(",")
    assert "global_batch" in header and "gpus_booked" in header
    for args, option in ((["--global-batch", "10..5"], "--global-batch"),
                         (["--tokens-per-step", "abc"], "--tokens-per-step"),
                         (["--global-batch", "8", "--tokens-per-step", "4M"], "--tokens-per-step")):
        res = runner.invoke(app, ["plan", str(path), *args])
        assert res.exit_code == BAD_INPUT, res.output
        assert option in res.output and len(res.output.strip().splitlines()) == 1
