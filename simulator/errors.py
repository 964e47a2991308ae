"""Errors a user can cause and fix.

Every problem with user input (a scenario, topology, hardware or model file, a
plan that cannot run) is raised as an :class:`InputError`. The CLI prints its
message and exits non-zero; it never shows a traceback for these.
"""

from __future__ import annotations

from pathlib import Path


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
