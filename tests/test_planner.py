"""`trainsim plan`: the planner finds the best simulated plan, respects what the scenario fixes,
and its Megatron-LM flags read back to the same plan."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from simulator import load_scenario, simulate
from simulator.cli import app
from simulator.core.errors import InputError
from simulator.inputs.resolve import resolve_fleet
from simulator.inputs.scenario import Scenario
from simulator.studies.planner import plan_search
from simulator.studies.space import candidate_plans, stated_constraints
from simulator.workload.megatron import megatron_flags, plan_from_megatron_flags
from simulator.workload.memory import memory_per_gpu

PLAN_FIELDS = ("tp", "pp", "dp", "vpp", "micro_batch", "schedule", "sequence_parallel", "recompute", "zero_stage")


def tiny(**plan) -> Scenario:
    """The `tiny` preset on 8 GPUs of the PCIe cluster, only the global batch stated."""
    return Scenario(name="tiny", model="tiny", topology="pcie-ethernet-small", gpus=8,
                    plan={"global_batch": 32, **plan})


@pytest.fixture(scope="module")
def exhaustive():
    sc = tiny()
    fleet = resolve_fleet(sc)
    plans = candidate_plans(sc, fleet=fleet)
    fitting = [p for p in plans if memory_per_gpu(fleet.model, p, capacity_bytes=fleet.device.hbm_bytes).fits]
    results = {p: simulate(sc.with_(**{k: getattr(p, k) for k in PLAN_FIELDS}), record_timeline=False)
               for p in fitting}
    return sc, fleet, plans, fitting, results


def test_best_of_top_k_is_the_exhaustive_best(exhaustive):
    sc, _, plans, fitting, results = exhaustive
    assert len(plans) > 50
    search = plan_search(sc, top_k=16)
    assert search.n_enumerated == len(plans) and search.n_fit == len(fitting) and search.n_simulated == 16
    best_tps = max(r.tokens_per_s for r in results.values())
    assert search.best.tokens_per_s == pytest.approx(best_tps, rel=1e-12)
    # the planner's numbers are the simulation's, not the estimate's
    assert search.best.step_time_s == results[search.best.plan].step_time_s
    tps = [r.tokens_per_s for r in search.results]
    assert tps == sorted(tps, reverse=True)


def test_every_reported_plan_fits(exhaustive):
    sc, fleet, _, _, _ = exhaustive
    search = plan_search(sc, top_k=0)  # simulate all
    assert search.n_simulated == search.n_fit
    for r in search.results:
        mem = memory_per_gpu(fleet.model, r.plan, capacity_bytes=fleet.device.hbm_bytes)
        assert mem.fits and r.headroom_GB == pytest.approx((mem.capacity - mem.required) / 1e9)


def test_memory_discards_are_reported_with_numbers():
    sc = Scenario(name="70b", model="llama3-70b", topology="dgx-h100-superpod", gpus=64,
                  plan={"global_batch": 64, "tp": 8})
    fleet = resolve_fleet(sc)
    plans = candidate_plans(sc, fleet=fleet)
    assert {p.tp for p in plans} == {8}
    search = plan_search(sc, top_k=2)
    assert search.discarded and search.n_fit + len(search.discarded) == search.n_enumerated
    for d in search.discarded[:20]:
        assert d.needed_GB > d.capacity_GB
        assert not memory_per_gpu(fleet.model, d.plan, capacity_bytes=fleet.device.hbm_bytes).fits


def test_stated_fields_are_kept_and_defaults_are_searched():
    sc = tiny(pp=2, recompute="full", micro_batch=2)
    assert stated_constraints(sc) == {"pp": 2, "recompute": "full", "micro_batch": 2}
    assert stated_constraints(sc, free=["pp"]) == {"recompute": "full", "micro_batch": 2}
    plans = candidate_plans(sc)
    assert plans and all(p.pp == 2 and p.recompute == "full" and p.micro_batch == 2 for p in plans)
    assert {p.tp for p in plans} == {1, 2, 4} and {p.vpp for p in plans} > {1}
    assert all(p.sequence_parallel == (p.tp > 1) for p in plans)
    assert all(p.schedule == ("interleaved" if p.vpp > 1 else "1f1b") for p in plans)
    # a stated dp fixes tp x pp; a stated 'false' is kept even with tp > 1
    sc2 = tiny(dp=2, sequence_parallel=False)
    assert all(p.tp * p.pp == 4 and not p.sequence_parallel for p in candidate_plans(sc2))
    with pytest.raises(InputError):
        stated_constraints(sc, free=["precision"])


def test_enumeration_rules():
    for p in candidate_plans(tiny()):
        assert 8 % p.tp == 0 and 4 % (p.pp * p.vpp) == 0 and p.tp * p.pp * p.dp == 8
        assert p.micro_batch in (1, 2, 4, 8) and p.vpp in (1, 2, 3, 4, 5, 6, 8)
        if p.vpp > 1:
            assert p.pp > 1 and p.n_microbatches % p.pp == 0
        if p.zero_stage == 3:
            assert p.pp == 1
        assert p.zero_stage in (0, 1, 3)
        # both Megatron-LM rank orders where they differ, the default alone where they give the same GPUs
        assert p.placement == ("tp", "dp", "pp") or (p.placement == ("tp", "pp", "dp") and p.pp > 1 and p.dp > 1)
    plans = candidate_plans(tiny())
    assert any(p.placement == ("tp", "pp", "dp") for p in plans)
    # selective recomputation only where it differs from none: with unfused attention
    assert {p.recompute for p in plans} == {"none", "full"}
    assert "selective" in {p.recompute for p in candidate_plans(tiny(attention="standard"))}
    swapped = {p.model_copy(update={"placement": ("tp", "dp", "pp")}) for p in plans
               if p.placement == ("tp", "pp", "dp")}
    assert swapped <= set(plans)  # every swapped plan also comes in the default order
    assert all(p.placement == ("tp", "pp", "dp") for p in candidate_plans(tiny(placement="tp,pp,dp")))


def test_rank_order_changes_which_links_the_pipeline_uses():
    from simulator.results.assemble import simulate

    sc = Scenario(name="order", model="llama3-70b", topology="dgx-h100-superpod", gpus=64,
                  plan={"global_batch": 64, "tp": 4, "pp": 4, "recompute": "full", "zero_stage": 1})
    search = plan_search(sc, top_k=0)
    assert {r.plan.placement for r in search.results} == {("tp", "dp", "pp"), ("tp", "pp", "dp")}

    def mean_send_s(order: str) -> float:
        t = simulate(sc.with_(placement=order)).timeline
        sends = t[t.name == "pp_send"]
        return float((sends.end_s - sends.start_s).mean())

    # tp,pp,dp puts two stages on each 8-GPU node, so half the stage hops stay on NVLink
    assert mean_send_s("tp,pp,dp") < 0.8 * mean_send_s("tp,dp,pp")


def test_option_switches_are_read_from_prose_without_partial_matches():
    from simulator.workload.megatron import options_in_text

    fields, flags = options_in_text("Overlap flags: --overlap-param-gather, --tp-comm-overlap. 8 GPUs.")
    assert flags == ["--overlap-param-gather", "--tp-comm-overlap"]
    assert fields == {"overlap_param_gather": True, "zero_stage": 1, "tp_overlap": "full", "sequence_parallel": True}
    assert options_in_text("--tp-comm-overlap-rs-dgrad --sequence-parallelism") == ({}, [])
    assert options_in_text("") == ({}, [])


def test_megatron_flags_round_trip_on_many_plans():
    plans = candidate_plans(tiny()) + candidate_plans(load_scenario("llama3-70b-512-h100"), {})
    model_tiny = resolve_fleet(tiny()).model
    model_70b = resolve_fleet(load_scenario("llama3-70b-512-h100")).model
    n = 0
    for p in plans:
        model = model_tiny if p.n_gpus == 8 else model_70b
        if p.zero_stage == 3:
            with pytest.raises(InputError, match="ZeRO-3"):
                megatron_flags(p, model)
            continue
        split = p.layers(model.n_layers)
        if len(set(split)) > 1 and (p.vpp > 1 or len(set(split[1:-1])) > 1):  # not first/last + even middle
            with pytest.raises(InputError, match="Megatron-LM cannot split"):
                megatron_flags(p, model)
            continue
        flags = megatron_flags(p, model)
        assert plan_from_megatron_flags(flags, p.n_gpus) == p
        assert plan_from_megatron_flags(" ".join(flags), p.n_gpus) == p
        n += 1
        last = p
    assert n > 500
    # options the planner keeps from the scenario round-trip too
    q = last.model_copy(update=dict(precision="fp8", tp_overlap="full", sequence_parallel=True,
                                         overlap_param_gather=True, grad_reduce_precision="bf16",
                                         dp_bucket_bytes=80e6, overlap_grad_reduce=False))
    assert plan_from_megatron_flags(megatron_flags(q, model_70b), q.n_gpus) == q


def test_megatron_flags_text_and_defaults():
    p = load_scenario("llama3-70b-512-h100").parallel_plan()
    flags = " ".join(megatron_flags(p, resolve_fleet(load_scenario("llama3-70b-512-h100")).model))
    for part in ("--tensor-model-parallel-size 8", "--pipeline-model-parallel-size 4",
                 "--num-layers-per-virtual-pipeline-stage 4", "--micro-batch-size 1", "--global-batch-size 512",
                 "--sequence-parallel", "--recompute-granularity selective", "--use-distributed-optimizer",
                 "--overlap-grad-reduce", "--bf16"):
        assert part in flags
    q = plan_from_megatron_flags("torchrun pretrain_gpt.py --tensor-model-parallel-size=2 --unknown-flag 7 "
                                 "--use-flash-attn --recompute-granularity full --fp16", 16)
    assert (q.tp, q.pp, q.dp, q.micro_batch, q.global_batch) == (2, 1, 8, 1, 8)
    assert q.recompute == "full" and q.precision == "fp16" and not q.overlap_grad_reduce and q.zero_stage == 0


def test_objectives_order_correctly(exhaustive):
    sc = exhaustive[0]
    energy = plan_search(sc, objective="energy", top_k=12)
    e = [r.energy_per_token_J for r in energy.results]
    assert e == sorted(e) and energy.best.objective == e[0]
    cost = plan_search(sc, objective="cost", gpu_hour_usd=2.0, top_k=6)
    c = [r.objective for r in cost.results]
    assert c == sorted(c)
    r = cost.best
    assert r.objective == pytest.approx(2.0 * 8 * r.step_time_s / 3600 / (32 * 256) * 1e6)
    ttt = plan_search(sc, objective="time-to-train", tokens=1e9, top_k=6)
    assert ttt.best.objective == pytest.approx(1e9 / ttt.best.tokens_per_s / 3600)
    with pytest.raises(InputError, match="gpu-hour"):
        plan_search(sc, objective="cost")
    with pytest.raises(InputError, match="tokens"):
        plan_search(sc, objective="time-to-train")


def test_dask_cluster_gives_exactly_the_serial_ranking(exhaustive):
    from dask.distributed import Client, LocalCluster

    fleets = [{}, {"gpus": 4}]  # two fleets: each is scattered to the workers once
    serial = plan_search(exhaustive[0], top_k=12, fleets=fleets)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        distributed = plan_search(exhaustive[0], top_k=12, fleets=fleets, client=client)
    assert distributed.n_simulated == serial.n_simulated == 24  # 12 per fleet
    assert [(r.plan, r.step_time_s, r.breakdown_s) for r in distributed.results] == \
        [(r.plan, r.step_time_s, r.breakdown_s) for r in serial.results]


def test_several_fleets_are_searched_and_ranked_together(exhaustive):
    sc = exhaustive[0]
    one = {n: plan_search(sc.with_(gpus=n), top_k=0, objective="cost", gpu_hour_usd=2.0) for n in (4, 8)}
    both = plan_search(sc, top_k=0, objective="cost", gpu_hour_usd=2.0, fleets=[{"gpus": 4}, {"gpus": 8}])
    assert both.n_fleets == 2 and both.n_enumerated == sum(s.n_enumerated for s in one.values())
    assert {r.plan.n_gpus for r in both.results} == {4, 8}
    assert len(both.results) == sum(len(s.results) for s in one.values())
    cheapest = min((s.best for s in one.values()), key=lambda r: r.objective)
    assert both.best.plan == cheapest.plan and both.best.objective == cheapest.objective
    costs = [r.objective for r in both.results]
    assert costs == sorted(costs)
    assert both.to_dict(3)["plans"][0]["n_gpus"] == cheapest.plan.n_gpus


runner = CliRunner()


def test_cli_plan_prints_the_table():  # on the default local Dask cluster (one worker per core)
    result = runner.invoke(app, ["plan", "gpt2xl-8-l40s-dp", "--simulate", "4", "--top", "3"],
                           catch_exceptions=False, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for text in ("plans enumerated", "fit in memory", "4 simulated", "ranked by simulation", "tokens/s",
                 "Megatron-LM flags:", "--micro-batch-size 4", "Best plan", "bubble"):
        assert text in result.output


def test_cli_plan_lists_distinct_memory_misses_and_one_tokens_column(tmp_path):
    sc = tmp_path / "sc.yaml"
    sc.write_text("name: misses\nmodel: llama3-8b\ntopology: dgx-h100-superpod\ngpus: 64\nplan: {global_batch: 64}\n")
    result = runner.invoke(app, ["plan", str(sc), "--simulate", "2", "--top", "2", "--workers", "1"],
                           catch_exceptions=False, env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if "tokens/s" in line and "MFU" in line)
    assert header.count("tokens/s") == 1  # the throughput objective is that column
    misses = result.output.split("nearest misses):")[1].splitlines()[1:6]
    assert all(line.startswith("  64 x h100-sxm: TP") and "needs" in line for line in misses)
    assert len({line.split(" [")[0] for line in misses}) == len(misses)  # no line printed twice
    assert "[2 plans: other rank orders or schedules]" in result.output


@pytest.mark.parametrize("columns", ["80", "200"])
def test_cli_plan_table_is_readable_at_any_width(columns):
    # through a pipe rich prints 80 columns: the plan becomes one wrapping column, no cell is cut
    result = runner.invoke(app, ["plan", "gpt2xl-8-l40s-dp", "--gpus", "8,16", "--simulate", "4", "--top", "4",
                                 "--workers", "1"], catch_exceptions=False, env={"COLUMNS": columns})
    assert result.exit_code == 0, result.output
    table = result.output.split("ranked by simulation")[1].split("Best plan")[0]
    assert "\u2026" not in table and "..." not in table
    assert max(len(line) for line in table.splitlines()) <= int(columns)
    assert "TP " in table and "ZeRO" in table and "tokens/s" in table


def test_cli_plan_writes_csv_and_strict_json():
    args = ["plan", "gpt2xl-8-l40s-dp", "--simulate", "3", "--top", "3", "--workers", "1"]
    csv = runner.invoke(app, [*args, "--format", "csv"], catch_exceptions=False)
    assert csv.exit_code == 0, csv.output
    import io

    import pandas as pd

    table = pd.read_csv(io.StringIO(csv.stdout))
    assert list(table["rank"]) == [1, 2, 3] and table["tokens_per_s"].is_monotonic_decreasing
    assert {"tp", "pp", "dp", "step_time_s", "mfu", "bubble_s", "megatron_flags"} <= set(table.columns)
    doc = runner.invoke(app, [*args, "--format", "json"], catch_exceptions=False)
    import json

    assert json.loads(doc.stdout)["plans"][0]["tp"] == table["tp"][0]
    bad = runner.invoke(app, [*args, "--format", "xml"])
    assert bad.exit_code == 2 and "--format" in bad.output and "table, csv, json" in bad.output


def test_cli_plan_compares_fleets():
    result = runner.invoke(app, ["plan", "gpt2xl-8-l40s-dp", "--gpus", "4,8", "--simulate", "6", "--workers", "1",
                                 "--objective", "cost", "--gpu-hour-usd", "1.5"],
                           catch_exceptions=False, env={"COLUMNS": "220"})
    assert result.exit_code == 0, result.output
    assert "GPUs" in result.output and "l40s" in result.output
    bad = runner.invoke(app, ["plan", "gpt2xl-8-l40s-dp", "--gpus", "many", "--workers", "1"])
    assert bad.exit_code == 2 and "--gpus" in bad.output
    none = runner.invoke(app, ["plan", "llama3-70b-512-h100", "--gpus", "7", "--workers", "1"])  # tp 8 stated
    assert none.exit_code == 2 and "no valid plan" in none.output


def test_cli_plan_json_and_errors():
    import json

    result = runner.invoke(app, ["plan", "gpt2xl-8-l40s-dp", "--simulate", "2", "--json", "--workers", "1"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["counts"]["simulated"] == 2 and len(doc["plans"]) == 2
    bad = runner.invoke(app, ["plan", "gpt2xl-8-l40s-dp", "--objective", "cost"])
    assert bad.exit_code == 2 and "--gpu-hour-usd" in bad.output
    assert runner.invoke(app, ["plan", "no-such-scenario"]).exit_code == 2
    assert runner.invoke(app, ["plan", "gpt2xl-8-l40s-dp", "--objective", "speed"]).exit_code == 2


def test_unfused_attention_round_trips_through_megatron_flags():
    from simulator.workload.loading import load_model
    from simulator.workload.plan import ParallelPlan

    model = load_model("gpt3-175b")
    plan = ParallelPlan(tp=8, pp=8, dp=2, micro_batch=1, global_batch=16, attention="standard",
                        recompute="selective")
    flags = megatron_flags(plan, model)
    assert flags[-2:] == ["--attention-backend", "unfused"]
    assert plan_from_megatron_flags(flags, 128) == plan
    assert plan_from_megatron_flags(flags[:-2] + ["--use-flash-attn"], 128).attention == "flash"


def test_a_budget_keeps_the_plans_whose_training_it_pays_for(exhaustive):
    sc = exhaustive[0]
    fleets = [{"gpus": 4}, {"gpus": 8}]
    free = plan_search(sc, top_k=0, objective="time-to-train", tokens=1e8, gpu_hour_usd=2.0, fleets=fleets)
    for r in free.results:  # hours and cost of training 1e8 tokens, from the simulated step
        assert r.training_hours == pytest.approx(1e8 / r.tokens_per_s / 3600)
        assert r.training_cost_usd == pytest.approx(2.0 * r.plan.n_gpus * r.training_hours)
    costs = sorted(r.training_cost_usd for r in free.results)
    budget = costs[len(costs) // 2]
    kept = plan_search(sc, top_k=0, objective="time-to-train", tokens=1e8, gpu_hour_usd=2.0, fleets=fleets,
                       budget_usd=budget)
    assert kept.results and all(r.training_cost_usd <= budget for r in kept.results)
    assert all(r.training_cost_usd > budget for r in kept.over_budget)
    within = [r for r in free.results if r.training_cost_usd <= budget]
    assert kept.best.plan == within[0].plan  # the fastest training the budget pays for
    with pytest.raises(InputError, match="budget"):
        plan_search(sc, top_k=0, budget_usd=budget)  # no price, no tokens
    for tight in (costs[0] * 0.95, costs[0] / 10):  # over budget after the simulation; already in the first pass
        with pytest.raises(InputError, match="within the budget"):
            plan_search(sc, top_k=0, objective="cost", tokens=1e8, gpu_hour_usd=2.0, budget_usd=tight).best


def test_a_changed_copy_of_a_scenario_keeps_its_open_plan_fields_open():
    sc = tiny(pp=2)
    assert stated_constraints(sc.with_(gpus=4)) == stated_constraints(sc) == {"pp": 2}
    assert stated_constraints(sc.with_(tp=2)) == {"pp": 2, "tp": 2}


def test_prices_per_gpu_type_rank_fleets_of_different_gpus():
    sc = Scenario(name="8b", model="llama3-8b", topology="dgx-h100-superpod", gpus=64,
                  plan={"global_batch": 128, "pp": 1, "tp": 1, "micro_batch": 1, "zero_stage": 1})
    fleets = [{"gpu": "h100-sxm"}, {"gpu": "h200"}]
    prices = {"H100-SXM": 2.0, "h200": 3.0}  # names as in the catalog, any case
    search = plan_search(sc, objective="cost", gpu_hour_usd=prices, tokens=1e9, top_k=0, fleets=fleets)
    for r in search.results:
        price = 2.0 if r.gpu == "h100-sxm" else 3.0
        assert r.objective == pytest.approx(price * r.plan.n_gpus * r.step_time_s / 3600 / (128 * 8192) * 1e6)
        assert r.training_cost_usd == pytest.approx(price * r.plan.n_gpus * r.training_hours)
    assert {r.gpu for r in search.results} == {"h100-sxm", "h200"}
    with pytest.raises(InputError, match="no GPU-hour price for h200"):
        plan_search(sc, objective="cost", gpu_hour_usd={"h100-sxm": 2.0}, top_k=0, fleets=fleets)
    result = runner.invoke(app, ["plan", "gpt2xl-8-l40s-dp", "--objective", "cost", "--gpu-hour-usd", "l40s=x"])
    assert result.exit_code == 2 and "--gpu-hour-usd" in result.output
