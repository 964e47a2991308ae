"""The CSV of a sweep: one row per finished variant, appended as it finishes and read back to
resume. Every row is one whole, flushed line, so a sweep killed at any moment leaves a file
whose complete rows are kept and whose cut-off last line is dropped on the next run."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from simulator.core.atomic import atomic_write
from simulator.core.errors import InputError


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return value


def _line(values: list[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([_cell(v) for v in values])
    return buf.getvalue()


def read_done(path: Path) -> tuple[list[str] | None, list[list[str]], bool]:
    """The header and the complete rows of an existing output, and whether the file needs
    rewriting (a truncated last line, a malformed or repeated row)."""
    if not path.exists():
        return None, [], False
    with open(path, newline="") as f:
        text = f.read()
    dirty = False
    if text and not text.endswith("\n"):  # the last write was cut off
        text = text[: text.rfind("\n") + 1]
        dirty = True
    lines = text.split("\n")[:-1]  # every line ends with a newline (not splitlines: \r, \x0b, ...)
    if not lines:
        return None, [], dirty
    header = next(csv.reader([lines[0]]))
    rows, seen = [], set()
    for line in lines[1:]:
        try:
            row = next(csv.reader([line]))
        except (csv.Error, StopIteration):
            dirty = True
            continue
        if len(row) != len(header) or not row[0] or row[0] in seen:
            dirty = True
            continue
        seen.add(row[0])
        rows.append(row)
    return header, rows, dirty


class CsvSink:
    """Appends rows to the output CSV, one whole flushed line per row, header once.

    The columns are fixed when the file is opened; a row with a column the file lacks
    makes the file be rewritten (atomically) with that column added, so rows always align.
    """

    def __init__(self, path: Path, columns: list[str]):
        self.path = path
        if not path.parent.is_dir():
            raise InputError(f"the folder of {path} does not exist", field="output")
        header, rows, dirty = read_done(path)
        self.done = {r[0] for r in rows}
        self.columns = list(dict.fromkeys([*(header or []), *columns]))
        if header is not None and (dirty or self.columns != header):
            with atomic_write(path) as f:
                f.write(_line(self.columns))
                for r in rows:
                    f.write(_line([*r, *[""] * (len(self.columns) - len(header))]))
        elif header is None:
            with atomic_write(path) as f:
                f.write(_line(self.columns))
        self._f = open(path, "a", newline="")  # noqa: SIM115 - closed in close()

    def append(self, row: Mapping[str, Any]) -> None:
        new = [k for k in row if k not in self.columns]
        if new:
            self._grow(new)
        self._f.write(_line([row.get(c) for c in self.columns]))
        self._f.flush()
        self.done.add(str(row["id"]))

    def _grow(self, new: list[str]) -> None:
        self._f.close()
        header, rows, _ = read_done(self.path)
        old = len(header or self.columns)
        self.columns = [*self.columns, *new]
        with atomic_write(self.path) as f:
            f.write(_line(self.columns))
            for r in rows:
                f.write(_line([*r, *[""] * (len(self.columns) - old)]))
        self._f = open(self.path, "a", newline="")  # noqa: SIM115

    def close(self) -> None:
        self._f.close()


def read_results(path: str | Path) -> pd.DataFrame:
    """An output CSV as a DataFrame, floats read back exactly."""
    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}  # 3: the default
    return pd.read_csv(path, keep_default_na=False, na_values=[""], **exact)
