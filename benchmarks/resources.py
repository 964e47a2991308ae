"""Time to refuse an impossible plan on a huge fleet, and resident memory over a sweep of fleets
(not run by CI).

    python benchmarks/resources.py            # both
    python benchmarks/resources.py refuse     # only the refusal timings
    python benchmarks/resources.py rss [N]    # only the RSS sweep, N fleets (default 50)

``refuse``: the Llama-3 70B / 512-GPU scenario on 2^20 and on 10^12 GPUs with a global batch that
does not divide over the data-parallel replicas; prints how long ``trainsim run`` takes to say so
(in-process ``setup``, the CLI adds its start-up). ``rss``: builds ``N`` distinct DGX H100 fleets
of about 16k GPUs one after another in this process (as a sweep or a fuzzer does) and prints the
resident set size after every tenth. Uses psutil (installed with Dask).
"""

from __future__ import annotations

import gc
import sys
import tempfile
import time
from pathlib import Path

import psutil

from simulator.core.errors import InputError
from simulator.inputs.resolve import setup
from simulator.inputs.scenario import load_scenario
from simulator.network.topology import load_topology

_SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "llama3-70b-512-h100.yaml"


def refuse() -> None:
    text = _SCENARIO.read_text(encoding="utf-8")
    for gpus in (2**20, 10**12):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "big.yaml"
            path.write_text(text.replace("gpus: 512", f"gpus: {gpus}"), encoding="utf-8")
            t0 = time.perf_counter()
            try:
                setup(load_scenario(str(path)))
                outcome = "accepted (!)"
            except InputError as err:
                outcome = str(err).split(": ", 1)[-1][:90]
            print(f"{gpus:>16,} GPUs  {time.perf_counter() - t0:8.3f} s  {outcome}")


def rss(n_fleets: int = 50) -> None:
    proc = psutil.Process()
    gc.collect()
    start = proc.memory_info().rss
    print(f"RSS before: {start / 2**20:7.1f} MiB")
    t0 = time.perf_counter()
    for k in range(n_fleets):
        load_topology("dgx-h100-superpod", 16384 + 8 * k)
        if (k + 1) % 10 == 0:
            gc.collect()
            now = proc.memory_info().rss
            print(f"after {k + 1:3d} fleets: {now / 2**20:7.1f} MiB (+{(now - start) / 2**20:6.1f}), "
                  f"{time.perf_counter() - t0:6.1f} s")


def main(argv: list[str]) -> None:
    what = argv[0] if argv else "both"
    if what in ("refuse", "both"):
        refuse()
    if what in ("rss", "both"):
        rss(int(argv[1]) if len(argv) > 1 else 50)


if __name__ == "__main__":
    main(sys.argv[1:])
