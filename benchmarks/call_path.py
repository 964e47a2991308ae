"""The path a scenario takes from ``trainsim run`` to the report, module by module.

    python benchmarks/call_path.py [SCENARIO]

Runs ``trainsim run SCENARIO`` (default: the bundled default) in this process under a profiler
hook and records every call from one ``simulator`` module into another. Prints the distinct
caller -> callee module pairs in the order they were first taken, marks those that go back up
the layers of ``docs/architecture.md`` (a call into a higher layer: a callback), and counts both.
"""

from __future__ import annotations

import contextlib
import io
import sys

LAYERS = {"core": 0, "workload": 1, "hardware": 1, "network": 1, "system": 2, "inputs": 3, "results": 4,
          "studies": 5, "validation": 6}


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], 7) if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else 7


def main(argv: list[str]) -> int:
    from simulator.cli import app

    moves: dict[tuple[str, str], None] = {}

    def hook(frame, event, _arg):
        if event != "call" or frame.f_back is None:
            return
        callee, caller = frame.f_globals.get("__name__", ""), frame.f_back.f_globals.get("__name__", "")
        if callee != caller and callee.startswith("simulator") and caller.startswith("simulator"):
            moves.setdefault((caller, callee), None)

    args = ["run", *(argv[:1] or [])]
    sys.setprofile(hook)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            app(args, standalone_mode=False)
    finally:
        sys.setprofile(None)
    up = [(a, b) for a, b in moves if layer(b) > layer(a)]
    for a, b in moves:
        print(f"{a} -> {b}" + ("   (back up a layer)" if (a, b) in up else ""))
    print(f"\n{len(moves)} moves between modules, {len(up)} of them back up a layer")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
