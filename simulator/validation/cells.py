"""The cells of a validation CSV: its columns, and reading one cell as a number or a count."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

REQUIRED_COLUMNS = (
    "case_id", "n_layers", "d_model", "n_heads", "vocab", "seq_len", "global_batch_seqs", "gpu", "n_gpus",
    "metric", "value",
)
OPTIONAL_COLUMNS = (
    "source_id", "model", "n_params_b", "n_kv_heads", "d_ffn", "micro_batch", "gpus_per_node", "tp", "pp", "dp",
    "cp", "vpp", "seq_parallel", "recompute", "zero_stage", "precision", "inter_node_gbps_per_gpu", "notes", "framework",
)

def blank(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x)) or (isinstance(x, str) and not x.strip())


def number(row: pd.Series, col: str) -> float | None:
    """The cell as a number (None if blank); a ``ValueError`` naming the column otherwise."""
    x = row[col]
    if blank(x):
        return None
    try:
        return float(x)
    except (TypeError, ValueError):
        raise ValueError(f"column {col}: {x!r} is not a number") from None


def count(row: pd.Series, col: str, default: int | None = None, *, minimum: int = 0) -> int | None:
    """The cell as a whole number >= ``minimum`` (``default`` if blank, an error if required and blank)."""
    value = number(row, col)
    if value is None:
        if default is None and col in REQUIRED_COLUMNS:
            raise ValueError(f"column {col} is empty")
        return default
    if not value.is_integer() or value < minimum:
        raise ValueError(f"column {col}: {row[col]!r} is not a whole number >= {minimum}")
    return int(value)
