"""Command line: ``trainsim run [SCENARIO] [--json]``.

Errors a user can fix (an :class:`~simulator.core.errors.InputError`) are printed as
one message naming the file and field, with exit code 2; nothing is written.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from simulator.core.errors import InputError, SimulationError, TrainsimError
from simulator.core.version import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="trainsim: simulate distributed LLM training before you book the hardware.")
err_console = Console(stderr=True)
DEFAULT_SCENARIO = "gpt3-175b-1024-a100"  # = inputs.scenario's; commands import the heavy modules (fast --help)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"trainsim {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                        help="Print the version and exit.")) -> None:
    """trainsim: simulate distributed LLM training before you book the hardware."""


def _check_output_file(path: str | None, option: str) -> None:
    """Refuse, before any work is done, an output file that could not be written."""
    if path is None:
        return
    if Path(path).is_dir():
        raise InputError(f"{path} is a folder; give a file name", field=option)
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise InputError(f"the folder of {path} does not exist", field=option)
    _check_writable(folder, option)


def _check_writable(folder: Path, option: str) -> None:
    """Refuse a folder in which no file can be created (outputs are written to a temporary file
    there first, then renamed: :mod:`simulator.core.atomic`)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise InputError(f"cannot write in {folder} ({err.strerror or err}); give a folder you can write to",
                         field=option) from None


def _progress_bar(bars: contextlib.ExitStack, note: str):
    """Say on stderr what makes a long step slow, and show its progress there (closed by ``bars``)."""
    from rich.progress import Progress

    err_console.print(f"[yellow]{note}[/yellow]", highlight=False, soft_wrap=True)
    bar = bars.enter_context(Progress(console=err_console, transient=True))
    task = bar.add_task("simulating the step (compute passes)", total=None)
    return lambda done, total: bar.update(task, completed=done, total=total)


def _json(document: dict) -> str:
    """Strict JSON (no NaN or infinity, which JSON does not have)."""
    try:
        return json.dumps(document, indent=2, allow_nan=False) + "\n"
    except ValueError as err:
        raise SimulationError(f"the result holds a non-finite number ({err}); this is a bug in trainsim, "
                              "please report it with the scenario") from None


def _validation_inputs(cases: str, out: str | None, hardware: str | None, efficiency: str | None):
    """The validation cases, GPU catalog and efficiency of a command; refuses a bad output path before any work."""
    from simulator.hardware.catalog import load_catalog
    from simulator.inputs.efficiency_file import default_efficiency, load_efficiency
    from simulator.validation.cases import read_cases

    try:
        _check_output_file(out, "--out")
        return (read_cases(cases), load_catalog(hardware),
                load_efficiency(efficiency) if efficiency else default_efficiency())
    except TrainsimError as err:
        _fail(err)


EFFICIENCY_HELP = ("Efficiency parameters YAML (layout of simulator/inputs/efficiency.yaml, e.g. from `trainsim calibrate "
                   "--out`, or just the values to change); default: the packaged ones.")

BAD_INPUT = 2
"""Exit code of a command refused for its input (one line on stderr names the file and field; nothing written)."""
NOTHING_SIMULATED = 3
"""Exit code of ``trainsim validate`` when no row could be simulated (the table and ``--out`` still give each row's reason)."""


def _fail(err: Exception) -> None:
    err_console.print(f"[bold red]error:[/bold red] {err}", highlight=False, soft_wrap=True)
    raise typer.Exit(BAD_INPUT)


