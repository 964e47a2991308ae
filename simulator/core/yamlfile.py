"""Reading YAML input files: one parser for scenarios, topologies and GPU catalogs.

Problems become an :class:`~simulator.core.errors.InputError` naming the file and,
for syntax errors, the line and column. A key given twice in one mapping is an
error (plain PyYAML silently keeps the last one, hiding typos).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from simulator.core.errors import InputError


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:  # unhashable key: construct_mapping reports it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def parse_yaml(text: str, *, file: str | Path | None) -> Any:
    """The data in YAML ``text``; raises :class:`InputError` naming ``file`` and where the syntax breaks."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"not valid YAML{where}: {problem}", file=file) from None


def read_yaml_file(path: str | Path, *, expected: str) -> Any:
    """The data in YAML file ``path``; :class:`InputError` naming it if it cannot be read or
    parsed (``expected`` says what the file should be, e.g. "a YAML GPU catalog")."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"file not found; give the path of {expected}", file=path) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason}); expected {expected}", file=path) from None
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}; expected {expected}", file=path) from None
    return parse_yaml(text, file=path)
