"""Resources: cheap checks before expensive ones, memos bounded in bytes, and how far full and
representative mode may differ (issue 12, defects 3, 7 and 10). Timings are in
``benchmarks/resources.py``; these tests count calls and bytes instead of seconds."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import psutil
import pytest

import simulator.inputs.resolve as resolve
import simulator.network.topology as topology_module
from simulator import load_scenario, simulate
from simulator.core.cache import SizedCache, sized_cache
from simulator.core.errors import InputError
from simulator.network.topology import Topology, fleet_shape, load_topology
from simulator.validation import cases
from simulator.workload import plan as plan_module

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ defect 3: the plan before the graph

def _count_builds(monkeypatch) -> list[int]:
    calls = []
    real_load, real_build = resolve.load_topology, topology_module.build_topology

    def load(*args, **kwargs):
        calls.append(1)
        return real_load(*args, **kwargs)

    def build(*args, **kwargs):
        calls.append(1)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(resolve, "load_topology", load)
    monkeypatch.setattr(topology_module, "build_topology", build)
    return calls


def _scenario(tmp_path, gpus: int, **replace: str) -> Path:
    text = (REPO / "scenarios" / "llama3-70b-512-h100.yaml").read_text(encoding="utf-8")
    text = text.replace("gpus: 512", f"gpus: {gpus}")
    for old, new in replace.items():
        text = text.replace(old, new)
    path = tmp_path / "big.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_batch_that_does_not_divide_is_refused_before_the_topology_is_built(tmp_path, monkeypatch):
    calls = _count_builds(monkeypatch)
    path = _scenario(tmp_path, 2**20)  # tp 8 x pp 4: dp 32768 does not divide global_batch 512
    with pytest.raises(InputError) as err:
        resolve.setup(load_scenario(str(path)))
    assert "global_batch=512 is not divisible by dp x micro_batch = 32768 x 1" in str(err.value)
    assert str(path) in str(err.value)
    assert calls == []


def test_a_plan_that_does_not_fit_the_model_is_refused_before_the_topology_is_built(tmp_path, monkeypatch):
    calls = _count_builds(monkeypatch)
    path = _scenario(tmp_path, 2**20, **{"pp: 4": "pp: 128", "global_batch: 512": "global_batch: 131072"})
    with pytest.raises(InputError) as err:  # 128 x 5 virtual stages for Llama-3 70B's 80 layers
        resolve.setup(load_scenario(str(path)))
    assert err.value.field == "plan.pp" and "n_layers=80" in str(err.value)
    assert calls == []


def test_fleet_size_errors_keep_their_field_and_come_first(tmp_path, monkeypatch):
    calls = _count_builds(monkeypatch)
    path = _scenario(tmp_path, 2**20 + 4)  # not whole nodes, and the plan would not fill it either
    with pytest.raises(InputError) as err:
        resolve.setup(load_scenario(str(path)))
    assert err.value.field == "gpus" and "whole nodes" in str(err.value)
    assert calls == []


def test_fleet_shape_reads_the_node_size_without_building():
    spec, n_nodes, gpus_per_node = fleet_shape("dgx-h100-superpod", 2**20)
    assert (n_nodes, gpus_per_node) == (2**17, 8) and spec.node.gpus == 8
    assert fleet_shape("dgx-h100-superpod", 4)[1:] == (1, 4)  # smaller than a node, as load_topology builds it
    small = load_topology("dgx-h100-superpod", 4)
    assert (small.n_nodes, small.gpus_per_node) == (1, 4)


def test_a_valid_scenario_still_builds_its_topology_once(monkeypatch):
    calls = _count_builds(monkeypatch)
    s = resolve.setup(load_scenario("llama3-70b-512-h100"))
    assert s.topology.n_gpus == 512 and len(calls) >= 1


# ------------------------------------------------------------------ defect 7: memos bounded in bytes

def test_sized_cache_evicts_least_recently_used_by_bytes():
    cache = SizedCache(len, budget_bytes=10)
    built = []

    def make(key, n):
        return cache.get(key, lambda: built.append(key) or "x" * n)

    make("a", 4), make("b", 4), make("a", 4)  # a used last
    make("c", 4)  # 12 > 10: b, the least recently used, goes
    assert cache.info().entries == 2 and cache.info().bytes == 8
    make("a", 4), make("b", 4)
    assert built == ["a", "b", "c", "b"]
    make("huge", 11)  # larger than the whole budget: returned, not kept
    assert "huge" not in cache._values and cache.info().bytes <= 10


def test_sized_cache_decorator():
    @sized_cache(lambda v: 8, budget_bytes=16)
    def square(x):
        return x * x

    assert [square(3), square(3), square(4), square(5)] == [9, 9, 16, 25]
    info = square.cache_info()
    assert (info.hits, info.misses, info.entries) == (1, 3, 2)
    square.cache_clear()
    assert square.cache_info().entries == 0


def test_every_memo_of_fleets_is_bounded_in_bytes():
    assert isinstance(topology_module._built.cache, SizedCache)
    assert isinstance(cases._row_topology.cache, SizedCache)
    assert isinstance(plan_module._gpu_grid.cache, SizedCache)
    assert topology_module._built.cache.budget_bytes == 256 * 2**20


def test_estimated_bytes_follow_the_fleet():
    small, large = load_topology("dgx-h100-superpod", 512), load_topology("dgx-h100-superpod", 4096)
    ratio = topology_module.estimated_bytes(large) / topology_module.estimated_bytes(small)
    assert 6 < ratio < 10


def test_resident_memory_stays_flat_over_a_sweep_of_fleets(monkeypatch):
    """50 distinct fleets of ~4k GPUs (~8 MB each built) with a 32 MiB budget: the memo keeps
    ~4 of them; a memo of the last 32 would keep ~250 MB."""
    cache = topology_module._built.cache
    monkeypatch.setattr(cache, "budget_bytes", 32 * 2**20)
    cache.clear()
    alive: list[weakref.ref[Topology]] = []
    proc = psutil.Process()
    gc.collect()
    start = proc.memory_info().rss
    try:
        for k in range(50):
            alive.append(weakref.ref(load_topology("dgx-h100-superpod", 4096 + 8 * k)))
            assert cache.info().bytes <= 32 * 2**20
        gc.collect()
        growth = proc.memory_info().rss - start
        assert sum(ref() is not None for ref in alive) <= cache.info().entries <= 5
        assert growth < 120 * 2**20, f"RSS grew by {growth / 2**20:.0f} MiB"
    finally:
        cache.clear()


def test_a_topology_in_use_is_kept_while_used_and_freed_after():
    cache = topology_module._built.cache
    topo = load_topology("dgx-h100-superpod", 1024)
    assert load_topology("dgx-h100-superpod", 1024) is topo
    ref = weakref.ref(topo)
    del topo
    cache.clear()
    gc.collect()
    assert ref() is None  # nothing else (plan caches, link tables) keeps it alive


# ------------------------------------------------------------------ defect 10: full against representative

def _both_modes(scenario):
    rep = simulate(scenario, record_timeline=False)
    full = simulate(scenario.with_(simulation={"mode": "full"}), record_timeline=False)
    return rep, full


def test_full_and_representative_within_the_stated_tolerance_on_gpt3_1024():
    """Representative mode runs a class of identical pipeline sends at its slowest member's pace;
    here 4 of 16 replicas' sends stay inside a 20-node unit and 12 cross. A send's time is NCCL's
    point-to-point model for its communicator (two nodes, one GPU each), the same whether or not
    it crosses the spine of a non-blocking fabric, so the modes now agree exactly (before issue
    14 the spine's latency made 1.8 us of 26.54 s)."""
    rep, full = _both_modes(load_scenario("gpt3-175b-1024-a100"))
    diff = rep.step_time_s - full.step_time_s
    assert 0 <= diff <= 1e-6 * rep.step_time_s


def test_full_and_representative_agree_exactly_when_every_replica_path_is_alike(tmp_path):
    """The same scenario with 16-node units: every replica's stage-to-stage send crosses one unit."""
    topo = (REPO / "topologies" / "dgx-a100-superpod.yaml").read_text(encoding="utf-8")
    assert "nodes_per_unit: 20" in topo
    (tmp_path / "sym.yaml").write_text(topo.replace("nodes_per_unit: 20", "nodes_per_unit: 16"), encoding="utf-8")
    text = (REPO / "scenarios" / "gpt3-175b-1024-a100.yaml").read_text(encoding="utf-8")
    lines = [("topology: sym.yaml" if line.startswith("topology:") else line) for line in text.splitlines()]
    (tmp_path / "gpt3.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rep, full = _both_modes(load_scenario(str(tmp_path / "gpt3.yaml")))
    assert rep.step_time_s == full.step_time_s
    assert rep.breakdown_s == full.breakdown_s
