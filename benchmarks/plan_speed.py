"""Speed of the plan search (``trainsim plan``) on Llama-3 70B and 1,024 H100 (not run by CI).

    python benchmarks/plan_speed.py [--simulate 64] [--workers 2]

The scenario is ``scenarios/llama3-70b-512-h100.yaml`` on 1,024 GPUs with only the global
batch (512 sequences of 8,192 tokens) and the precision (bf16) stated, so every searched
plan field is open. Prints the plans enumerated / fitting in memory / estimated by the
analytic first pass / simulated event by event, the wall time of each phase, and the
configurations evaluated per second per core (plans / (wall seconds x worker processes)),
for the first pass and the full step simulations separately. With ``--workers`` > 1 both
run on a local Dask cluster (:func:`simulator.studies.executor.dask_client`).
"""

from __future__ import annotations

import argparse
import os
import time

from simulator.inputs.scenario import Scenario
from simulator.studies.executor import dask_client
from simulator.studies.planner import plan_search


def scenario() -> Scenario:
    return Scenario(name="Llama-3 70B on 1024 H100, plan open", model="llama3-70b", topology="dgx-h100-superpod",
                    gpus=1024, plan={"global_batch": 512, "precision": "bf16"}, energy={"pue": 1.2})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--simulate", type=int, default=64, help="plans to simulate (0: every fitting plan)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    t0 = time.perf_counter()
    if args.workers > 1:
        with dask_client(workers=args.workers) as client:
            started = time.perf_counter() - t0
            search = plan_search(scenario(), top_k=args.simulate, client=client)
    else:
        started = 0.0
        search = plan_search(scenario(), top_k=args.simulate)
    wall = time.perf_counter() - t0
    s = search.seconds
    print(f"plans enumerated       {search.n_enumerated}")
    print(f"fit in memory          {search.n_fit}")
    print(f"first-pass estimated   {search.n_estimated}")
    print(f"simulated              {search.n_simulated} ({args.workers} worker processes)")
    print(f"wall time              {wall:.2f} s (Dask local cluster start {started:.2f}, "
          f"enumerate {s['enumerate']:.2f}, memory {s['memory']:.2f}, first pass {s['first_pass']:.2f}, "
          f"simulations {s['simulate']:.2f})")
    print(f"memory check           {search.n_enumerated / s['memory']:.0f} plans/s (one core)")
    print(f"first pass             {search.n_estimated / (s['first_pass'] * args.workers):.0f} plans/s per core "
          f"(build_step_plan + analytic estimate, on {args.workers} "
          + ("Dask workers, incl. shipping the fleet)" if args.workers > 1 else "process)"))
    per_core = search.n_simulated / (s["simulate"] * args.workers)
    print(f"full step simulations  {per_core:.1f} per second per core "
          f"({search.n_simulated} in {s['simulate']:.2f} s on {args.workers} "
          + ("Dask workers, incl. shipping plans and results)" if args.workers > 1 else "process)"))
    b = search.best
    p = b.plan
    print(f"best: TP {p.tp} PP {p.pp} DP {p.dp} VPP {p.vpp} mb {p.micro_batch} SP {p.sequence_parallel} "
          f"{p.recompute} ZeRO {p.zero_stage}: step {b.step_time_s:.3f} s (estimate {b.estimate_s:.3f} s), "
          f"{b.tokens_per_s:,.0f} tokens/s, MFU {b.mfu:.1%}, {b.memory_GB:.1f} GB")
    errs = [abs(r.estimate_s - r.step_time_s) / r.step_time_s for r in search.results]
    if errs:
        print(f"first-pass error vs simulation over the simulated plans: median {sorted(errs)[len(errs) // 2]:.1%}, "
              f"max {max(errs):.1%}")


if __name__ == "__main__":
    main()
