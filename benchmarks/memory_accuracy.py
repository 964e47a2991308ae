"""Memory accuracy on a memory CSV, mechanism by mechanism (not run by CI).

    python benchmarks/memory_accuracy.py [CSV] [--fit]

For every ``peak_memory_gib`` and ``fits`` row of CSV (default ``../shared/validation/memory.csv``)
the row's plan as ``trainsim validate`` resolves it (framework defaults included) is evaluated
with the memory mechanisms switched on one after the other:

0. ``before``: the memory model before issue 13 (Megatron's 2/4/12 bytes per parameter for
   every framework, gradients in fp32, fp8 inputs saved in bf16, torchtitan's per-op
   checkpointing read as Megatron's selective, no allocator slack: every statistic = allocated);
1. ``+states``: FSDP2/FSDP/DDP model states (fp32 parameters as master, the root module kept
   gathered, DDP's gradient-bucket copy);
2. ``+per_op``: torchtitan's per-op checkpointing;
3. ``+precision``: the plan's gradient-reduce precision and fp8 saved inputs;
4. ``+allocator``: reserved and device memory (allocator slack, CUDA context, NCCL buffers:
   ``allocator.yaml``) -- the model as shipped;
5. ``what-if zb standard``: 4, with unfused attention for the zerobubble rows (a hypothesis
   about that source's runs, not a default).

Prints MAPE per source and statistic class (as the CSV labels it; ``unknown`` rows are compared
with reserved memory, as ``trainsim validate`` does) and the wrong fits verdicts after each step,
and the classes without the two rows whose parameters and optimizer state live in host memory
(a plan field trainsim does not have).
``--fit`` fits the allocator slack (:func:`simulator.validation.memory_fit.fit_allocator`) on
the reserved/device rows and records it in ``simulator/workload/allocator.yaml``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CSV = REPO.parent / "shared" / "validation" / "memory.csv"
HOST_OFFLOAD_ROWS = ("cl-ds-z3-offload-18b-1g", "cl-colossal-auto-24b-1g")
"""Rows whose parameters and optimizer state live in host memory (DeepSpeed ZeRO-3 offload,
ColossalAI Gemini auto placement; their notes say so): no plan field expresses that yet."""


def _steps():
    from simulator.workload.allocator import NONE, allocator_model

    def before(plan):
        return {"framework": "megatron-lm", "grad_reduce_precision": "fp32", "fp8_saved_inputs": False,
                "recompute": "selective" if plan.recompute == "per_op" else plan.recompute}

    return [
        ("before", before, NONE),
        ("+states", lambda p: {**before(p), "framework": p.framework}, NONE),
        ("+per_op", lambda p: {"grad_reduce_precision": "fp32", "fp8_saved_inputs": False}, NONE),
        ("+precision", lambda p: {}, NONE),
        ("+allocator", lambda p: {}, allocator_model()),
        ("what-if zb standard", lambda p: {}, allocator_model()),
    ]


def evaluate(csv: Path) -> pd.DataFrame:
    """One line per row and step: the prediction, the published value and the error (%)."""
    from simulator.core.errors import TrainsimError
    from simulator.core.units import GiB
    from simulator.hardware.catalog import load_catalog
    from simulator.inputs.efficiency_file import default_efficiency
    from simulator.validation.cases import case_setup, read_cases
    from simulator.validation.published import (
        memory_stage,
        memory_statistic,
        metric_error_pct,
    )
    from simulator.workload.memory import memory_per_gpu

    catalog, efficiency = load_catalog(), default_efficiency()
    out = []
    for _, row in read_cases(csv).iterrows():
        metric = str(row["metric"])
        if metric not in ("peak_memory_gib", "fits"):
            continue
        try:
            setup, _ = case_setup(row, catalog, efficiency)
        except (TrainsimError, ValueError, ArithmeticError) as err:
            out.append({"case_id": row["case_id"], "source_id": row["source_id"], "step": "all",
                        "status": str(err)[:80]})
            continue
        statistic = memory_statistic(row.get("memory_statistic")) if metric == "peak_memory_gib" else "device"
        stage = None if metric == "fits" else memory_stage(setup, row.get("memory_rank"))
        for name, update, allocator in _steps():
            plan = setup.plan.model_copy(update=update(setup.plan))
            attention = "standard" if name.startswith("what-if") and row["source_id"] == "zerobubble" else None
            mb = memory_per_gpu(setup.model, plan, capacity_bytes=setup.device.hbm_bytes, stage=stage,
                                attention=attention, allocator=allocator)
            value = float(mb.fits) if metric == "fits" else mb.statistic(statistic) / GiB
            label = str(row.get("memory_statistic") or "unknown").strip() if metric != "fits" else "fits"
            out.append({"case_id": row["case_id"], "source_id": row["source_id"], "step": name, "metric": metric,
                        "statistic": "unknown" if label == "nan" else label, "published": float(row["value"]),
                        "predicted": value, "error_pct": metric_error_pct(metric, value, float(row["value"])),
                        "status": "ok"})
    return pd.DataFrame(out)


def table(df: pd.DataFrame) -> pd.DataFrame:
    """MAPE (peak rows) or wrong verdicts (fits rows) per source x statistic, one column per step."""
    ok = df[df.status == "ok"]
    ok = ok.assign(abs_err=ok.error_pct.abs(), wrong=(ok.error_pct != 0).astype(int))
    peak = ok[ok.metric == "peak_memory_gib"]
    by_source = peak.pivot_table(index=["statistic", "source_id"], columns="step", values="abs_err", aggfunc="mean")
    by_class = peak.pivot_table(index="statistic", columns="step", values="abs_err", aggfunc="mean")
    by_class.index = pd.MultiIndex.from_tuples([(s, "ALL") for s in by_class.index])
    fits = ok[ok.metric == "fits"].pivot_table(index=["statistic", "source_id"], columns="step", values="wrong",
                                               aggfunc="sum")
    on_gpu = peak[~peak.case_id.isin(HOST_OFFLOAD_ROWS)]
    by_class_gpu = on_gpu.pivot_table(index="statistic", columns="step", values="abs_err", aggfunc="mean")
    by_class_gpu.index = pd.MultiIndex.from_tuples([(s, "ALL without host offload") for s in by_class_gpu.index])
    order = [name for name, *_ in _steps()]
    return pd.concat([by_source, by_class, by_class_gpu, fits])[order].round(1)


def main(argv: list[str]) -> int:
    csv = Path(next((a for a in argv if not a.startswith("--")), DEFAULT_CSV))
    df = evaluate(csv)
    pd.set_option("display.width", 200)
    print("MAPE % per statistic class and source (fits rows: number of wrong verdicts)")
    print(table(df).to_string())
    failed = df[df.status != "ok"]
    if len(failed):
        print(f"\n{len(failed)} rows not predicted:")
        print("\n".join(f"  {r.case_id}: {r.status}" for r in failed.itertuples()))
    if "--fit" in argv:
        from simulator.validation.cases import read_cases
        from simulator.validation.memory_fit import (
            fit_allocator,
            memory_predictions,
            record_fit,
        )

        rows, _ = memory_predictions(read_cases(csv))
        fit = fit_allocator(rows)
        print("\nfit:", fit)
        record_fit(fit, csv, REPO / "simulator" / "workload" / "allocator.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
