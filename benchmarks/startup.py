"""Wall times a user sees (issue 15, deliverable 4), next to Calculon's figures (not run by CI).

    python benchmarks/startup.py [--repeat 5] [--gpus 64,1024] [--workers N] [--no-plan]

(``--workers 2`` on two cores: the local Dask cluster trainsim used to start by default.)

Each command runs as its own process, as a user would start it (imports included):

- ``trainsim run --help`` (target <= 0.3 s) and ``trainsim run`` of the README quick start's
  default scenario, ``gpt3-175b-1024-a100`` (target <= 1 s): median and range of ``--repeat`` runs;
- ``trainsim plan gpt3-175b-1024-a100 --gpus N --free <Calculon's space>`` for each N of ``--gpus``:
  GPT-3 175B with the plan fields Calculon searches open (tp, pp, dp, micro-batch, recompute,
  sequence parallelism, ZeRO-1 and interleaving, i.e. vpp), global batch 1,536 as in the scenario.
  From the command's JSON: the plans enumerated, fitting in memory, estimated by the analytic first
  pass and simulated; the first pass's and the simulation's plans per second (of their own phase)
  and the end-to-end rate (plans enumerated / wall time of the command).

Calculon's figures, measured on this 2-core machine and quoted in issue 15: 10-14 ms per plan
(71-100 plans/s one at a time) and 394 plans/s on its own 8,112-plan search.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_SCENARIO = "gpt3-175b-1024-a100"
CALCULON_SPACE = "tp,pp,dp,vpp,micro_batch,sequence_parallel,recompute,zero_stage"
CALCULON_MS_PER_PLAN = (10.0, 14.0)
CALCULON_SEARCH_PLANS_PER_S = 394.0
HELP_TARGET_S = 0.3
RUN_TARGET_S = 1.0


def trainsim() -> list[str]:
    """The ``trainsim`` console script of this interpreter's environment (else ``python -m simulator.cli``)."""
    script = Path(sys.executable).with_name("trainsim")
    if script.exists():
        return [str(script)]
    found = shutil.which("trainsim")
    return [found] if found else [sys.executable, "-m", "simulator.cli"]


def timed(args: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return wall, done.stdout


def repeated(args: list[str], repeat: int) -> tuple[float, float, float]:
    """Median, minimum and maximum wall seconds of ``repeat`` runs (after one warm-up for the OS caches)."""
    timed(args)
    walls = [timed(args)[0] for _ in range(repeat)]
    return statistics.median(walls), min(walls), max(walls)


def plan_search(gpus: int, workers: int | None) -> dict:
    args = [*trainsim(), "plan", DEFAULT_SCENARIO, "--gpus", str(gpus), "--free", CALCULON_SPACE, "--format", "json"]
    if workers:
        args += ["--workers", str(workers)]
    wall, out = timed(args)
    doc = json.loads(out)
    return {"gpus": gpus, "wall": wall, "counts": doc["counts"], "seconds": doc["seconds"]}


def cluster_start() -> float:
    """Seconds to start (and close) the local Dask cluster ``trainsim plan``/``sweep`` would start:
    the cost the executor rule (:func:`simulator.studies.executor.in_process`) avoids."""
    from simulator.studies.executor import dask_client

    t0 = time.perf_counter()
    with dask_client(workers=os.cpu_count() or 1):
        started = time.perf_counter() - t0
    return started


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f} plans/s ({1e3 * seconds / n:.1f} ms/plan)" if n and seconds > 0 else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs of --help and of run (median reported)")
    ap.add_argument("--gpus", default="64,1024", help="fleet sizes of the plan searches, comma-separated")
    ap.add_argument("--workers", type=int, default=None, help="--workers of trainsim plan (default: its own rule)")
    ap.add_argument("--no-plan", action="store_true", help="only the startup and run times")
    args = ap.parse_args()

    cmd = trainsim()
    print(f"machine: {os.cpu_count()} cores; command: {' '.join(cmd)}")
    med, lo, hi = repeated([*cmd, "run", "--help"], args.repeat)
    ok = "ok" if med <= HELP_TARGET_S else "over"
    print(f"trainsim run --help        {med:.3f} s (min {lo:.3f}, max {hi:.3f}; target <= {HELP_TARGET_S} s: {ok})")
    med, lo, hi = repeated([*cmd, "run"], args.repeat)
    ok = "ok" if med <= RUN_TARGET_S else "over"
    print(f"trainsim run ({DEFAULT_SCENARIO}) {med:.3f} s (min {lo:.3f}, max {hi:.3f}; "
          f"target <= {RUN_TARGET_S} s: {ok})")
    if args.no_plan:
        return
    from simulator.studies.executor import in_process

    print(f"local Dask cluster of {os.cpu_count()} workers: {cluster_start():.2f} s to start; trainsim plan's "
          f"default here: {'in this process' if in_process(None, args.workers) else 'the local cluster'}")
    lo_ms, hi_ms = CALCULON_MS_PER_PLAN
    print(f"\ntrainsim plan {DEFAULT_SCENARIO} --gpus N --free {CALCULON_SPACE}"
          + (f" --workers {args.workers}" if args.workers else ""))
    print(f"Calculon (issue 15, same machine): {lo_ms:.0f}-{hi_ms:.0f} ms per plan "
          f"({1e3 / hi_ms:.0f}-{1e3 / lo_ms:.0f} plans/s); {CALCULON_SEARCH_PLANS_PER_S:.0f} plans/s on its "
          "8,112-plan search")
    for gpus in (int(g) for g in args.gpus.split(",") if g.strip()):
        r = plan_search(gpus, args.workers)
        c, s = r["counts"], r["seconds"]
        end_to_end = c["enumerated"] / r["wall"]
        print(f"\n{gpus} A100: wall {r['wall']:.1f} s; plans enumerated {c['enumerated']}, fit in memory "
              f"{c['fit_in_memory']}, first-pass estimated {c['estimated']}, simulated {c['simulated']}")
        print(f"  phases: enumerate {s['enumerate']:.2f} s, memory {s['memory']:.2f} s, "
              f"first pass {s['first_pass']:.2f} s, simulations {s['simulate']:.2f} s")
        print(f"  first pass         {_rate(c['estimated'], s['first_pass'])}")
        print(f"  simulation         {_rate(c['simulated'], s['simulate'])}")
        print(f"  end to end         {end_to_end:,.0f} plans/s (enumerated / wall) = "
              f"{end_to_end / CALCULON_SEARCH_PLANS_PER_S:.2f}x Calculon's {CALCULON_SEARCH_PLANS_PER_S:.0f} "
              "(target >= 2x at 1,024)")


if __name__ == "__main__":
    main()
