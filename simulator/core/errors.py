"""Errors a user can cause and fix.

Every problem with user input (a scenario, topology, hardware or model file, a
plan that cannot run) is raised as an :class:`InputError`. The CLI prints its
message and exits non-zero; it never shows a traceback for these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError


class TrainsimError(Exception):
    """Base class of all errors trainsim raises on purpose."""


class InputError(TrainsimError):
    """Bad user input: names the file and field (when known) and what is allowed.

    ``str(err)`` is the full human message, e.g.
    ``scenarios/x.yaml: plan.tp: 6 does not divide n_heads=96; use one of 1, 2, 3, 4, 8``.
    """

    def __init__(self, message: str, *, file: str | Path | None = None, field: str | None = None):
        self.file = str(file) if file is not None else None
        self.field = field
        self.detail = message
        prefix = ": ".join(p for p in (self.file, field) if p)
        super().__init__(f"{prefix}: {message}" if prefix else message)

    def with_file(self, file: str | Path) -> "InputError":
        """The same error, attributed to ``file`` if it names no file yet."""
        if self.file is not None:
            return self
        return InputError(self.detail, file=file, field=self.field)


class PlanError(InputError):
    """A parallel plan that cannot run (does not divide, does not fit)."""


class SimulationError(TrainsimError):
    """The simulation itself went wrong (e.g. a deadlock); names what was pending."""


def _schema_at(schema: type[BaseModel] | None, loc: list[str]) -> type[BaseModel] | None:
    """The pydantic model class found by following field names ``loc`` from ``schema``."""
    cls = schema
    for part in loc:
        info = cls.model_fields.get(part) if cls is not None else None
        if info is None:
            return None
        cls = _model_in(info.annotation)
    return cls


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def from_validation_error(err: ValidationError, *, schema: type[BaseModel] | None = None,
                          file: str | Path | None = None, prefix: str | None = None,
                          also_allowed: tuple[str, ...] = (), hint: str = "") -> InputError:
    """One :class:`InputError` for everything pydantic found wrong in an input.

    ``field`` is the dotted location of the first problem (under ``prefix``); the
    message says what is wrong and what is allowed (the fields of ``schema`` at that
    place for an unknown field, the field's description for a missing one) and
    names the other problems, if any. ``hint`` is added when a field is missing.
    """

    def located(problem) -> tuple[str | None, list[str]]:
        loc = [str(p) for p in problem["loc"] if p not in ("[key]", "__root__")]
        parts = ([prefix] if prefix else []) + loc
        return (".".join(parts) or None), loc

    def describe(problem, loc: list[str]) -> str:
        kind = problem["type"]
        if kind == "extra_forbidden":
            cls = _schema_at(schema, loc[:-1])
            allowed = [*cls.model_fields, *also_allowed] if cls is not None else []
            return "unknown field" + (f"; allowed here: {', '.join(allowed)}" if allowed else "")
        if kind == "missing":
            cls = _schema_at(schema, loc[:-1])
            info = cls.model_fields.get(loc[-1]) if cls is not None and loc else None
            what = f" ({info.description})" if info is not None and info.description else ""
            return f"required field is missing{what}"
        msg = problem["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
        value = problem.get("input")
        if kind != "value_error" and not isinstance(value, (dict, list)):
            msg += f" (got {value!r})"
        return msg

    problems = err.errors(include_url=False)
    field, loc = located(problems[0])
    message = describe(problems[0], loc)
    if hint and any(p["type"] == "missing" for p in problems):
        message += f"; {hint}"
    if len(problems) > 1:
        others = "; ".join(f"{located(p)[0] or '(top level)'}: {describe(p, located(p)[1])}" for p in problems[1:])
        message += f" (also {others})"
    return InputError(message, file=file, field=field)