@app.command()
def run(
    scenario: str = typer.Argument(DEFAULT_SCENARIO, help="Scenario YAML file, or the name of a bundled scenario."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON (keys documented in the README)."),
    hardware: Optional[str] = typer.Option(None, "--hardware", help="User GPU catalog YAML (overrides the scenario's)."),
    efficiency: Optional[str] = typer.Option(None, "--efficiency", help=EFFICIENCY_HELP + " Overrides the "
                                             "scenario's efficiency_file."),
    mode: Optional[str] = typer.Option(None, "--mode", help="'representative' or 'full' (every DP replica)."),
    trace: Optional[str] = typer.Option(None, "--trace", help="Write the step's timeline to this Chrome trace JSON "
                                        "(open in ui.perfetto.dev or chrome://tracing)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write timeline, breakdown and memory figures "
                                        "(PNG and SVG) to this folder (created if missing)."),
) -> None:
    """Simulate one optimizer step of SCENARIO and report where the time goes."""
    from simulator.inputs.scenario import load_scenario
    from simulator.results.assemble import simulate
    from simulator.results.report import print_report

    try:
        _check_output_file(trace, "--trace")
        if plot is not None:
            if plot.exists() and not plot.is_dir():
                raise InputError(f"{plot} is a file; give a folder for the figures", field="--plot")
            try:
                plot.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise InputError(f"cannot create the folder {plot}: {err.strerror}", field="--plot") from err
            _check_writable(plot.resolve(), "--plot")
        sc = load_scenario(scenario)
        changes = {}
        if hardware:
            changes["hardware_file"] = str(Path(hardware).resolve())
        if efficiency:
            changes["efficiency_file"] = str(Path(efficiency).resolve())
        if mode:
            changes["simulation"] = {"mode": mode}
        if changes:
            sc = sc.with_(**changes)
        with contextlib.ExitStack() as bars:
            result = simulate(sc, record_timeline=bool(trace) or plot is not None,
                              slow=lambda note: _progress_bar(bars, note))
        document = _json(result.to_dict()) if as_json else None
    except TrainsimError as err:
        _fail(err)
    if as_json:
        sys.stdout.write(document)
    else:
        print_report(result)
    if trace:
        from simulator.core.atomic import write_text_atomically
        from simulator.results.trace import chrome_trace

        write_text_atomically(json.dumps(chrome_trace(result), allow_nan=False), trace)
        if not as_json:
            err_console.print(f"trace written: {trace} (open in ui.perfetto.dev or chrome://tracing)")
    if plot is not None:
        from simulator.results.plots import write_plots

        out = err_console if as_json else Console()  # keep stdout valid JSON
        for path in write_plots(result, plot):
            out.print(f"written: {path}", highlight=False, soft_wrap=True)


@app.command()
def validate(
    cases: str = typer.Argument(..., help="CSV of published measurements (trainsim's validation format)."),
    out: Optional[str] = typer.Option(None, "--out", help="Write one row per case to this CSV."),
    hardware: Optional[str] = typer.Option(None, "--hardware", help="User GPU catalog YAML (adds or overrides GPUs)."),
    efficiency: Optional[str] = typer.Option(None, "--efficiency", help=EFFICIENCY_HELP),
    plot: Optional[str] = typer.Option(None, "--plot", help="Write predicted vs published per metric, coloured by "
                                       "source, to this figure (.png, .svg or .pdf)."),
) -> None:
    """Re-simulate published measurements (or compare an nccl-tests file) and report predicted vs published."""
    from rich.progress import Progress

    from simulator.results.parity import figure_format, write_parity
    from simulator.results.report import error_table
    from simulator.validation.nccl_commands import run_if_nccl
    from simulator.validation.published import summary, write_csv_atomically
    from simulator.validation.published import validate as run_validation

    if (code := run_if_nccl("validate", [cases], out, efficiency, check=_check_output_file, fail=_fail)) is not None:
        raise typer.Exit(code)
    try:
        if plot is not None:
            _check_output_file(plot, "--plot")
            figure_format(plot)
    except TrainsimError as err:
        _fail(err)
    df, catalog, eff = _validation_inputs(cases, out, hardware, efficiency)
    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("simulating cases", total=len(df))
        results = run_validation(df, catalog=catalog, efficiency=eff,
                                 progress=lambda done, total: bar.update(task, completed=done))
    if out:
        write_csv_atomically(results, out)
    if plot:
        write_parity(results, plot)
    console = Console()
    table = Table(title=f"{cases}: predicted vs published", title_justify="left")
    for col in ("case_id", "metric", "published", "predicted", "error %", "status"):
        table.add_column(col, justify="right" if col in ("published", "predicted", "error %") else "left")
    for r in results.itertuples():
        table.add_row(str(r.case_id), str(r.metric), f"{r.published:.4g}",
                      "" if r.status != "ok" else f"{r.predicted:.4g}",
                      "" if r.status != "ok" else f"{r.error_pct:+.1f}", r.status)
    console.print(table)
    console.print(error_table(summary(results), "Summary: absolute % error over rows simulated (failed rows above)"))
    console.print("tflops_per_gpu: by the FLOP formula of each row's framework (Megatron-LM eq. 3 with or without "
                  "its recomputation term as the source did, or 6N + 12 L h s; column 'formula' of --out); defaults "
                  "for empty cells: column 'defaults_used'.")
    held = f"{results.published.between(results.band_lo, results.band_hi).sum()} of {results.band_lo.notna().sum()}"
    console.print(f"P10-P90 bands (band_lo, band_hi of --out; docs/bands.md) hold {held} published values.")
    if not (results.status == "ok").any():
        err_console.print(f"[bold red]error:[/bold red] {cases}: none of the {len(results)} rows could be simulated; "
                          f"the most common reason: {results.status.value_counts().index[0]}", highlight=False, soft_wrap=True)
        raise typer.Exit(NOTHING_SIMULATED)


@app.command()
def calibrate(
    cases: list[str] = typer.Argument(..., help="CSVs of published measurements to fit on (the calibration set)."),
    out: Optional[str] = typer.Option(None, "--out", help="Write the fitted parameters (efficiency.yaml format)."),
    loso: bool = typer.Option(False, "--loso", help="Also run leave-one-source-out cross-validation."),
    hardware: Optional[str] = typer.Option(None, "--hardware", help="User GPU catalog YAML (adds or overrides GPUs)."),
    efficiency: Optional[str] = typer.Option(None, "--efficiency", help=EFFICIENCY_HELP + " The parameters not "
                                             "fitted (network, power, HBM, launch cost) are taken from it."),
) -> None:
    """Fit the efficiency parameters on CASES (or the network correction on nccl-tests files) and report errors."""
    import yaml

    from simulator.core.atomic import write_text_atomically
    from simulator.inputs.efficiency_file import efficiency_to_dict
    from simulator.results.report import error_table
    from simulator.validation.calibration import Calibration, fitted_efficiency, provenance, read_calibration_files
    from simulator.validation.nccl_commands import run_if_nccl
    from simulator.validation.published import summary

    if (code := run_if_nccl("calibrate", cases, out, efficiency, loso, check=_check_output_file, fail=_fail)) is not None:
        raise typer.Exit(code)
    _, catalog, base = _validation_inputs(cases[0], out, hardware, efficiency)
    try:
        cal = Calibration(read_calibration_files(cases), catalog=catalog, base=base,
                          log=lambda msg: err_console.print(f"[dim]{msg}[/dim]"))
        eff, table = cal.fit()
        cv = cal.leave_one_source_out() if loso else None
    except InputError as err:
        _fail(err.with_file(", ".join(cases)))
    except TrainsimError as err:
        _fail(err)
    fit = provenance(cases, cal, eff, table, cv, hardware=hardware, efficiency=efficiency)
    eff = fitted_efficiency(eff, fit)
    console = Console()
    console.print("[bold]fitted parameters[/bold]: " + ", ".join(f"{k}={v}" for k, v in fit["parameters"].items()))
    for title, tab in [("in-sample", table)] + ([("leave-one-source-out", cv)] if cv is not None else []):
        console.print(error_table(summary(tab), f"{title}: absolute % error"))
    if out:
        header = ("# trainsim efficiency parameters, written by `trainsim calibrate` (see `fit`).\n"
                  "# Meanings and units: simulator/hardware/compute.py, network/efficiency.py, hardware/power.py.\n")
        write_text_atomically(header + yaml.safe_dump(efficiency_to_dict(eff), sort_keys=False, width=100), out)
        console.print(f"written: {out}")


@app.command()
def bands(
    cases: list[str] = typer.Argument(..., help="CSVs of published measurements (the calibration files)."),
    out: Optional[str] = typer.Option(None, "--out", help="Write the band file (simulator/results/error_bands.yaml)."),
    in_sample: bool = typer.Option(False, "--in-sample", help="Residuals of `validate` at the given efficiency "
                                   "(seconds; narrower, labelled in-sample), not leave-one-source-out (minutes)."),
    min_rows: int = typer.Option(8, "--min-rows", min=1, help="Runs a regime needs, else the coarser level is used."),
    min_sources: int = typer.Option(4, "--min-sources", min=1, help="Sources a regime needs, likewise."),
    hardware: Optional[str] = typer.Option(None, "--hardware", help="User GPU catalog YAML (adds or overrides GPUs)."),
    efficiency: Optional[str] = typer.Option(None, "--efficiency", help=EFFICIENCY_HELP),
) -> None:
    """P10-P90 error bands per regime (framework x GPU generation x parallelism family) from CASES' residuals."""
    from simulator.results.report import bands_table
    from simulator.validation.bands import build_bands, write_bands

    tables = [_validation_inputs(path, out, hardware, efficiency) for path in cases]
    options = {"--hardware": hardware, "--efficiency": efficiency, "--out": out}
    command = " ".join(["trainsim bands", *cases, *(["--in-sample"] if in_sample else []), f"--min-rows {min_rows}",
                        f"--min-sources {min_sources}", *(f"{k} {v}" for k, v in options.items() if v)])
    try:
        doc, _ = build_bands([t[0] for t in tables], cases, catalog=tables[0][1], efficiency=tables[0][2],
                             in_sample=in_sample, min_rows=min_rows, min_sources=min_sources, command=command,
                             log=lambda msg: err_console.print(f"[dim]{msg}[/dim]"))
    except TrainsimError as err:
        _fail(err)
    console = Console()
    (console if console.is_terminal else Console(width=160)).print(bands_table(doc))  # a pipe: no squeezing
    if out:
        write_bands(doc, out)
        console.print(f"written: {out}")


SCHEDULER_OPTION = typer.Option(None, "--scheduler", help="Address of a running Dask scheduler "
                                "(e.g. tcp://host:8786); default: a local cluster for this run.")
WORKERS_OPTION = typer.Option(None, "--workers", min=1, help="Worker processes of the local Dask cluster "
                              "(default: this process on <= 2 cores or few tasks, else one per core; 1: this process).")


def _executor(scheduler: str | None, workers: int | None, tasks: int | None = None):
    """The Dask client (or ``None``: in-process) of --scheduler / --workers (simulator.studies.executor.executor)."""
    from simulator.studies.executor import executor

    if scheduler and workers:
        err_console.print("[yellow]--workers is ignored with --scheduler[/yellow]")
    return executor(scheduler, workers, tasks=tasks)


@app.command()
def plan(
    scenario: str = typer.Argument(..., help="Scenario YAML file, or the name of a bundled scenario; the plan "
                                   "fields it writes are kept fixed (see --free)."),
    objective: str = typer.Option("throughput", "--objective",
                                  help="throughput (tokens/s) | energy (J/token) | cost (USD/token) | time-to-train."),
    gpu_hour_usd: Optional[str] = typer.Option(None, "--gpu-hour-usd", help="Price of one GPU-hour in USD (cost "
                                               "objective), or one per GPU type: h100-sxm=2.5,h200=3.4."),
    tokens: Optional[float] = typer.Option(None, "--tokens", help="Training tokens (time-to-train objective; "
                                           "with it every plan shows its training hours, and cost with a price)."),
    budget_usd: Optional[float] = typer.Option(None, "--budget-usd", help="Keep plans whose training on --tokens "
                                               "costs at most this at --gpu-hour-usd."),
    top: int = typer.Option(10, "--top", min=1, help="Plans to show."),
    n_simulate: int = typer.Option(64, "--simulate", min=1,
                                   help="Plans (best first-pass estimates) to simulate event by event, per fleet."),
    free: Optional[str] = typer.Option(None, "--free", help="Plan fields to search even though the scenario writes "
                                       "them, comma-separated (tp,cp,pp,dp,vpp,micro_batch,schedule,"
                                       "sequence_parallel,recompute,zero_stage,placement), or 'all'."),
    scheduler: Optional[str] = SCHEDULER_OPTION,
    workers: Optional[int] = WORKERS_OPTION,
    gpus: Optional[str] = typer.Option(None, "--gpus", help="Fleet sizes to compare, comma-separated "
                                       "(e.g. 512,1024,2048); default: the scenario's."),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="GPU types to compare, comma-separated catalog names "
                                      "(e.g. h100-sxm,h200); default: the scenario's."),
    output_format: str = typer.Option("table", "--format", help="table (for people), csv or json (for programs)."),
    as_json: bool = typer.Option(False, "--json", help="The same as --format json."),
    global_batch: Optional[str] = typer.Option(None, "--global-batch", help="Sequences per step to search, N or "
                                               "LO..HI (e.g. 1024..4096; K/M suffixes = x1024); default: the "
                                               "scenario's. Plans then rank per token."),
    tokens_per_step: Optional[str] = typer.Option(None, "--tokens-per-step", help="The same as tokens per step, "
                                                  "e.g. 4M..16M (M = 2^20)."),
    whole_fleet: bool = typer.Option(False, "--whole-fleet", help="Only plans on every GPU (default: also on "
                                     "fewer whole nodes, the idle GPUs paid for)."),
) -> None:
    """Find the best parallel plan for SCENARIO's model on its fleet (or on each of the fleets
    given by --gpus / --gpu, ranked together)."""
    from simulator.inputs.scenario import load_scenario
    from simulator.studies.plan_options import batch_options, fleet_changes, parse_prices
    from simulator.studies.plan_report import FORMATS, print_search, search_csv, search_json
    from simulator.studies.planner import check_objective, plan_search

    output_format = "json" if as_json else output_format
    try:
        if output_format not in FORMATS:
            raise InputError(f"{output_format!r} is not a format; use one of {', '.join(FORMATS)}", field="--format")
        sc = load_scenario(scenario)
        gpu_hour_usd = parse_prices(gpu_hour_usd)
        batches = batch_options(global_batch, tokens_per_step)
        check_objective(objective, gpu_hour_usd, tokens, budget_usd)
        freed = [f.strip() for f in free.split(",") if f.strip()] if free else []
        fleets = fleet_changes(gpus, gpu)
        with _executor(scheduler, workers) as client:
            search = plan_search(sc, objective=objective, gpu_hour_usd=gpu_hour_usd, tokens=tokens,
                                 top_k=n_simulate, free=freed, fleets=fleets, budget_usd=budget_usd,
                                 client=client, smaller=not whole_fleet, **batches)
        search.best  # noqa: B018 - raises the reason when no plan could be simulated, before printing
    except TrainsimError as err:
        _fail(err)
    except OSError as err:  # e.g. no scheduler at that address
        _fail(InputError(f"cannot connect or start the cluster: {err}", field="--scheduler" if scheduler else None))
    if output_format == "json":
        sys.stdout.write(search_json(search, top))
    elif output_format == "csv":
        sys.stdout.write(search_csv(search, top))
    else:
        print_search(Console(), search, name=sc.name, objective=objective, top=top, tokens=tokens,
                     gpu_hour_usd=gpu_hour_usd, budget_usd=budget_usd)


