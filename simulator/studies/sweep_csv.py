"""The CSV of a sweep: one row per finished variant, appended as it finishes and read back to
resume. Every row is one whole, flushed line, so a sweep killed at any moment leaves a file
whose complete rows are kept and whose cut-off last line is dropped on the next run.

A sweep only ever resumes its own output: every row names the sweep that wrote it (the
``sweep`` column, see :data:`OWNER_COLUMNS`), and an existing file without those columns, or
with rows of another sweep, is refused rather than adopted and rewritten."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from simulator.core.atomic import atomic_write
from simulator.core.errors import InputError

OWNER_COLUMNS = ("id", "status", "inputs_sha256", "sweep")
"""The columns every sweep output has: the variant id, its status, the key of its inputs and
the sweep file that wrote the row (its file name)."""

_WHAT_TO_DO = "pick another --output (or 'output' in the sweep file) or delete the file"


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


def _read_text(path: Path) -> str:
    try:
        with open(path, newline="") as f:
            return f.read()
    except UnicodeDecodeError:
        raise InputError(f"is not a text CSV, so not the output of a sweep; {_WHAT_TO_DO}", file=path) from None


def read_done(path: Path) -> tuple[list[str] | None, list[list[str]], bool]:
    """The header and the complete rows of an existing output, and whether the file needs
    rewriting (a truncated last line, a malformed or repeated row)."""
    if not path.exists():
        return None, [], False
    text = _read_text(path)
    dirty = False
    if text and not text.endswith("\n"):  # the last write was cut off
        text = text[: text.rfind("\n") + 1]
        dirty = True
    lines = text.split("\n")[:-1]  # every line ends with a newline (not splitlines: \r, \x0b, ...)
    if not lines:
        return None, [], dirty
    try:
        header = next(csv.reader([lines[0]]), [])
    except csv.Error:  # e.g. a NUL byte: not a CSV trainsim wrote
        header = []
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


def check_owner(path: Path, header: list[str] | None, rows: list[list[str]], sweep: str) -> None:
    """Refuse an existing file that is not the output of the sweep file named ``sweep``: its
    header lacks one of :data:`OWNER_COLUMNS`, or a row was written by another sweep. A file
    that does not exist or is empty is fine (there is nothing to lose)."""
    if header is None:
        return
    missing = [c for c in OWNER_COLUMNS if c not in header]
    if missing:
        raise InputError(f"is not the output of a trainsim sweep (no column {', '.join(missing)}); {_WHAT_TO_DO}",
                         file=path)
    at = header.index("sweep")
    others = sorted({r[at] for r in rows} - {sweep})
    if others:
        raise InputError(f"holds the rows of the sweep {others[0]}, not of {sweep}; {_WHAT_TO_DO}", file=path)


class CsvSink:
    """Appends rows to the output CSV, one whole flushed line per row, header once.

    The columns are fixed when the file is opened; a row with a column the file lacks
    makes the file be rewritten (atomically) with that column added, so rows always align.
    ``found`` holds the rows the file had when opened, by id (column -> cell text).
    With ``sweep`` (a sweep file name) the file must be that sweep's output (:func:`check_owner`).
    """

    def __init__(self, path: Path, columns: list[str], *, sweep: str | None = None):
        self.path = path
        if not path.parent.is_dir():
            raise InputError(f"the folder of {path} does not exist", field="output")
        header, rows, dirty = read_done(path)
        if sweep is not None:
            check_owner(path, header, rows, sweep)
        self.found = {r[0]: dict(zip(header or [], r)) for r in rows}
        self.columns = list(dict.fromkeys([*(header or []), *columns]))
        if header is None or dirty or self.columns != header:
            self._rewrite(rows, len(header or []))
        self._f = open(path, "a", newline="")  # noqa: SIM115 - closed in close()

    def _rewrite(self, rows: list[list[str]], width: int) -> None:
        """Write the header and ``rows`` (``width`` cells each, padded to the columns) atomically."""
        with atomic_write(self.path) as f:
            f.write(_line(self.columns))
            for r in rows:
                f.write(_line([*r, *[""] * (len(self.columns) - width)]))

    def _reopen(self, new_columns: list[str], drop: Collection[str] = ()) -> None:
        """Rewrite the file with ``new_columns`` added and the rows of ids ``drop`` left out."""
        self._f.close()
        header, rows, _ = read_done(self.path)
        self.columns = [*self.columns, *new_columns]
        self._rewrite([r for r in rows if r[0] not in drop], len(header or []))
        self._f = open(self.path, "a", newline="")  # noqa: SIM115

    def append(self, row: Mapping[str, Any]) -> None:
        new = [k for k in row if k not in self.columns]
        if new:
            self._reopen(new)
        self._f.write(_line([row.get(c) for c in self.columns]))
        self._f.flush()

    def forget(self, ids: Collection[str]) -> None:
        """Remove the rows of ``ids`` from the file (atomically), so they can be written anew."""
        if ids:
            self._reopen([], drop=set(ids))

    def close(self) -> None:
        self._f.close()


def read_results(path: str | Path) -> pd.DataFrame:
    """An output CSV as a DataFrame, floats read back exactly, ids and hashes as text."""
    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}  # 3: the default
    text = {c: str for c in OWNER_COLUMNS}  # an id of 12 decimal digits stays text
    return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=text, **exact)
