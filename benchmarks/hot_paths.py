"""Wall time of the hot paths the tests used to time (not run by CI).

    python benchmarks/hot_paths.py [--repeats 3]

Each figure is the best of ``--repeats`` runs, in milliseconds, next to the bound the test suite
used to assert on it (a test on a busy shared machine cannot hold a wall-clock bound; the
tests now hold only what these paths compute):

* ``topology build``: :func:`load_topology` of the DGX A100 and DGX H100 SuperPOD files on
  3,072 GPUs (a fresh build each time; bound 0.5 s each).
* ``path lookups``: ``path_ids`` of 1,024 new GPU pairs (``src``, ``3071 - src``) on the
  3,072-GPU A100 topology, each set on a freshly built topology so nothing is cached
  (bound 0.5 s).
* ``collective plan build`` / ``hit``: a ring all-reduce over 1,024 A100 GPUs planned by
  :func:`plan_collective` on a fresh topology, including the topology's own path cache
  (bound 1 s), then the same call again, answered from the cache (bound 5 ms).
* ``flow fast path``: 20,000 non-contending 50-link flows in two overlapping streams through
  :class:`FlowNetwork`, each flow's start and end handled without recomputing the max-min
  shares (bound 1 s; 100k sequential flows take about 3x as long).
* ``timeline render``: :func:`plots.pipeline_timeline` of Megatron 1T on 3,072 A100
  (512 micro-batches x 64 stages, ~170k intervals) built and drawn (bound 10 s); the
  simulation that records the timeline is not timed.

Run it on an idle machine; it uses one core.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import simpy

from simulator.inputs.scenario import load_scenario
from simulator.network import topology as topology_module
from simulator.network.collectives import plan_collective
from simulator.network.flows import FlowNetwork
from simulator.network.topology import load_topology
from simulator.results import plots
from simulator.results.assemble import simulate

A100, H100 = "dgx-a100-superpod", "dgx-h100-superpod"


def best_of(repeats: int, setup: Callable[[], object], run: Callable[[object], object]) -> float:
    """Least wall seconds of ``run(setup())`` over ``repeats`` runs; ``setup`` is not timed."""
    best = float("inf")
    for _ in range(repeats):
        state = setup()
        gc.collect()
        t0 = time.perf_counter()
        run(state)
        best = min(best, time.perf_counter() - t0)
    return best


def fresh_topology(name: str, n_gpus: int):
    """A newly built topology: :func:`load_topology` keeps built ones (and their path caches)."""
    topology_module._built.cache_clear()
    return load_topology(name, n_gpus)


def path_lookups(topo) -> None:
    for src in range(0, 3072, 3):
        topo.path_ids(src, 3071 - src)


def flows_setup():
    """The workload of tests/test_flows.py::test_non_contending_flows_take_the_fast_path."""
    n_links, n_flows = 2000, 20_000
    rng = np.random.default_rng(1)
    shared = [rng.choice(np.arange(2, n_links), 49, replace=False) for _ in range(64)]
    links = [[np.sort(np.concatenate(([s], sh))) for sh in shared] for s in (0, 1)]
    nbytes = np.full(50, 4e5)
    nbytes[0] = 1e6
    env = simpy.Environment()
    net = FlowNetwork(env, np.full(n_links, 1e12))

    def stream(s):
        for i in range(n_flows // 2):
            yield net.transfer(links[s][(i + 7 * s) % 64], nbytes)

    env.process(stream(0))
    env.process(stream(1))
    return env, net


def flows_run(state) -> None:
    env, net = state
    env.run()
    assert net.n_recomputes == 0


def collective_hit(topo) -> float:
    groups = [list(range(1024))]
    plan_collective(topo, "all_reduce", groups, 1e9, "ring", generation="ampere")
    t0 = time.perf_counter()
    plan_collective(topo, "all_reduce", groups, 1e9, "ring", generation="ampere")
    return time.perf_counter() - t0


def render(result) -> None:
    fig = plots.pipeline_timeline(result)
    fig.canvas.draw()
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    n = ap.parse_args().repeats

    load_topology(H100, 64)  # warm imports and the bundled-file cache
    rows: list[tuple[str, float, float]] = []
    for name in (A100, H100):
        rows.append((f"topology build, {name}, 3072 GPUs",
                     best_of(n, topology_module._built.cache_clear, lambda _, name=name: load_topology(name, 3072)), 0.5))
    rows.append(("path lookups, 1024 new pairs, A100 3072 GPUs",
                 best_of(n, lambda: fresh_topology(A100, 3072), path_lookups), 0.5))
    groups = [list(range(1024))]
    rows.append(("collective plan build, ring all-reduce, 1024 GPUs",
                 best_of(n, lambda: fresh_topology(A100, 1024),
                         lambda topo: plan_collective(topo, "all_reduce", groups, 1e9, "ring", generation="ampere")), 1.0))
    rows.append(("collective plan cache hit, same call",
                 min(collective_hit(fresh_topology(A100, 1024)) for _ in range(n)), 5e-3))
    rows.append(("flow fast path, 20k non-contending flows", best_of(n, flows_setup, flows_run), 1.0))
    megatron = simulate(load_scenario("megatron-1t-3072-a100"), record_timeline=True)
    rows.append((f"timeline render, Megatron 1T, {len(megatron.timeline)} intervals",
                 best_of(n, lambda: megatron, render), 10.0))

    print(f"{'hot path':<58} {'best ms':>9} {'bound ms':>9} {'of bound':>9}")
    for label, seconds, bound in rows:
        print(f"{label:<58} {seconds * 1e3:>9.3f} {bound * 1e3:>9.0f} {seconds / bound:>9.1%}")


if __name__ == "__main__":
    main()
