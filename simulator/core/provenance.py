"""Where a fitted or derived data file came from: the input files it was computed on."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path


def input_files(paths: Iterable[str | Path]) -> list[dict[str, str]]:
    """``{"file": name, "sha256": hex digest of its bytes}`` of each input file, in order."""
    return [{"file": Path(p).name, "sha256": hashlib.sha256(Path(p).read_bytes()).hexdigest()} for p in paths]
