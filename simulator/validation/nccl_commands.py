"""``trainsim validate`` and ``trainsim calibrate`` on nccl-tests files.

An nccl-tests file is recognised by its header (:data:`~simulator.validation.collectives.NCCL_COLUMNS`,
the columns of the reference set's ``nccl.csv``). ``validate`` compares it collective by
collective (:func:`simulator.validation.collectives.compare`); ``calibrate`` fits the network
correction on such files (:mod:`simulator.validation.nccl_fit`) and keeps the compute
parameters. Bad input raises :class:`~simulator.core.errors.InputError`; the CLI prints it.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table

from simulator.core.atomic import write_text_atomically
from simulator.core.errors import InputError, TrainsimError
from simulator.inputs.efficiency_file import default_efficiency, efficiency_to_dict, load_efficiency
from simulator.network.efficiency import NOMINAL
from simulator.validation.collectives import compare, compare_prepared, mape_pct, read_nccl_csv, summary
from simulator.validation.nccl_fit import NcclFit, nccl_files, provenance
from simulator.validation.nccl_fit import calibrate as fit_nccl
from simulator.validation.published import write_csv_atomically

MiB = 1 << 20
NOTHING_COMPARED = 3
"""Exit code of ``validate`` when no row of the file could be compared (as for throughput files)."""


def kind_of(paths: Sequence[str]) -> str:
    """``"nccl"`` if every file is an nccl-tests file, ``"throughput"`` if none is (or one cannot
    be read: the throughput reader names it); InputError for a mix."""
    try:
        flags = nccl_files(paths)
    except InputError:
        return "throughput"
    if all(flags):
        return "nccl"
    if any(flags):
        nccl = ", ".join(p for p, f in zip(paths, flags) if f)
        other = ", ".join(p for p, f in zip(paths, flags) if not f)
        raise InputError(f"nccl-tests files ({nccl}) and throughput files ({other}) cannot be calibrated together; "
                         "run `trainsim calibrate` once for each kind", field="CASES")
    return "throughput"


def summary_table(compared: pd.DataFrame, title: str) -> Table:
    """:func:`~simulator.validation.collectives.summary` as a table."""
    table = Table(title=title, title_justify="left")
    for col in ("collective", "size", "scale", "rows", "MAPE %", "median |err| %", "mean err %"):
        table.add_column(col, justify="left" if col in ("collective", "size", "scale") else "right")
    for r in summary(compared).itertuples():
        table.add_row(r.collective, r.size_range, r.scale, str(int(r.count)),
                      *(f"{x:.1f}" for x in (r.mape_pct, r.median_abs_err_pct, r.mean_err_pct)))
    return table


def rows_table(compared: pd.DataFrame, title: str) -> Table:
    """One line per row of :func:`~simulator.validation.collectives.compare`'s result."""
    table = Table(title=title, title_justify="left")
    for col in ("case_id", "collective", "GPUs", "nodes", "bytes", "algo/proto", "published", "predicted",
                "error %", "status"):
        table.add_column(col, justify="left" if col in ("case_id", "collective", "algo/proto", "status") else "right")

    def num(x: float, fmt: str = ".4g") -> str:
        return "" if x != x else format(x, fmt)

    for r in compared.itertuples():
        ok = r.status == "ok"
        table.add_row(str(r.case_id), str(r.collective), str(r.n_gpus), str(r.n_nodes), num(r.message_bytes),
                      f"{r.algorithm}/{r.protocol}" if ok else "", num(r.published), num(r.predicted) if ok else "",
                      num(r.error_pct, "+.1f") if ok else "", r.status)
    return table


def _errors_line(title: str, compared: pd.DataFrame) -> str:
    return (f"{title}: MAPE {mape_pct(compared, MiB):.1f} % at >= 1 MiB, {mape_pct(compared):.1f} % over all sizes "
            f"({int((compared.status == 'ok').sum())} of {len(compared)} rows compared)")


