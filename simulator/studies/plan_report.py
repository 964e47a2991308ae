"""What ``trainsim plan`` prints: the ranking as tables for people, CSV or JSON for programs.

The table adapts to the width it is printed at (a terminal, or 80 columns through a pipe): at
:data:`WIDE_COLUMNS` and more every plan field has its column; narrower, the plan is one column
that wraps (``TP 8 PP 4 DP 16 ...``) and the numbers keep theirs, so no cell is cut.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from simulator.results.band import Band
from simulator.results.report import band_caption
from simulator.studies.planner import PlanResult, PlanSearch

WIDE_COLUMNS = 150
"""Console width from which the ranking shows one column per plan field."""
FORMATS = ("table", "csv", "json")


def print_search(console: Console, search: PlanSearch, *, name: str, objective: str, top: int,
                 tokens: float | None, gpu_hour_usd: Any, budget_usd: float | None) -> None:
    """The search's counts, the ranking, the best plan's breakdown and flags, and what was left out."""
    over = f" over {search.n_fleets} fleets" if search.n_fleets > 1 else ""
    console.print(f"[bold]{name}[/bold]: {search.n_enumerated} plans enumerated{over}, {search.n_fit} fit in "
                  f"memory, {search.n_estimated} estimated, {search.n_simulated} simulated "
                  f"({sum(search.seconds.values()):.1f} s)", highlight=False, soft_wrap=True)
    if search.smaller_fleets:
        console.print(f"Also searched on fewer GPUs: {', '.join(f'{n:,}' for n in search.smaller_fleets)} (whole "
                      "nodes; the idle GPUs are paid for and draw idle power)", highlight=False, soft_wrap=True)
    console.print(ranking_table(search, objective, top, tokens, gpu_hour_usd, wide=console.width >= WIDE_COLUMNS))
    console.print(breakdown_table(search.best))
    best = band_of(search.best)
    if best is not None:
        console.print(f"Best plan's P10-P90 band: {band_caption(best)}", highlight=False, soft_wrap=True)
        if best.warning:
            console.print(f"[bold yellow]warning:[/bold yellow] {best.warning}", highlight=False, soft_wrap=True)
    _print_flags_and_misses(console, search, budget_usd)


def ranking_table(search: PlanSearch, objective: str, top: int, tokens: float | None, gpu_hour_usd: Any, *,
                  wide: bool) -> Table:
    """The best ``top`` simulated plans, one row each; ``wide``: a column per plan field."""
    unit = search.objective_unit
    results = search.results[:top]
    batch = (f", per token over global batches {search.batch_range[0]:,}..{search.batch_range[1]:,}"
             if search.batch_range else "")
    table = Table(title=f"Best plans by {objective} ({unit}){batch}, ranked by simulation", title_justify="left")
    training = tuple(c for c, on in (("train h", tokens and objective != "time-to-train"),
                                     ("train USD", tokens and gpu_hour_usd)) if on)
    objective_col = () if objective == "throughput" else (unit,)  # throughput is the tokens/s column
    plan_cols = _plan_columns(search, results) if wide else ("plan",)
    for col in ("#", *plan_cols, *training, "step s", "P10-P90 s", "tokens/s", "MFU", "mem/free GB", *objective_col):
        left = col in ("plan", "recompute", "order", "GPU")
        table.add_column(col, justify="left" if left else "right", no_wrap=col != "plan",
                         ratio=1 if col == "plan" else None)
    for i, r in enumerate(results, 1):
        money = tuple(f"{r.training_hours:,.1f}" if c == "train h" else f"{r.training_cost_usd:,.0f}" for c in training)
        cells = _plan_cells(r, plan_cols) if wide else (_plan_text(r, several=search.n_fleets > 1,
                                                                    batch=bool(search.batch_range)),)
        b = band_of(r)
        spread = f"{b.step_time_s[0]:.3f}-{b.step_time_s[1]:.3f}" if b else ""
        table.add_row(str(i), *cells, *money, f"{r.step_time_s:.3f}", spread, f"{r.tokens_per_s:,.0f}", f"{r.mfu:.1%}",
                      f"{r.memory_GB:.1f} / {r.headroom_GB:.1f}", *(f"{r.objective:.4g}" for _ in objective_col))
    return table


def _plan_columns(search: PlanSearch, results: list[PlanResult]) -> tuple[str, ...]:
    fleet = ("GPUs", "GPU") if search.n_fleets > 1 else ()
    used = ("GPUs used",) if any(r.booked > r.plan.n_gpus for r in results) else ()
    cp = ("CP",) if any(r.plan.cp > 1 for r in results) else ()
    batch = ("batch",) if search.batch_range else ()
    return (*fleet, *used, "TP", *cp, "PP", "DP", "VPP", "mb", *batch, "SP", "recompute", "ZeRO", "order")


def _plan_cells(r: PlanResult, columns: tuple[str, ...]) -> tuple[str, ...]:
    p = r.plan
    values = {"GPUs": f"{r.booked:,}", "GPU": r.gpu, "GPUs used": f"{p.n_gpus:,}", "batch": f"{p.global_batch:,}", "TP": str(p.tp), "CP": str(p.cp), "PP": str(p.pp),
              "DP": str(p.dp), "VPP": str(p.vpp), "mb": str(p.micro_batch),
              "SP": "on" if p.sequence_parallel else "off", "recompute": p.recompute, "ZeRO": str(p.zero_stage),
              "order": ",".join(p.placement)}
    return tuple(values[c] for c in columns)


def _plan_text(r: PlanResult, *, several: bool, batch: bool = False) -> str:
    """The plan in one wrapping cell: the fleet (when several are ranked), the GPUs it uses of it
    (when fewer), then its sizes and options."""
    p = r.plan
    parts = [f"{r.booked:,} x {r.gpu}"] if several else []
    parts += [f"on {p.n_gpus:,} of {r.booked:,} GPUs"] if r.booked > p.n_gpus else []
    parts += [f"batch {p.global_batch:,}"] if batch else []
    parts += [f"TP {p.tp}", *([f"CP {p.cp}"] if p.cp > 1 else []), f"PP {p.pp}", f"DP {p.dp}",
              *([f"VPP {p.vpp}"] if p.vpp > 1 else []), f"mb {p.micro_batch}",
              *(["SP"] if p.sequence_parallel else []), f"recompute {p.recompute}", f"ZeRO {p.zero_stage}",
              f"order {','.join(p.placement)}"]
    return " ".join(parts)


def breakdown_table(best: PlanResult) -> Table:
    bd = Table(title="Best plan: where the step time goes (mean over stages)", title_justify="left")
    bd.add_column("category")
    bd.add_column("seconds", justify="right")
    bd.add_column("share", justify="right")
    for k, v in best.breakdown_s.items():
        bd.add_row(k, f"{v:.3f}", f"{v / best.step_time_s:.1%}")
    return bd


def _print_flags_and_misses(console: Console, search: PlanSearch, budget_usd: float | None) -> None:
    """The best plan's Megatron-LM flags, the nearest memory misses, and what else was left out."""
    best = search.best
    if best.megatron_flags is not None:
        console.print("[bold]Megatron-LM flags:[/bold] " + " ".join(best.megatron_flags), highlight=False,
                      soft_wrap=True)
    else:
        console.print(f"[bold]Megatron-LM flags:[/bold] none ({best.megatron_note})", highlight=False,
                      soft_wrap=True)
    if search.discarded:
        console.print(f"[bold]Discarded for memory[/bold] ({len(search.discarded)}; nearest misses):")
        misses: dict[str, int] = {}  # plans differing only in what memory does not depend on share a line
        for d in search.discarded:
            p = d.plan
            cp = f" CP {p.cp}" if p.cp > 1 else ""
            line = (f"  {p.n_gpus} x {d.gpu}: TP {p.tp}{cp} PP {p.pp} DP {p.dp} VPP {p.vpp} mb {p.micro_batch} "
                    f"SP {'on' if p.sequence_parallel else 'off'} {p.recompute} ZeRO {p.zero_stage}: needs "
                    f"{d.needed_GB:.2f} GB of {d.capacity_GB:.1f} GB (stage {d.stage})")
            if line in misses or len(misses) < 5:
                misses[line] = misses.get(line, 0) + 1
        for line, n in misses.items():
            console.print(line + (f" [{n} plans: other rank orders or schedules]" if n > 1 else ""), highlight=False,
                          soft_wrap=True)
    if search.over_budget:
        console.print(f"{len(search.over_budget)} simulated plans cost more than {budget_usd:,.0f} USD to train "
                      "(left out of the ranking)", highlight=False, soft_wrap=True)
    if search.errors:
        console.print(f"[yellow]{len(search.errors)} plans could not be simulated[/yellow]; first: "
                      f"{search.errors[0][1]}", highlight=False, soft_wrap=True)


