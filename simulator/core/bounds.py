"""Numbers users write, bounded: finite, physical and of the right type.

Every number of every input schema (scenario, plan, model, variability, GPU catalog,
topology file, efficiency file) has one of the types made here:

* :func:`real` -- a finite number (an int or a float, never a boolean or a string) in a
  stated range, e.g. ``real(1, 3)`` for a PUE;
* :func:`whole` -- an integer (never a boolean, a float or a string) in a stated range;
* :data:`Flag` -- ``true`` or ``false`` (never ``0``, ``1`` or ``"yes"``).

A value outside its type gives one message stating the range, e.g. ``expected a finite
number in [1, 3]``, which :func:`simulator.core.errors.from_validation_error` attributes to
the file and the field. The ranges are physical but generous (a bandwidth up to 1e15 B/s, a
sequence up to 2^24 tokens); each field's description states its range too
(:func:`span` writes it), and ``tests/test_bounds.py`` checks that the two agree.
"""

from __future__ import annotations

import math
import numbers
from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

MAX_GPUS = 2**22
"""The largest fleet trainsim builds (GPUs): 4,194,304, far beyond any machine built so far."""


def _number(value: float) -> str:
    """A bound as written in messages: ``3``, ``0.5``, ``16777216``, ``1e15``."""
    if isinstance(value, int) or (float(value).is_integer() and abs(value) < 1e9):
        return str(int(value))
    return f"{value:g}".replace("e+", "e")


def span(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> str:
    """The range in interval notation: ``[1, 3]``, ``(0, 1]``."""
    return f"{'(' if lo_open else '['}{_number(lo)}, {_number(hi)}{')' if hi_open else ']'}"


def real_problem(value: Any, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> str | None:
    """Why ``value`` is not a finite number in the range (a message), or None if it is."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        try:
            x = float(value)
        except OverflowError:  # an int beyond any float
            x = math.inf
        ok = math.isfinite(x) and (lo < x if lo_open else lo <= x) and (x < hi if hi_open else x <= hi)
    return None if ok else f"expected a finite number in {span(lo, hi, lo_open=lo_open, hi_open=hi_open)}"


def whole_problem(value: Any, lo: int, hi: int) -> str | None:
    """Why ``value`` is not an integer in ``[lo, hi]`` (a message), or None if it is."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and lo <= value <= hi
    return None if ok else f"expected an integer in {span(lo, hi)}"


def _checker(problem, convert):
    def check(value: Any) -> Any:
        message = problem(value)
        if message is not None:
            raise PydanticCustomError("out_of_range", message)
        return convert(value)
    return check


def real(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Any:
    """The type of a finite number in the range (``lo_open``: ``lo`` itself excluded)."""
    low = {"gt": lo} if lo_open else {"ge": lo}
    high = {"lt": hi} if hi_open else {"le": hi}
    check = _checker(lambda v: real_problem(v, lo, hi, lo_open=lo_open, hi_open=hi_open), float)
    return Annotated[float, Field(allow_inf_nan=False, **low, **high), BeforeValidator(check)]


def whole(lo: int, hi: int) -> Any:
    """The type of an integer in ``[lo, hi]``."""
    return Annotated[int, Field(ge=lo, le=hi), BeforeValidator(_checker(lambda v: whole_problem(v, lo, hi), int))]


def _flag_problem(value: Any) -> str | None:
    return None if isinstance(value, bool) else "expected true or false"


Flag = Annotated[bool, BeforeValidator(_checker(_flag_problem, bool))]
"""``true`` or ``false``; a number or a string is refused."""

Fraction = real(0, 1, lo_open=True)
"""An achieved fraction of a peak or nominal rate: (0, 1]."""
UnitInterval = real(0, 1)
"""A probability or a coefficient of variation: [0, 1]."""
GpuCount = whole(1, MAX_GPUS)
"""A number of GPUs, or of ranks along one parallel dimension: [1, MAX_GPUS]."""
GpuIndex = whole(0, MAX_GPUS - 1)
"""The index of a GPU or node in the fleet: [0, MAX_GPUS - 1]."""
