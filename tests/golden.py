"""Golden outputs: what trainsim prints today, kept so that a change that moves a number shows.

The documents come from the command line and the public entry points only, so that moving code
around inside the package never changes how they are made:

* ``run-<scenario>.json``: ``trainsim run <scenario> --json`` for every bundled scenario, and in
  ``--mode full`` for the two scenarios small enough to simulate every replica;
* ``plan-<scenario>.json``: ``trainsim plan`` on one fleet, in-process (the ranking and every
  simulated plan's numbers; the timing entry is dropped);
* ``validate-calibration.csv``: ``trainsim validate`` on ``../shared/validation/calibration.csv``;
* ``nccl.csv``: ``python benchmarks/nccl_compare.py --out`` on ``../shared/reference/nccl.csv``.

Regenerate them (only in a commit that moves numbers on purpose, and say so in its message)::

    python tests/golden.py
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import runpy
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "data" / "golden"
SHARED = REPO.parent / "shared"
VALIDATION_FILES = (SHARED / "validation" / "calibration.csv",)
NCCL_FILE = SHARED / "reference" / "nccl.csv"
SCENARIOS = ("gpt2xl-8-l40s-dp", "gpt3-175b-1024-a100", "llama3-70b-512-h100", "llama3-8b-128k-h100-cp",
             "megatron-1t-3072-a100")
FULL_MODE = ("gpt2xl-8-l40s-dp", "llama3-8b-128k-h100-cp")
PLAN = ("llama3-70b-512-h100", "--gpus", "256", "--free", "tp,pp,micro_batch", "--simulate", "8", "--workers", "1")


def _trainsim(*args: str) -> str:
    """``trainsim ARGS``'s standard output, run in this process."""
    from typer.testing import CliRunner

    from simulator.cli import app

    done = CliRunner().invoke(app, list(args))
    if done.exit_code != 0:
        raise RuntimeError(f"trainsim {' '.join(args)} failed ({done.exit_code}): {done.output.strip()}")
    return done.stdout


def run_json(scenario: str, mode: str = "representative") -> str:
    return _trainsim("run", scenario, "--json", "--mode", mode)


def plan_json() -> str:
    doc = json.loads(_trainsim("plan", *PLAN, "--json"))
    doc.pop("seconds")
    return json.dumps(doc, indent=2) + "\n"


@functools.cache
def validate_csv(path: Path) -> str:
    """``trainsim validate PATH --out``'s CSV, once per process (the calibration regression test reads it too)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "predictions.csv"
        _trainsim("validate", str(path), "--out", str(out))
        return out.read_text()


def nccl_csv(out: Path) -> str:
    benchmark = runpy.run_path(str(REPO / "benchmarks" / "nccl_compare.py"))
    with contextlib.redirect_stdout(io.StringIO()):
        if benchmark["main"](["--csv", str(NCCL_FILE), "--out", str(out)]) != 0:
            raise RuntimeError("benchmarks/nccl_compare.py failed")
    return out.read_text()


def documents(tmp: Path) -> dict[str, callable]:
    """Golden file name -> a function producing its text now."""
    docs = {f"run-{s}.json": (lambda s=s: run_json(s)) for s in SCENARIOS}
    docs |= {f"run-{s}-full.json": (lambda s=s: run_json(s, "full")) for s in FULL_MODE}
    docs["plan-llama3-70b-256-h100.json"] = plan_json
    docs |= {f"validate-{p.stem}.csv": (lambda p=p: validate_csv(p)) for p in VALIDATION_FILES}
    docs["nccl.csv"] = lambda: nccl_csv(tmp / "nccl.csv")
    return docs


def main() -> int:
    missing = [p for p in (*VALIDATION_FILES, NCCL_FILE) if not p.is_file()]
    if missing:
        print(f"error: {missing[0]} not found (shared/ must sit beside the checkout)", file=sys.stderr)
        return 2
    GOLDEN.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in documents(Path(tmp)).items():
            (GOLDEN / name).write_text(make())
            print(f"written: {(GOLDEN / name).relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
