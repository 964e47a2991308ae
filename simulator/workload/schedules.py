"""Pipeline schedules: the order in which each stage runs its forward and backward passes.

A schedule is pure data: for every pipeline stage, the ordered list of
:class:`Action` it executes in one optimizer step. The system layer runs these
lists as SimPy processes and adds the data dependencies between stages.

Virtual stages: with ``vpp`` model chunks per stage (interleaved 1F1B), chunk
``c`` of stage ``i`` is virtual stage ``v = c * pp + i``; the model's layers are
split evenly over the ``pp * vpp`` virtual stages in order. Without
interleaving ``vpp = 1`` and the virtual stage is the stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Action:
    """One forward (``"F"``) or backward (``"B"``) pass of micro-batch ``mb`` through model chunk ``chunk``."""

    kind: Literal["F", "B"]
    mb: int
    chunk: int = 0


def gpipe(pp: int, m: int) -> list[list[Action]]:
    """GPipe (Huang et al. 2019): all forwards, then all backwards, on every stage."""
    return [[Action("F", j) for j in range(m)] + [Action("B", j) for j in range(m)] for _ in range(pp)]


def one_f_one_b(pp: int, m: int) -> list[list[Action]]:
    """1F1B / PipeDream-Flush (Narayanan et al. 2021): stage ``i`` warms up with
    ``min(pp - i - 1, m)`` forwards, then alternates one forward and one backward,
    then drains the remaining backwards."""
    stages = []
    for i in range(pp):
        warmup = min(pp - i - 1, m)
        acts = [Action("F", j) for j in range(warmup)]
        for j in range(m - warmup):
            acts += [Action("F", warmup + j), Action("B", j)]
        acts += [Action("B", j) for j in range(m - warmup, m)]
        stages.append(acts)
    return stages


def interleaved(pp: int, m: int, vpp: int) -> list[list[Action]]:
    """Interleaved 1F1B with ``vpp`` chunks per stage (Narayanan et al. 2021, Megatron-LM).

    Micro-batches go through the chunks in groups of ``pp``: the k-th forward of a
    stage is micro-batch ``(k // (pp*vpp)) * pp + k % pp`` on chunk ``(k // pp) % vpp``;
    backwards visit chunks in reverse. Stage ``i`` warms up with
    ``(pp - i - 1) * 2 + (vpp - 1) * pp`` forwards (capped at all of them).
    When ``m == pp`` every stage runs all its forwards first, as Megatron-LM does.
    Requires ``m % pp == 0``.
    """
    if m % pp:
        raise ValueError(f"interleaved schedule needs m ({m}) to be a multiple of pp ({pp})")
    total = m * vpp

    def fwd(k: int) -> Action:
        return Action("F", (k // (pp * vpp)) * pp + k % pp, (k // pp) % vpp)

    def bwd(k: int) -> Action:
        return Action("B", (k // (pp * vpp)) * pp + k % pp, vpp - 1 - (k // pp) % vpp)

    stages = []
    for i in range(pp):
        warmup = total if m == pp else min((pp - i - 1) * 2 + (vpp - 1) * pp, total)
        acts = [fwd(k) for k in range(warmup)]
        for j in range(total - warmup):
            acts += [fwd(warmup + j), bwd(j)]
        acts += [bwd(k) for k in range(total - warmup, total)]
        stages.append(acts)
    return stages


def build_schedule(name: str, pp: int, m: int, vpp: int = 1) -> list[list[Action]]:
    """The action lists of schedule ``name`` ('gpipe', '1f1b' or 'interleaved')."""
    if name == "gpipe":
        return gpipe(pp, m)
    if name == "1f1b":
        return one_f_one_b(pp, m)
    if name == "interleaved":
        return interleaved(pp, m, vpp)
    raise ValueError(f"unknown schedule {name!r}; use gpipe, 1f1b or interleaved")


def bubble_fraction_1f1b(pp: int, m: int, vpp: int = 1) -> float:
    """Idle fraction of a 1F1B step with free communication and equal stages:
    ``(p - 1) / (v * m + p - 1)`` (Narayanan et al. 2021; v = 1 without interleaving)."""
    return (pp - 1) / (vpp * m + pp - 1)
