"""Predicted vs measured nccl-tests bus bandwidth: NCCL's tuner before and after the correction.

    cd /work/main && .venv/bin/python benchmarks/nccl_compare.py [--csv PATH ...] [--out table.csv]

A thin wrapper over :func:`simulator.validation.collectives.compare` (benchmarks may read
``../shared``; the ``simulator`` package never does). For the files (default: the reference
set's ``nccl.csv``) it prints the summary per collective x size range x scale with NCCL's own
estimate (``NOMINAL``) and with the packaged correction (``default_efficiency().network``),
then the MAPE at >= 1 MiB and over all sizes of both. ``--out`` writes the corrected per-row
table (the golden ``tests/data/golden/nccl.csv``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from simulator.inputs.efficiency_file import default_efficiency
from simulator.network.efficiency import NOMINAL
from simulator.validation.collectives import MiB, compare_prepared, mape_pct, prepare, read_nccl_csv, summary

DEFAULT_CSV = Path(__file__).resolve().parents[2] / "shared" / "reference" / "nccl.csv"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, nargs="+", default=[DEFAULT_CSV], help="nccl-tests files (default: %(default)s)")
    ap.add_argument("--out", type=Path, help="write the corrected per-row table to this CSV file")
    args = ap.parse_args(argv)
    missing = [p for p in args.csv if not p.is_file()]
    if missing:
        print(f"error: {missing[0]} not found", file=sys.stderr)
        return 2
    table = pd.concat([read_nccl_csv(p) for p in args.csv], ignore_index=True)
    prepared = prepare(table)
    runs = {"NCCL uncorrected": compare_prepared(table, prepared, NOMINAL),
            "corrected": compare_prepared(table, prepared, default_efficiency().network)}
    for title, compared in runs.items():
        print(f"{title}:")
        print(summary(compared).to_string(index=False, float_format=lambda v: f"{v:.1f}"))
        print()
    for title, compared in runs.items():
        n_ok = int((compared["status"] == "ok").sum())
        print(f"{title}: {n_ok} of {len(compared)} rows comparable; MAPE >= 1 MiB {mape_pct(compared, MiB):.2f}%, "
              f"all sizes {mape_pct(compared):.2f}%")
    if args.out:
        runs["corrected"].to_csv(args.out, index=False)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
