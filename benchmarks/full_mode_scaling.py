"""Full-mode cost per data-parallel replica as the replicas grow (issue 12, defect 9b).

GPT-3 175B TP8 PP8 (scenario ``gpt3-175b-1024-a100``), ``--mode full``, the per-replica batch
fixed (96 sequences): 1,024, 2,048, 4,096 and 8,192 GPUs (dp 16, 32, 64, 128). Prints the wall
time of one simulated step and the milliseconds per replica simulated; linear cost would keep
the last column flat. Run from the checkout:

    .venv/bin/python benchmarks/full_mode_scaling.py            # dp 16, 32, 64, 128
    .venv/bin/python benchmarks/full_mode_scaling.py 16 32      # chosen dp sizes

Wall times, not assertions: tests/test_flows.py holds that the rebalance is exact.
"""

from __future__ import annotations

import sys
import time

from simulator import load_scenario, simulate


def main(dps: list[int]) -> None:
    base = load_scenario("gpt3-175b-1024-a100")
    simulate(base.with_(simulation={"mode": "full"}), record_timeline=False)  # warm caches and imports
    print(f"{'GPUs':>6} {'dp':>4} {'wall s':>8} {'ms/replica':>11} {'step s':>20}")
    for dp in dps:
        gpus = 64 * dp
        sc = base.with_(gpus=gpus, global_batch=96 * dp, simulation={"mode": "full"})
        t = time.perf_counter()
        r = simulate(sc, record_timeline=False)
        dt = time.perf_counter() - t
        print(f"{gpus:>6} {dp:>4} {dt:>8.2f} {dt / dp * 1000:>11.0f} {r.step_time_s!r:>20}", flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [16, 32, 64, 128])
