"""The human-readable report of ``trainsim run``: rich tables, units converted for people."""

from __future__ import annotations

import math

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from simulator.results.band import Band
from simulator.results.step import StepResult
from simulator.system.breakdown import BREAKDOWN_KEYS

LABELS = {
    "forward": "forward compute",
    "backward": "backward compute",
    "recompute": "recompute",
    "optimizer": "optimizer",
    "tp_comm": "TP communication (exposed)",
    "cp_comm": "CP communication (exposed)",
    "pp_comm": "PP communication (exposed)",
    "dp_comm": "DP communication (exposed)",
    "bubble": "pipeline bubble",
    "stall": "synchronisation stall",
}

MEMORY_KEYS = ("parameters", "gradients", "optimizer", "activations", "buffers")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f}"


def _joules(j: float) -> str:
    for unit, scale in (("MJ", 1e6), ("kJ", 1e3), ("J", 1.0)):
        if j >= scale:
            return f"{j / scale:,.2f} {unit}"
    return f"{j:.3g} J"


def render(result: StepResult) -> Group:
    """All tables of the report, ready for ``Console.print``."""
    r = result
    p = r.plan
    head = Text.assemble(
        (f"{r.scenario}\n", "bold"),
        f"{r.model} on {r.n_gpus:,} x {r.gpu} ({r.topology})\n",
        f"plan: TP {p.tp}" + (f" x CP {p.cp}" if p.cp > 1 else "") + f" x PP {p.pp} x DP {p.dp}"
        + (f", VPP {p.vpp}" if p.vpp > 1 else "")
        + f", micro-batch {p.micro_batch}, global batch {p.global_batch}"
        f" ({p.n_microbatches} micro-batches), {p.schedule}, recompute {p.recompute},"
        f" ZeRO {p.zero_stage}, {p.precision}"
        + (", sequence parallel" if p.sequence_parallel else "")
        + f"; simulated in {r.mode} mode\n",
    )

    summary = Table(title="Step", show_header=False, title_justify="left")
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    summary.add_row("step time", f"{r.step_time_s:,.3f} s")
    summary.add_row("throughput", f"{r.tokens_per_s:,.0f} tokens/s")
    summary.add_row("model FLOP/s per GPU", f"{r.model_flops_per_s_per_gpu / 1e12:,.1f} TFLOP/s")
    summary.add_row("MFU / HFU", f"{r.mfu:.1%} / {r.hfu:.1%}")
    summary.add_row("energy per step", f"{_joules(r.energy_per_step_J)} (PUE {r.energy.pue:.2f})")
    summary.add_row("energy per token", f"{_joules(r.energy_per_step_J / r.tokens_per_step)}")
    summary.add_row("average power per GPU", f"{r.avg_power_per_gpu_W:,.0f} W")
    if r.band is not None:
        b = r.band
        summary.add_row("step time P10-P90", f"{b.step_time_s[0]:,.3f} - {b.step_time_s[1]:,.3f} s")
        summary.add_row("throughput P10-P90", f"{b.tokens_per_s[0]:,.0f} - {b.tokens_per_s[1]:,.0f} tokens/s")
        summary.add_row("peak memory P10-P90", f"{b.memory_bytes[0] / 1e9:,.1f} - {b.memory_bytes[1] / 1e9:,.1f} GB")
        summary.caption = "P10-P90 band: " + band_caption(b)

    bd = Table(title="Where the step time goes (mean over pipeline stages)", title_justify="left")
    bd.add_column("category")
    bd.add_column("ms", justify="right")
    bd.add_column("share", justify="right")
    for k in BREAKDOWN_KEYS:
        bd.add_row(LABELS[k], _ms(r.breakdown_s[k]), f"{r.breakdown_s[k] / r.step_time_s:.1%}")
    bd.add_row("[bold]step[/bold]", f"[bold]{_ms(r.step_time_s)}[/bold]", "100%")
    hidden = ", ".join(f"{k.split('_')[0].upper()} {_ms(v)} ms" for k, v in r.hidden_comm_s.items() if v > 0)
    bd.caption = f"communication hidden behind compute: {hidden or 'none'}"

    mem = r.memory
    mt = Table(title=f"Memory per GPU (peak stage: {mem.stage})", title_justify="left")
    mt.add_column("category")
    mt.add_column("GB", justify="right")
    for k in MEMORY_KEYS:
        mt.add_row(k, f"{getattr(mem, k) / 1e9:,.1f}")
    verdict = "[green]fits[/green]" if mem.fits else "[bold red]DOES NOT FIT[/bold red]"
    mt.add_row("[bold]total[/bold]", f"[bold]{mem.total / 1e9:,.1f}[/bold]")
    mt.add_row("capacity", f"{mem.capacity / 1e9:,.1f}")
    mt.caption = verdict

    parts = [head, summary, bd, mt]
    parts += [Text(f"note: {n}", style="yellow") for n in r.notes]
    if r.band is not None and r.band.warning:
        parts.append(Text(f"warning: {r.band.warning}; the band is the {r.band.level} level's", style="bold yellow"))
    return Group(*parts)


def print_report(result: StepResult, console: Console | None = None) -> None:
    (console or Console()).print(render(result))


def error_table(summary, title: str) -> Table:
    """A validation summary (rows per source: rows, failed, MAPE_pct, median_abs_pct, max_abs_pct)
    as a table."""
    table = Table(title=title, title_justify="left")
    for col in ("source", "rows", "failed", "MAPE %", "median %", "max %"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for name, r in summary.iterrows():
        table.add_row(str(name), str(int(r.rows)), str(int(r.failed)),
                      *(f"{x:.1f}" for x in (r.MAPE_pct, r.median_abs_pct, r.max_abs_pct)))
    return table


def band_caption(b: Band) -> str:
    """Where a band comes from, in one line (docs/bands.md)."""
    reg = b.regime
    step = ("a stated prior (no residuals)" if b.level == "prior" else
            f"{b.residuals} residuals at the {b.level} level ({b.rows} runs, {b.sources} sources)")
    memory = "a stated prior" if b.memory_level == "prior" else f"{b.memory_level} level ({b.memory_rows} runs)"
    return f"{reg.framework} / {reg.generation} / {reg.family}: {step}; memory: {memory}"


def bands_table(doc: dict) -> Table:
    """The step-time and memory quantiles of a band document (``trainsim bands``), with its coverage."""
    table = Table(title=f"Error bands ({doc['provenance']['residuals']} residuals, P10-P90 of published / "
                  f"predicted; used where at least {doc['min_rows']} runs of {doc.get('min_sources', 1)} sources)",
                  title_justify="left")
    for col in ("kind", "level", "key", "runs", "sources", "P10", "P90"):
        table.add_column(col, justify="left" if col in ("kind", "level", "key") else "right", no_wrap=col == "key")
    for kind in ("step_time", "memory"):
        for level, keys in (doc[kind].get("levels") or {}).items():
            for key, q in keys.items():
                table.add_row(kind, level, key, str(q["rows"]), str(q.get("sources", "")), f"{math.exp(q['p10']):.3f}x",
                              f"{math.exp(q['p90']):.3f}x")
    cov = doc["coverage"]
    table.caption = "; ".join(
        f"{kind}: {c['of_these_runs'][kind]['fraction']:.0%} of {c['of_these_runs'][kind]['runs']} runs inside "
        f"their band, {c['cross_validated_by_source'][kind]['fraction']:.0%} with the band built without their source"
        for kind in ("step_time", "memory") for c in [cov] if c["of_these_runs"][kind]["runs"])
    return table