@app.command("list")
def list_things() -> None:
    """List bundled scenarios, topologies, model presets and GPUs."""
    from simulator.hardware.catalog import load_catalog
    from simulator.inputs.scenario import bundled_scenarios
    from simulator.network.topology import bundled_topologies
    from simulator.workload.loading import preset_names

    console = Console()
    console.print("[bold]scenarios:[/bold] " + ", ".join(bundled_scenarios()))
    console.print("[bold]topologies:[/bold] " + ", ".join(bundled_topologies()))
    console.print("[bold]models:[/bold] " + ", ".join(preset_names()))
    console.print("[bold]gpus:[/bold] " + ", ".join(load_catalog().names()))


@app.command()
def sweep(
    sweep_file: str = typer.Argument(..., metavar="SWEEP.yaml", help="Sweep file: a base scenario and the grid "
                                     "and/or variants to try (see sweeps/gpu-and-fleet.yaml)."),
    scheduler: Optional[str] = SCHEDULER_OPTION,
    workers: Optional[int] = WORKERS_OPTION,
    output: Optional[str] = typer.Option(None, "--output", help="CSV to write (default: the sweep file's "
                                         "'output', else sweep-results/<sweep file stem>.csv beside it)."),
    top: int = typer.Option(10, "--top", min=0, help="Rows to show, best tokens/s first."),
    fresh: bool = typer.Option(False, "--fresh", help="Start the output over: simulate every variant again."),
) -> None:
    """Simulate every variant of a what-if grid on Dask; rows go to a CSV as they finish, and a
    rerun skips the variants already there with the same inputs (it simulates again those whose
    base scenario, input files or trainsim version changed)."""
    import pandas as pd

    from simulator.studies.sweep import SweepInterrupted, check_output, load_sweep, run_sweep

    try:
        _check_output_file(output, "--output")
        sw = load_sweep(sweep_file, output=output)
        check_output(sw)
    except TrainsimError as err:
        _fail(err)
    console = Console()
    try:
        with _executor(scheduler, workers, tasks=len(sw.variants)) as client:
            df = run_sweep(sw, client=client, fresh=fresh)
    except SweepInterrupted as stop:
        s = stop.stats
        err_console.print(f"interrupted: {s['done']} of {s['total'] - s['skipped']} variants finished this run "
                          f"are in {s['output']}; run the same command again to go on", highlight=False)
        raise typer.Exit(130) from None
    except KeyboardInterrupt:
        err_console.print("interrupted", highlight=False)
        raise typer.Exit(130) from None
    except TrainsimError as err:
        _fail(err)
    except OSError as err:  # e.g. no scheduler at that address
        _fail(InputError(f"cannot connect or start the cluster: {err}", field="--scheduler" if scheduler else None))
    s = df.attrs
    again = (" (--fresh: all again)" if s["fresh"] else
             f", {s['recomputed']} of them recomputed because an input changed ({', '.join(s['changed'])})"
             if s["recomputed"] else "")
    console.print(f"[bold]{sw.base.name}[/bold]: {s['total']} variants; {s['done']} simulated "
                  f"({s['failed']} failed) in {s['seconds']:.1f} s{again}, {s['skipped']} skipped as already "
                  f"finished; written: {s['output']}", highlight=False, soft_wrap=True)
    if s["lost"]:
        console.print(f"[yellow]{len(s['lost'])} tasks lost by the cluster (not written; rerun to retry)[/yellow]: "
                      f"{s['lost'][0]}", highlight=False, soft_wrap=True)
    failed = df[df.status != "ok"]
    if len(failed):
        console.print(f"[yellow]{len(failed)} variants could not run[/yellow]; first ({failed.id.iloc[0]}): "
                      f"{failed.status.iloc[0]}", highlight=False, soft_wrap=True)
    ok = df[df.status == "ok"].sort_values("tokens_per_s", ascending=False).head(top)
    if top and len(ok):
        table = Table(title=f"Top {len(ok)} by tokens/s (* does not fit in memory)", title_justify="left",
                      box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        cols = ["id", *sw.keys]
        for col in [*cols, "TPxPPxDP", "step s", "tokens/s", "MFU", "mem GB"]:
            table.add_column(col, justify="left" if col in cols else "right", no_wrap=col == "id")
        for r in ok.to_dict("records"):
            table.add_row(*("" if pd.isna(r[c]) else str(r[c]) for c in cols),
                          "x".join(str(int(r[c])) for c in ("tp", "pp", "dp")), f"{r['step_time_s']:.3f}",
                          f"{r['tokens_per_s']:,.0f}", f"{r['mfu']:.1%}",
                          f"{r['memory_GB']:.1f}" + ("" if str(r["fits"]) == "True" else "*"))
        (console if console.is_terminal else Console(width=200)).print(table)  # a pipe: no squeezing


def main() -> None:
    app()


if __name__ == "__main__":
    main()