def validate(path: str, out: str | None, efficiency: str | None, console: Console) -> int:
    """Compare an nccl-tests file; print the rows and the summary, write ``out``; the exit code."""
    eff = (load_efficiency(efficiency) if efficiency else default_efficiency()).network
    try:
        compared = compare(read_nccl_csv(path), eff)
    except InputError as err:
        raise err.with_file(path) from None
    if out:
        write_csv_atomically(compared, out)
    console.print(rows_table(compared, f"{path}: busbw predicted (NCCL's tuner, corrected) vs measured, GB/s"))
    console.print(summary_table(compared, "Summary: busbw error per collective x size x scale"))
    console.print(_errors_line("all rows", compared), highlight=False)
    if out:
        console.print(f"written: {out}", highlight=False)
    if (compared.status == "ok").any():
        return 0
    Console(stderr=True).print(f"[bold red]error:[/bold red] {path}: none of the {len(compared)} rows could be compared; "
                               f"the most common reason: {compared.status.value_counts().index[0]}",
                               highlight=False, soft_wrap=True)
    return NOTHING_COMPARED


def efficiency_document(base, result: NcclFit, record: dict) -> dict:
    """The efficiency file layout of ``base`` with the fitted network section and its record."""
    return efficiency_to_dict(dataclasses.replace(base, network=result.efficiency, network_fit=record))


def calibrate(paths: Sequence[str], out: str | None, loso: bool, efficiency: str | None, console: Console,
              log=None) -> int:
    """Fit the network correction on nccl-tests files; print the errors (before / after / LOSO),
    write ``out`` (the efficiency file with the fitted network section); the exit code."""
    base = load_efficiency(efficiency) if efficiency else default_efficiency()
    try:
        result = fit_nccl(paths, base.network, loso=loso, log=log)
    except InputError as err:
        raise err.with_file(", ".join(paths)) from None
    command = " ".join(["trainsim calibrate", *paths, *(["--loso"] if loso else []),
                        *([f"--efficiency {efficiency}"] if efficiency else []), *([f"--out {out}"] if out else [])])
    record = provenance(paths, result, base.network, command=command)
    console.print("[bold]fitted network correction[/bold]: " + ", ".join(
        f"{k}={v}" for k, v in record["parameters"].items()), highlight=False)
    nominal = compare_prepared(result.table, result.prepared, NOMINAL)
    tables = [("NCCL uncorrected", nominal), ("in-sample", result.in_sample)]
    if result.loso is not None:
        tables.append(("leave-one-source-out", result.loso))
    for title, tab in tables:
        console.print(summary_table(tab, f"{title}: busbw error per collective x size x scale"))
        console.print(_errors_line(title, tab), highlight=False)
    if out:
        header = ("# trainsim efficiency parameters; the network section fitted by `trainsim calibrate` on nccl-tests "
                  "files (record: network_fit).\n"
                  "# Meanings and units: simulator/hardware/compute.py, network/efficiency.py, hardware/power.py.\n")
        document = efficiency_document(base, result, record)
        write_text_atomically(header + yaml.safe_dump(document, sort_keys=False, width=100), out)
        console.print(f"written: {out}", highlight=False)
    return 0


def run_if_nccl(command: str, paths: Sequence[str], out: str | None, efficiency: str | None, loso: bool = False, *,
                check, fail) -> int | None:
    """Run ``command`` ("validate" or "calibrate") on ``paths`` if they are nccl-tests files and
    return its exit code; None for throughput files. ``check(out, "--out")`` refuses a bad
    output path first; ``fail(err)`` reports an :class:`~simulator.core.errors.TrainsimError`
    (the CLI's one-line error and exit code)."""
    try:
        if kind_of(paths) != "nccl":
            return None
        check(out, "--out")
        console = Console()
        if command == "validate":
            return validate(paths[0], out, efficiency, console)
        log = Console(stderr=True)
        return calibrate(paths, out, loso, efficiency, console, log=lambda msg: log.print(f"[dim]{msg}[/dim]"))
    except TrainsimError as err:
        fail(err)
        return None
