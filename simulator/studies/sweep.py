"""What-if grids from a file, run on a Dask cluster: ``trainsim sweep SWEEP.yaml``.

A sweep file names a base scenario and the changes to try::

    base: ../scenarios/llama3-70b-512-h100.yaml   # a scenario file (relative to this file) or a bundled name
    grid:                      # every combination of these values ...
      gpu: [h100-sxm, h200]
      gpus: [256, 512, 1024]
      plan.tp: [4, 8]
    variants:                  # ... and/or an explicit list of changes; with both, grid x each variant
      - {}
      - {plan.recompute: full}
    output: results.csv        # default: sweep-results/<sweep file stem>.csv beside the sweep file

Keys are scenario field paths: ``gpus``, ``gpu``, ``topology``, ``hardware_file``,
``efficiency_file``, ``model`` (a preset name or mapping), ``model.X`` (merged into the
base model's mapping or preset), ``plan.X``, ``variability.X``, ``simulation.X``,
``energy.X``. Changing ``gpus`` without ``plan.dp`` lets dp fill the new fleet. Paths given
for ``topology``, ``hardware_file`` or ``efficiency_file`` are relative to the sweep file.

Each variant has a stable id, its human name (a short hash of its sorted changes), and an
input key (``inputs_sha256``, :mod:`simulator.studies.sweep_inputs`): a hash of everything its
numbers depend on (the resolved scenario, the files it reads, the trainsim version), computed
in this process before anything is dispatched. :func:`run_sweep` simulates every variant (one Dask task
each, or serially in this process without a client) and appends each finished row to the
output CSV at once. A rerun skips the rows already in the file whose input key still matches,
so an interrupted sweep resumes where it stopped; a row whose key no longer matches (the base
scenario or an input file was edited, trainsim was upgraded) is simulated again, and
``fresh=True`` (``--fresh``) starts the output over. A variant that cannot run is a row whose
``status`` is the reason; the others are ``ok``.

The output is ``sweep-results/<sweep file stem>.csv`` in the sweep file's folder unless the
sweep file's ``output`` or ``--output`` says otherwise (``sweep-results/`` is git-ignored).
Every row names its sweep file in the ``sweep`` column; an existing output that is not this
sweep's (another sweep's, or any other CSV) is refused, never adopted or rewritten.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from simulator.core.errors import InputError, TrainsimError, from_validation_error
from simulator.core.yamlfile import parse_yaml
from simulator.inputs.scenario import (
    EnergySpec,
    PlanSpec,
    Scenario,
    SimulationSpec,
    load_scenario,
)
from simulator.studies.study import PLAN_COLUMNS, plan_row, summary_row
from simulator.studies.study import grid as grid_product
from simulator.studies.sweep_csv import CsvSink, check_owner, read_done, read_results
from simulator.studies.sweep_inputs import SCENARIO, VERSION, InputKey, InputKeys
from simulator.system.breakdown import BREAKDOWN_KEYS, COMMUNICATION
from simulator.system.variability import Variability

# --------------------------------------------------------------------------- the file

RESULTS_FOLDER = "sweep-results"
"""The folder, beside the sweep file, of the default output (created when needed)."""


class SweepSpec(BaseModel):
    """A sweep file as written."""

    model_config = ConfigDict(extra="forbid")

    base: str = Field(description="The scenario to vary: a file (relative to the sweep file) or a bundled name.")
    grid: dict[str, list[Any]] = Field(default_factory=dict,
                                       description="Field path -> values; every combination is a variant.")
    variants: list[dict[str, Any]] = Field(default_factory=list,
                                           description="Explicit changes (field path -> value), one mapping each.")
    output: str | None = Field(None, description="CSV to write (relative to the sweep file); default: "
                               f"{RESULTS_FOLDER}/<sweep file stem>.csv beside the sweep file.")

    @field_validator("grid")
    @classmethod
    def _non_empty(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        empty = [k for k, values in v.items() if not values]
        if empty:
            raise ValueError(f"'{empty[0]}' has no values; give a non-empty list")
        return v


_SECTIONS: dict[str, type[BaseModel]] = {
    "plan": PlanSpec, "variability": Variability, "simulation": SimulationSpec, "energy": EnergySpec,
}
_TOP_LEVEL = ("model", "topology", "gpus", "gpu", "hardware_file", "efficiency_file", "name", "description")
_PATH_FIELDS = ("topology", "hardware_file", "efficiency_file")

# Columns of every output row after the changed fields (PLAN_COLUMNS from simulator.studies.study first).
NUMBER_COLUMNS = (
    "step_time_s", "tokens_per_s", "mfu", "hfu", "model_tflops_per_gpu", "memory_GB", "capacity_GB", "fits",
    "energy_per_token_J", "avg_power_per_gpu_W",
    *(f"{k}_s" for k in BREAKDOWN_KEYS),
    *(f"hidden_{k}_s" for k in COMMUNICATION),
)
# The last columns: the input key, its parts (JSON: part -> short digest) and the sweep file's name.
KEY_COLUMNS = ("inputs_sha256", "inputs", "sweep")


def allowed_keys() -> list[str]:
    """Every field path a sweep may change (``model.X`` takes any model field)."""
    return [*_TOP_LEVEL, "model.<field>",
            *(f"{section}.{name}" for section, schema in _SECTIONS.items() for name in schema.model_fields)]


def _check_key(key: Any, *, file: str, where: str) -> None:
    if not isinstance(key, str):
        raise InputError(f"field paths must be strings, got {key!r}", file=file, field=where)
    if key in _TOP_LEVEL:
        return
    section, _, name = key.partition(".")
    if section == "model" and name:
        return
    if section in _SECTIONS and name in _SECTIONS[section].model_fields:
        return
    if key in PlanSpec.model_fields:
        hint = f"plan fields are written with their section: plan.{key}"
    elif key in _SECTIONS:
        hint = f"change one field at a time, e.g. {key}.{next(iter(_SECTIONS[key].model_fields))}"
    elif section in _SECTIONS:
        hint = f"{section} fields are: {', '.join(_SECTIONS[section].model_fields)}"
    else:
        hint = f"allowed: {', '.join(allowed_keys())}"
    raise InputError(f"unknown field path '{key}'; {hint}", file=file, field=f"{where}.{key}")


def variant_id(changes: Mapping[str, Any]) -> str:
    """A short stable hash of the sorted changes (the same changes always give the same id)."""
    text = json.dumps(dict(sorted(changes.items())), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def apply_changes(base: Scenario, changes: Mapping[str, Any], *, sweep_dir: Path | None = None) -> Scenario:
    """``base`` with the field-path ``changes`` of one variant (via :meth:`Scenario.with_`)."""
    flat: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    model = base.model
    model_fields: dict[str, Any] = {}
    for key, value in changes.items():
        section, _, name = key.partition(".")
        if key == "model":
            model = value
        elif section == "model":
            model_fields[name] = value
        elif section == "plan":
            flat[name] = value
        elif section in _SECTIONS:
            sections.setdefault(section, {})[name] = value
        else:
            if key in _PATH_FIELDS and sweep_dir is not None and isinstance(value, str):
                p = Path(value).expanduser()
                if not p.is_absolute() and (sweep_dir / p).exists():
                    value = str((sweep_dir / p).resolve())
            flat[key] = value
    if model_fields:
        model = ({**model} if isinstance(model, Mapping) else {"preset": model}) | model_fields
    if model is not base.model:
        flat["model"] = model
    for section, fields in sections.items():
        flat[section] = getattr(base, section).model_dump() | fields
    if "gpus" in changes and "plan.dp" not in changes:
        flat["dp"] = None  # fill the new fleet
    return base.with_(**flat) if flat else base


@dataclass(frozen=True)
class Variant:
    id: str
    changes: dict[str, Any]
    scenario: Scenario


@dataclass
class Sweep:
    """A validated sweep: the base scenario, every variant and where the rows go
    (``output_is_default``: the default output, whose folder is created when needed)."""

    file: str
    base: Scenario
    variants: list[Variant]
    keys: list[str]
    output: Path
    output_is_default: bool = False

    @property
    def name(self) -> str:
        """The sweep file's name, written in every row's ``sweep`` column."""
        return Path(self.file).name

    @property
    def columns(self) -> list[str]:
        return ["id", *self.keys, "status", *PLAN_COLUMNS, *NUMBER_COLUMNS, *KEY_COLUMNS]


def load_sweep(path: str | Path, *, output: str | Path | None = None) -> Sweep:
    """Read and validate a sweep file; every variant's scenario is built (not yet simulated).

    Raises :class:`InputError` naming the sweep file and the field (``grid.plan.tp``,
    ``variants[2].gpus``, ...). ``output`` overrides the file's ``output``.
    """
    file = str(path)
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise InputError("no such file", file=file) from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read the file ({err.__class__.__name__}: {err})", file=file) from None
    data = parse_yaml(text, file=file)
    if not isinstance(data, dict):
        raise InputError("a sweep must be a YAML mapping with 'base' and 'grid' and/or 'variants'", file=file)
    try:
        spec = SweepSpec(**data)
    except ValidationError as err:
        raise from_validation_error(err, schema=SweepSpec, file=file) from None
    except TypeError as err:
        raise InputError(str(err), file=file) from None
    if not spec.grid and not spec.variants:
        raise InputError("nothing to vary; give 'grid' (field path -> list of values) and/or 'variants'",
                         file=file, field="grid")
    for key in spec.grid:
        _check_key(key, file=file, where="grid")
    for i, changes in enumerate(spec.variants):
        for key in changes:
            _check_key(key, file=file, where=f"variants[{i}]")

    sweep_dir = p.resolve().parent
    base_path = sweep_dir / spec.base
    try:
        base = load_scenario(base_path if base_path.is_file() else spec.base)
    except InputError as err:
        if base_path.is_file() or err.file != spec.base:
            raise  # a problem inside the base scenario names that file and field
        raise InputError(f"'{spec.base}': {err.detail}", file=file, field="base") from None
    base = base.model_copy(update={"base_dir": base.base_dir.resolve()})  # workers may run elsewhere

    combos = grid_product(**spec.grid) if spec.grid else [{}]
    extra = spec.variants or [{}]
    keys = list(dict.fromkeys([*spec.grid, *(k for v in spec.variants for k in v)]))
    variants: dict[str, Variant] = {}
    for combo in combos:
        for j, more in enumerate(extra):
            changes = {**combo, **more}
            vid = variant_id(changes)
            if vid in variants:
                continue
            try:
                scenario = apply_changes(base, changes, sweep_dir=sweep_dir)
            except InputError as err:
                raise _blame(err, changes, combo, more, j if spec.variants else None, file) from None
            variants[vid] = Variant(vid, changes, scenario)
    out = Path(output) if output is not None else sweep_dir / spec.output if spec.output else None
    return Sweep(file=file, base=base, variants=list(variants.values()), keys=keys,
                 output=out or sweep_dir / RESULTS_FOLDER / f"{p.stem}.csv", output_is_default=out is None)


def _blame(err: InputError, changes: dict[str, Any], combo: dict[str, Any], more: dict[str, Any],
           j: int | None, file: str) -> InputError:
    """An error building a variant's scenario, attributed to the sweep key that caused it."""
    bad = err.field or ""
    key = next((k for k in changes if bad == k or bad.startswith(k + ".") or k.startswith(bad + ".")
                or (k.startswith("plan.") and bad == "plan")), None)
    if key is None:
        where = "grid" if combo else "variants"
    elif key in more and j is not None:
        where = f"variants[{j}].{key}"
    else:
        where = f"grid.{key}"
    return InputError(f"{err.detail} (in the variant {json.dumps(changes, default=str)})", file=file, field=where)


