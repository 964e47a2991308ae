"""Errors a user can cause and fix.

Every problem with user input (a scenario, topology, hardware or model file, a
plan that cannot run) is raised as an :class:`InputError`. The CLI prints its
message and exits non-zero; it never shows a traceback for these.
"""

from __future__ import annotations

from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

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


def _input_fields(cls: type[BaseModel]) -> list[str]:
    """The fields a user may write in ``cls`` (not the internal ones, ``Field(exclude=True)``)."""
    return [name for name, info in cls.model_fields.items() if not info.exclude]


_UNKNOWN = object()
"""The annotation at a location the walk of :func:`_without_union_labels` cannot follow."""
_TYPE_LABELS = {"str", "int", "float", "bool", "none", "dict", "list", "tuple", "set", "frozenset", "bytes"}


def _unwrapped(annotation: Any) -> Any:
    """``annotation`` without ``Annotated`` and without ``None`` of an optional type."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if _is_union(annotation):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _unwrapped(members[0])
    return annotation


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, UnionType)


def _looks_like_label(part: str) -> bool:
    return "[" in part or part in _TYPE_LABELS or part.startswith("function-")


def _member(union: Any, label: str) -> Any:
    """The member of ``union`` that pydantic labels ``label`` in error locations."""
    for member in get_args(union):
        bare = _unwrapped(member)
        name = getattr(get_origin(bare) or bare, "__name__", "")
        if name and (label == name or label.lower().startswith(name.lower())):
            return bare
    return _UNKNOWN


def _step(annotation: Any, part: str | int) -> Any:
    """The annotation of the value at ``part`` inside a value of ``annotation``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        info = annotation.model_fields.get(part) if isinstance(part, str) else None
        return _unwrapped(info.annotation) if info is not None else _UNKNOWN
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is dict and len(args) == 2:
        return _unwrapped(args[1])
    if origin in (list, set, frozenset) and args:
        return _unwrapped(args[0])
    if origin is tuple and args:
        if len(args) == 2 and args[1] is Ellipsis:
            return _unwrapped(args[0])
        return _unwrapped(args[part]) if isinstance(part, int) and 0 <= part < len(args) else _UNKNOWN
    return _UNKNOWN


def _without_union_labels(schema: type[BaseModel] | None, loc: list[str | int]) -> list[str]:
    """``loc`` without the segments pydantic adds to name the member of a union that failed
    (``model.str``, ``placement.list[literal['tp','dp','pp']].1``): only the user's field names,
    keys and indices are left. Where the schema cannot be followed, such labels are recognised
    by their form (a type name, or brackets)."""
    annotation: Any = schema if schema is not None else _UNKNOWN
    kept: list[str] = []
    for part in loc:
        if isinstance(part, str) and annotation is not _UNKNOWN and _is_union(annotation):
            annotation = _member(annotation, part)
            continue
        if isinstance(part, str) and annotation is _UNKNOWN and _looks_like_label(part):
            continue
        kept.append(str(part))
        annotation = _step(annotation, part) if annotation is not _UNKNOWN else _UNKNOWN
    return kept


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
        loc = _without_union_labels(schema, [p for p in problem["loc"] if p not in ("[key]", "__root__")])
        parts = ([prefix] if prefix else []) + loc
        return (".".join(parts) or None), loc

    def describe(problem, loc: list[str]) -> str:
        kind = problem["type"]
        if kind == "extra_forbidden":
            cls = _schema_at(schema, loc[:-1])
            allowed = [*_input_fields(cls), *also_allowed] if cls is not None else []
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

    found: dict[str | None, list[str]] = {}  # location -> what is wrong there (the members of a union: any)
    for problem in err.errors(include_url=False):
        where, loc = located(problem)
        texts = found.setdefault(where, [])
        text = describe(problem, loc)
        if text not in texts:
            texts.append(text)
    (field, first), *others = found.items()
    message = ", or ".join(first)
    if hint and any(p["type"] == "missing" for p in err.errors(include_url=False)):
        message += f"; {hint}"
    if others:
        message += " (also " + "; ".join(f"{where or '(top level)'}: {', or '.join(texts)}" for where, texts in others) + ")"
    return InputError(message, file=file, field=field)
