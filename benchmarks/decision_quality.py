"""Decision quality on every contender set of the calibration files: Spearman of predicted
against measured throughput ranks, and the share of concordant pairs (issue 13).

Run: python benchmarks/decision_quality.py [--efficiency FILE] [CSV ...]
(default: ../shared/validation/calibration.csv and calibration-2.csv, packaged efficiency)."""

from __future__ import annotations

import argparse

import pandas as pd

from simulator.inputs.efficiency_file import default_efficiency, load_efficiency
from simulator.validation.calibration import contender_sets, decision_quality, read_calibration_files
from simulator.validation.published import validate

FILES = ["../shared/validation/calibration.csv", "../shared/validation/calibration-2.csv"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("files", nargs="*", default=FILES)
    parser.add_argument("--efficiency", default=None)
    args = parser.parse_args()
    eff = load_efficiency(args.efficiency) if args.efficiency else default_efficiency()
    cases = read_calibration_files(args.files)
    rows = pd.concat(contender_sets(cases), ignore_index=True)
    dq = decision_quality(rows, validate(rows, efficiency=eff))
    pd.set_option("display.width", 200)
    pd.set_option("display.max_colwidth", 90)
    print(dq.round(3).to_string(index=False))
    ok = dq.spearman.dropna()
    print(f"\n{len(dq)} contender sets, {len(ok)} with two or more runs simulated; Spearman >= 0.9 on {(ok >= 0.9).sum()}; "
          f"mean Spearman {ok.mean():.3f}; concordant pairs {dq.concordant.mean():.3f}")


if __name__ == "__main__":
    main()
