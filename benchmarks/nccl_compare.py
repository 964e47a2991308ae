"""Predicted vs measured nccl-tests bus bandwidth (issue 3, "Collectives").

    cd /work/main && /tmp/venv/bin/python benchmarks/nccl_compare.py [--csv PATH] [--out table.csv]

Reads ``/work/shared/reference/nccl.csv`` (benchmarks may read ``/work/shared``; the
``simulator`` package never does), runs :func:`simulator.validation.collectives.compare`
with the packaged efficiency parameters (``default_efficiency().network``), prints one line
per row (every row: ``ok`` or ``not comparable: <reason>``), then the error summary per
collective and message-size range (count, MAPE, median and max |error|) and the MAPE of
the rows of at least 1 MiB (the figure the regression test guards).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from simulator.validation.collectives import (
    MiB,
    compare,
    mape_pct,
    read_nccl_csv,
    summary,
)

DEFAULT_CSV = Path(__file__).resolve().parents[2] / "shared" / "reference" / "nccl.csv"


def _fmt_table(df: pd.DataFrame) -> str:
    view = df.copy()
    view["message_bytes"] = view["message_bytes"].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    for c in ("measured_busbw_GBps", "predicted_busbw_GBps"):
        view[c] = view[c].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    view["error_pct"] = view["error_pct"].map(lambda v: "" if pd.isna(v) else f"{v:+.1f}")
    view = view.rename(columns={"measured_busbw_GBps": "meas_GBps", "predicted_busbw_GBps": "pred_GBps",
                                "error_pct": "err_%"})
    cols = ["case_id", "n_gpus", "n_nodes", "message_bytes", "meas_GBps", "pred_GBps", "err_%", "algorithm",
            "topology", "status"]
    return view[cols].fillna("").to_string(index=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="nccl.csv-format file (default: %(default)s)")
    ap.add_argument("--out", type=Path, help="write the per-row table to this CSV file")
    args = ap.parse_args(argv)
    if not args.csv.is_file():
        print(f"error: {args.csv} not found", file=sys.stderr)
        return 2
    table = compare(read_nccl_csv(args.csv))
    with pd.option_context("display.width", 250, "display.max_colwidth", 110):
        print(_fmt_table(table))
        print()
        print(summary(table).to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    n_ok = int((table["status"] == "ok").sum())
    print(f"\n{n_ok} of {len(table)} rows comparable; MAPE over rows >= 1 MiB: {mape_pct(table, MiB):.2f}%")
    if args.out:
        table.to_csv(args.out, index=False)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
