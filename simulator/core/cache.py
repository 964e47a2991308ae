"""Memos bounded by the memory their values take, not by how many there are.

A built topology of a 16k-GPU fleet takes ~30 MB and one of 2^20 GPUs ~2 GB, so a memo that
keeps "the last 32" holds anything from a few kilobytes to tens of gigabytes: a long-lived
process (a sweep, the planner, a fuzzer, a Dask worker) grew without bound. :func:`sized_cache`
memoizes a function like :func:`functools.lru_cache`, but evicts the least recently used values
once their estimated total size passes a budget in bytes; a value larger than the whole budget
is returned and not kept. Sizes are *estimates* given by the caller (``size(value)``, bytes),
taken again each time a kept value is used, since values such as topologies keep memos of their
own that grow with use.

Every memo of large values in trainsim uses this one mechanism, with :data:`DEFAULT_BUDGET_BYTES`
unless it says otherwise; the budgets are per memo, not shared.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple, TypeVar

DEFAULT_BUDGET_BYTES = 256 * 2**20  # 256 MiB per memo

V = TypeVar("V")


class CacheInfo(NamedTuple):
    """Hits, misses, values kept, their estimated bytes and the budget."""

    hits: int
    misses: int
    entries: int
    bytes: int
    budget_bytes: int


class SizedCache:
    """Least-recently-used values whose estimated sizes add up to at most ``budget_bytes``
    (thread-safe; the value is built outside the lock, so two threads may build the same one)."""

    def __init__(self, size: Callable[[Any], int], budget_bytes: int = DEFAULT_BUDGET_BYTES):
        self.size = size
        self.budget_bytes = budget_bytes
        self._values: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._hits = self._misses = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], V]) -> V:
        """The value kept for ``key``, else ``build()`` (kept if it fits in the budget)."""
        with self._lock:
            entry = self._values.get(key)
            if entry is not None:
                self._hits += 1
                value, old = entry
                self._values.move_to_end(key)
                self._store(key, value, old)
                return value
            self._misses += 1
        value = build()
        with self._lock:
            old = self._values[key][1] if key in self._values else 0
            self._store(key, value, old)
        return value

    def _store(self, key: Hashable, value: Any, old: int) -> None:
        """Keep ``value`` under ``key`` at its size now (replacing ``old`` bytes), then evict."""
        nbytes = max(0, int(self.size(value)))
        self._bytes -= old
        if nbytes > self.budget_bytes:
            self._values.pop(key, None)
            return
        self._values[key] = (value, nbytes)
        self._bytes += nbytes
        while self._bytes > self.budget_bytes and len(self._values) > 1:
            _, (_, evicted) = self._values.popitem(last=False)
            self._bytes -= evicted

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._bytes = 0
            self._hits = self._misses = 0

    def info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self._hits, self._misses, len(self._values), self._bytes, self.budget_bytes)


def sized_cache(size: Callable[[Any], int], budget_bytes: int = DEFAULT_BUDGET_BYTES) -> Callable:
    """Decorator: memoize a function of hashable positional arguments in a :class:`SizedCache`.
    The wrapper has ``cache`` (the :class:`SizedCache`), ``cache_info()`` and ``cache_clear()``."""

    def decorate(func: Callable[..., V]) -> Callable[..., V]:
        cache = SizedCache(size, budget_bytes)

        @functools.wraps(func)
        def wrapper(*args: Hashable) -> V:
            return cache.get(args, lambda: func(*args))

        wrapper.cache = cache  # type: ignore[attr-defined]
        wrapper.cache_info = cache.info  # type: ignore[attr-defined]
        wrapper.cache_clear = cache.clear  # type: ignore[attr-defined]
        return wrapper

    return decorate
