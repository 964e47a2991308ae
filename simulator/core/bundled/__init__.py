"""Scenario and topology files shipped with trainsim.

The files live in the top-level ``scenarios/`` and ``topologies/`` folders. A
wheel install maps them into this package (``simulator.core.bundled.scenarios`` and
``simulator.core.bundled.topologies``, see ``pyproject.toml``); an editable install
or a source checkout reads them from the repository.
"""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

_REPO = Path(__file__).resolve().parents[3]


def bundled_dir(kind: str) -> Traversable:
    """The folder of bundled ``kind`` files (``"scenarios"`` or ``"topologies"``)."""
    try:
        return resources.files(f"simulator.core.bundled.{kind}")
    except ModuleNotFoundError:
        return _REPO / kind
