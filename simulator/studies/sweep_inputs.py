"""What the numbers of a sweep row depend on, hashed: the row's input key.

A variant's result is determined by its fully resolved scenario (every field, defaults
included), the content of every file that scenario reads (the topology file, whether a user
file or a bundled one; the hardware file; the efficiency file; the ``config.json`` of a
Hugging Face model) and the trainsim version, which also stands for the packaged GPU catalog,
efficiency values and model presets. :class:`InputKeys` hashes these in the main process,
before any variant is dispatched: SHA-256 of the scenario's canonical JSON and of each file's
bytes, each file read once however many variants share it. A file that cannot be read counts
as ``missing`` (the variant's row then says why it cannot run); creating it changes the key.

The version is :data:`simulator.core.version.__version__`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

from simulator.core.bundled import bundled_dir
from simulator.core.version import __version__
from simulator.inputs.resolve import topology_source
from simulator.inputs.scenario import Scenario

SCENARIO = "scenario"
VERSION = "trainsim"
MISSING = "missing"


def trainsim_version() -> str:
    """The trainsim version the rows are computed with."""
    return __version__


def _hf_config_file(scenario: Scenario) -> Path | None:
    """The ``config.json`` a Hugging Face model reads (``model.hf_config``: the file or its folder)."""
    raw = scenario.model.get("hf_config") if isinstance(scenario.model, dict) else None
    if not isinstance(raw, str) or not raw:
        return None
    path = scenario.resolve(raw)
    return path / "config.json" if path.is_dir() else path


def input_files(scenario: Scenario) -> dict[str, Path | Traversable]:
    """Every file ``scenario`` reads, by the scenario field that names it."""
    topology = topology_source(scenario)
    files: dict[str, Path | Traversable] = {
        "topology": topology if isinstance(topology, Path) else bundled_dir("topologies").joinpath(f"{topology}.yaml"),
    }
    for name in ("hardware_file", "efficiency_file"):
        value = getattr(scenario, name)
        if value:
            files[name] = scenario.resolve(value)
    hf = _hf_config_file(scenario)
    if hf is not None:
        files["model.hf_config"] = hf
    return files


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class InputKey:
    """The input key of one variant: ``sha256`` over every part in full; ``parts`` names each
    part (``scenario``, ``trainsim``, the file fields) with a short digest (the version for
    ``trainsim``), so that a changed key can say what changed; ``files`` are the paths read."""

    sha256: str
    parts: dict[str, str]
    files: dict[str, str]

    def changed(self, recorded: str) -> list[str]:
        """The parts that differ from ``recorded`` (a row's ``inputs`` cell, JSON); every part
        if it cannot be read."""
        try:
            old = json.loads(recorded)
        except (TypeError, ValueError):
            old = None
        if not isinstance(old, dict):
            return list(self.parts)
        return [p for p in dict.fromkeys([*self.parts, *old]) if self.parts.get(p) != old.get(p)]


class InputKeys:
    """Computes input keys; each file is hashed once per instance (make one per sweep run)."""

    def __init__(self) -> None:
        self.version = trainsim_version()
        self._digests: dict[str, str] = {}

    def _digest(self, path: Path | Traversable) -> str:
        key = str(path)
        if key not in self._digests:
            try:
                self._digests[key] = _sha256(path.read_bytes())
            except OSError:
                self._digests[key] = MISSING
        return self._digests[key]

    def key(self, scenario: Scenario) -> InputKey:
        """The input key of ``scenario``."""
        files = input_files(scenario)
        full: dict[str, Any] = {
            VERSION: self.version,
            SCENARIO: _sha256(json.dumps(scenario.model_dump(mode="json"), sort_keys=True).encode()),
            **{name: self._digest(path) for name, path in files.items()},
        }
        digest = _sha256(json.dumps(full, sort_keys=True).encode())
        parts = {name: value if name == VERSION else value[:12] for name, value in full.items()}
        return InputKey(digest, parts, {name: str(path) for name, path in files.items()})