# --------------------------------------------------------------------------- one task


def run_variant(vid: str, scenario: Scenario) -> dict[str, Any]:
    """Simulate one variant: its row (id, status, plan, :func:`summary_row`). Never raises for a
    problem inside the simulation: ``status`` is then the message. Runs on a Dask worker."""
    from simulator.results.assemble import simulate

    row: dict[str, Any] = {"id": vid}
    try:
        result = simulate(scenario, record_timeline=False)
        row.update(status="ok", **plan_row(result), **summary_row(result))
    except TrainsimError as err:
        row["status"] = str(err)
    except Exception as err:  # noqa: BLE001 - a bug in one variant must not stop the sweep
        row["status"] = f"{err.__class__.__name__}: {err}"
    row["status"] = " ".join(str(row["status"]).split()) or "error"  # one physical CSV line
    return row


# --------------------------------------------------------------------------- running


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep: every finished row is in the output; ``stats`` says how far it got."""

    def __init__(self, stats: dict[str, Any]):
        super().__init__("sweep interrupted")
        self.stats = stats


@dataclass
class _Stats:
    output: str
    total: int
    skipped: int = 0
    recomputed: int = 0
    changed: list[str] = field(default_factory=list)
    fresh: bool = False
    done: int = 0
    failed: int = 0
    lost: list[str] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def check_output(sweep: Sweep) -> None:
    """Refuse, before any work, an output that cannot be written or is not this sweep's
    (:func:`simulator.studies.sweep_csv.check_owner`); :class:`InputError` naming the file."""
    out = sweep.output
    if out.is_dir():
        raise InputError(f"{out} is a folder; give a file name", field="output")
    if not out.parent.is_dir() and not sweep.output_is_default:
        raise InputError(f"the folder of {out} does not exist", field="output")
    header, rows, _ = read_done(out)
    check_owner(out, header, rows, sweep.name)


def _label(part: str, key: InputKey, sweep: Sweep) -> str:
    """A changed input key part as the summary names it."""
    if part == SCENARIO:
        return f"the base scenario {sweep.base.source_file}"
    if part == VERSION:
        return f"the trainsim version (now {key.parts[VERSION]})"
    return f"{part} {key.files[part]}" if part in key.files else part


def _todo(sweep: Sweep, keys: dict[str, InputKey], found: dict[str, dict[str, str]],
          stats: _Stats) -> tuple[list[Variant], list[str]]:
    """The variants to simulate (not in the file, or in it with another input key) and the ids
    of their stale rows; counts the skipped and recomputed ones and names what changed."""
    todo, stale, changed = [], [], {}
    for v in sweep.variants:
        row = found.get(v.id)
        if row is not None and row.get("inputs_sha256") == keys[v.id].sha256:
            stats.skipped += 1
            continue
        todo.append(v)
        if row is not None:
            stale.append(v.id)
            changed.update(dict.fromkeys(_label(part, keys[v.id], sweep)
                                         for part in keys[v.id].changed(row.get("inputs", ""))))
    stats.recomputed, stats.changed = len(stale), list(changed)
    return todo, stale


def _dispatch(todo: list[Variant], client: Any, record: Any, advance: Any, stats: _Stats,
              futures: list[Any]) -> None:
    """Simulate ``todo`` (serially without a client, else one Dask task each), ``record``ing
    each row as it finishes; tasks the cluster lost go to ``stats.lost``."""
    if client is None:
        for v in todo:
            record(run_variant(v.id, v.scenario))
            advance(1)
        return
    from dask.distributed import as_completed

    tag = uuid.uuid4().hex[:8]
    futures += [client.submit(run_variant, v.id, v.scenario, key=f"trainsim-sweep-{v.id}-{tag}", pure=False)
                for v in todo]
    for fut in as_completed(futures):
        if fut.status == "finished":
            record(fut.result())
        else:  # the cluster lost the task (run_variant itself never raises)
            stats.lost.append(f"{fut.key}: {fut.exception()!r}" if fut.status == "error" else
                              f"{fut.key}: {fut.status}")
        fut.release()
        advance(1)


@contextlib.contextmanager
def _progress_bar(enabled: bool, total: int) -> Iterator[Any]:
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.1f} variants/s" if speed else "- variants/s")

    with Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), Rate(), TimeElapsedColumn(),
                  TextColumn("eta"), TimeRemainingColumn(), console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task("sweep", total=total)
        yield lambda n: bar.update(task, advance=n)


def run_sweep(sweep: Sweep | str | Path, *, client: Any = None, progress: bool = True,
              output: str | Path | None = None, fresh: bool = False) -> pd.DataFrame:
    """Simulate every variant of ``sweep`` not yet in its output CSV with its current input
    key; returns the rows of this sweep's variants.

    ``client``: a ``dask.distributed.Client`` (one task per variant, rows written as tasks
    finish), or ``None`` to run serially in this process (same rows, same numbers).
    ``fresh``: start the output over (every row of the file dropped, every variant simulated).
    The frame's ``attrs`` hold ``output``, ``total``, ``skipped`` (in the file, same inputs),
    ``recomputed`` (in the file with another input key, simulated again), ``changed`` (what
    changed, e.g. ``the base scenario base.yaml``), ``fresh``, ``done`` (run now), ``failed``
    (of those, status other than ok), ``lost`` (tasks the cluster lost, e.g. a worker died;
    not written, they run again next time) and ``seconds``.
    Raises :class:`InputError` if the output is another file than this sweep's (see the module).
    Ctrl-C raises :class:`SweepInterrupted` after closing the file; every finished row is kept.
    """
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep, output=output)
    elif output is not None:
        sweep = dataclasses.replace(sweep, output=Path(output), output_is_default=False)
    check_output(sweep)
    keys = InputKeys()
    key_of = {v.id: keys.key(v.scenario) for v in sweep.variants}  # here, before anything is dispatched
    sweep.output.parent.mkdir(exist_ok=True)  # the default folder; another must exist (checked)
    sink = CsvSink(sweep.output, sweep.columns, sweep=sweep.name)
    stats = _Stats(output=str(sweep.output), total=len(sweep.variants), fresh=fresh)
    todo, stale = (sweep.variants, list(sink.found)) if fresh else _todo(sweep, key_of, sink.found, stats)
    sink.forget(stale)
    changes = {v.id: v.changes for v in todo}
    start = time.perf_counter()

    def record(row: dict[str, Any]) -> None:
        vid, key = row["id"], key_of[row["id"]]
        sink.append({"id": vid, **changes[vid], **row, "inputs_sha256": key.sha256, "inputs": key.parts,
                     "sweep": sweep.name})
        stats.done += 1
        stats.failed += row["status"] != "ok"

    futures: list[Any] = []
    try:
        with _progress_bar(progress and bool(todo), len(todo)) as advance:
            _dispatch(todo, client, record, advance, stats, futures)
    except KeyboardInterrupt:
        stats.interrupted = True
        raise SweepInterrupted(stats.as_dict()) from None
    finally:
        stats.seconds = time.perf_counter() - start
        sink.close()
        if futures and client is not None:
            with contextlib.suppress(Exception):
                client.cancel([f for f in futures if not f.done()])
    df = read_results(sweep.output)
    df = df[df.id.isin(key_of)].reset_index(drop=True)
    df.attrs.update(stats.as_dict())
    return df


__all__ = ["Sweep", "SweepInterrupted", "SweepSpec", "apply_changes", "check_output", "load_sweep",
           "read_results", "run_sweep", "run_variant", "variant_id"]
