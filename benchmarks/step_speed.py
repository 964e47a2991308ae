"""Wall time and peak memory of simulating one step (not run by CI).

    python benchmarks/step_speed.py

Times ``simulate()`` (setup, work plan and event simulation, no timeline
recording) for the GPT-3 175B / 1,024-GPU and the Megatron 1T / 3,072-GPU
scenarios, then GPT-3 175B with TP 8 x PP 8 at growing data-parallel sizes and a
fixed per-replica batch, to show the cost does not grow with the fleet.
Run it on an idle machine; it uses one core.
"""

from __future__ import annotations

import gc
import time
import tracemalloc

from simulator import load_scenario, simulate


def measure(scenario, repeats: int = 3) -> tuple[float, float, float]:
    """(best wall seconds, peak traced MiB, step time) of simulating ``scenario``."""
    simulate(scenario, record_timeline=False)  # warm caches shared by every run (catalog, presets)
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        result = simulate(scenario, record_timeline=False)
        best = min(best, time.perf_counter() - t0)
    tracemalloc.start()
    simulate(scenario, record_timeline=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return best, peak / 2**20, result.step_time_s


def main() -> None:
    print(f"{'case':<44} {'wall s':>8} {'peak MiB':>9} {'events':>8} {'step s':>8}")
    for name in ("gpt3-175b-1024-a100", "megatron-1t-3072-a100"):
        sc = load_scenario(name)
        wall, peak, step = measure(sc)
        events = simulate(sc, record_timeline=False).n_events
        print(f"{name:<44} {wall:>8.3f} {peak:>9.1f} {events:>8} {step:>8.3f}")
    base = load_scenario("gpt3-175b-1024-a100").with_(vpp=1)
    for dp in (2, 8, 32, 128):
        sc = base.with_(gpus=64 * dp, dp=dp, global_batch=96 * dp)
        wall, peak, step = measure(sc)
        print(f"{'gpt3-175b tp8 pp8 dp' + str(dp) + ' (' + str(64 * dp) + ' GPUs)':<44} {wall:>8.3f} {peak:>9.1f} {'':>8} {step:>8.3f}")


if __name__ == "__main__":
    main()
