"""The options of ``trainsim plan`` read into what :func:`~simulator.studies.planner.plan_search`
takes: GPU-hour prices, the fleets to compare, the global batch as a range of sequences or of
tokens per step. Each error is one :class:`InputError` naming the option and what it allows."""

from __future__ import annotations

from simulator.core.errors import InputError
from simulator.studies.space import parse_range


def parse_prices(text: str | None) -> float | dict[str, float] | None:
    """``--gpu-hour-usd``: one number, or ``name=number`` pairs separated by commas."""
    if text is None:
        return None
    try:
        if "=" not in text:
            return float(text)
        pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
        return {name.strip().lower(): float(value) for name, value in pairs}
    except ValueError:
        raise InputError(f"{text!r} is not a price or a list like h100-sxm=2.5,h200=3.4",
                         field="--gpu-hour-usd") from None


def fleet_changes(gpus: str | None, gpu: str | None) -> list[dict]:
    """Scenario changes for every combination of the --gpus and --gpu lists."""
    sizes: list[int | None] = [None]
    if gpus:
        try:
            sizes = [int(x) for x in gpus.split(",") if x.strip()]
        except ValueError:
            raise InputError(f"{gpus!r} is not a comma-separated list of GPU counts", field="--gpus") from None
        if not sizes or min(sizes) < 1:
            raise InputError(f"{gpus!r}: give GPU counts >= 1, e.g. 512,1024", field="--gpus")
    types: list[str | None] = [t.strip() for t in gpu.split(",") if t.strip()] if gpu else [None]
    return [{**({"gpus": n} if n else {}), **({"gpu": t} if t else {})} for n in sizes for t in types]


def batch_options(global_batch: str | None, tokens_per_step: str | None) -> dict[str, tuple[int, int] | None]:
    """``--global-batch`` (sequences) and ``--tokens-per-step`` (tokens) as ``plan_search``'s
    ``batch_range`` and ``tokens_range``: ``N`` or ``LO..HI`` with K/M/G suffixes (x 1024^k);
    at most one of them."""
    if global_batch is not None and tokens_per_step is not None:
        raise InputError("give the global batch as sequences (--global-batch) or as tokens per step "
                         "(--tokens-per-step), not both", field="--tokens-per-step")
    return {"batch_range": parse_range(global_batch, "--global-batch") if global_batch is not None else None,
            "tokens_range": parse_range(tokens_per_step, "--tokens-per-step") if tokens_per_step is not None else None}