def search_csv(search: PlanSearch, top: int) -> str:
    """The ranking as CSV, best first: rank, the plan's fields, the numbers in SI units (``*_s``
    breakdown columns), and the Megatron-LM flags as one space-separated cell."""
    rows = []
    for rank, r in enumerate(search.results[:top], 1):
        row = r.row()
        breakdown = row.pop("breakdown_s")
        flags = row.pop("megatron_flags")
        rows.append({"rank": rank, **row, **band_columns(band_of(r)), **{f"{k}_s": v for k, v in breakdown.items()},
                     "megatron_flags": " ".join(flags) if flags is not None else ""})
    buf = io.StringIO()
    pd.DataFrame(rows).to_csv(buf, index=False)
    return buf.getvalue()


def search_json(search: PlanSearch, top: int) -> str:
    """The ranking as a JSON document (strict JSON: no NaN or infinity)."""
    doc = search.to_dict(top)
    for plan, r in zip(doc["plans"], search.results[:top]):
        b = band_of(r)
        plan["band"] = b.to_dict() if b is not None else None
    return json.dumps(doc, indent=2, default=str, allow_nan=False) + "\n"


def band_of(r: PlanResult) -> Band | None:
    """The plan's P10-P90 band (:mod:`simulator.results.band`), from its simulated step."""
    return r.result.band if r.result is not None else None


def band_columns(b: Band | None) -> dict[str, Any]:
    """A band as flat CSV columns (SI units: seconds, tokens/s, bytes per GPU); empty without one."""
    if b is None:
        return {k: None for k in ("band_step_time_lo_s", "band_step_time_hi_s", "band_tokens_per_s_lo",
                                  "band_tokens_per_s_hi", "band_memory_lo_bytes", "band_memory_hi_bytes",
                                  "band_level", "band_calibrated", "band_warning")}
    return {"band_step_time_lo_s": b.step_time_s[0], "band_step_time_hi_s": b.step_time_s[1],
            "band_tokens_per_s_lo": b.tokens_per_s[0], "band_tokens_per_s_hi": b.tokens_per_s[1],
            "band_memory_lo_bytes": b.memory_bytes[0], "band_memory_hi_bytes": b.memory_bytes[1],
            "band_level": b.level, "band_calibrated": b.calibrated, "band_warning": b.warning}
