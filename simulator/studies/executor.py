"""Where many simulations run: in this process or on a Dask cluster (``trainsim sweep`` and ``trainsim plan``).

:func:`dask_client` connects to a running scheduler (``--scheduler ADDRESS``) or starts a
``LocalCluster`` of single-threaded worker processes on this machine, so the same code
runs on a laptop and on a cluster; :func:`executor` also allows running in-process.
:func:`scatter_once` ships an object every task needs to each worker once, instead of
with every task.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A Dask client: connected to ``scheduler`` (an address, left running), or to a new
    ``LocalCluster`` of ``workers`` single-threaded processes (default: one per core),
    closed on exit."""
    import logging

    from dask.distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    with _sigint_ignored():  # the worker processes inherit it: Ctrl-C stops this process only, quietly
        cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                               dashboard_address=":0", silence_logs=logging.ERROR)
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def executor(scheduler: str | None = None, workers: int | None = None) -> contextlib.AbstractContextManager:
    """Where to simulate: a context yielding ``None`` (in this process) when there is no
    scheduler and one worker would do the work, else a :func:`dask_client`."""
    if not scheduler and (workers or os.cpu_count() or 1) == 1:
        return contextlib.nullcontext()
    return dask_client(scheduler, workers)


def scatter_once(client: Any, obj: Any) -> Any:
    """A future for ``obj`` held by every worker of ``client`` (pass it to ``client.map``)."""
    [future] = client.scatter([obj], broadcast=True, hash=False)
    return future


__all__ = ["dask_client", "executor", "scatter_once"]
