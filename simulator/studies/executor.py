"""Where many simulations run: in this process or on a Dask cluster (``trainsim sweep`` and ``trainsim plan``).

:func:`dask_client` connects to a running scheduler (``--scheduler ADDRESS``) or starts a
``LocalCluster`` of single-threaded worker processes on this machine, so the same code
runs on a laptop and on a cluster; :func:`executor` runs in-process where a local cluster
would not pay (:func:`in_process`: few tasks, or at most two cores) or with ``--workers 1``.
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


#: Starting a ``LocalCluster`` costs 2.6-4.3 s on a 2-core machine (issue 15), the work of
#: tens of simulations: below this many tasks the cluster is not started by default.
MIN_TASKS_FOR_CLUSTER = 32
#: With this many cores or fewer the default is this process: on 2 cores the cluster's start
#: and transfers made ``trainsim plan`` 1.6-6.8x slower than ``--workers 1`` (issue 15).
MAX_CORES_IN_PROCESS = 2


def in_process(scheduler: str | None = None, workers: int | None = None, tasks: int | None = None,
               cores: int | None = None) -> bool:
    """Whether :func:`executor` runs the work in this process (no Dask) -- the rule:

    - a ``scheduler`` address: never (the user's cluster is used);
    - ``workers`` given: only for ``workers == 1`` (an explicit ``--workers N`` is honoured);
    - otherwise (the default): when the machine has at most :data:`MAX_CORES_IN_PROCESS` cores,
      or when ``tasks`` (if known) is below :data:`MIN_TASKS_FOR_CLUSTER` -- where starting a
      local cluster costs more than it saves.
    """
    if scheduler:
        return False
    if workers is not None:
        return workers <= 1
    cores = cores if cores is not None else (os.cpu_count() or 1)
    return cores <= MAX_CORES_IN_PROCESS or (tasks is not None and tasks < MIN_TASKS_FOR_CLUSTER)


def executor(scheduler: str | None = None, workers: int | None = None,
             tasks: int | None = None) -> contextlib.AbstractContextManager:
    """Where to simulate: a context yielding ``None`` (in this process) where :func:`in_process`
    says so, else a :func:`dask_client` (``tasks``: how many simulations, if known)."""
    if in_process(scheduler, workers, tasks):
        return contextlib.nullcontext()
    return dask_client(scheduler, workers)


def scatter_once(client: Any, obj: Any) -> Any:
    """A future for ``obj`` held by every worker of ``client`` (pass it to ``client.map``)."""
    [future] = client.scatter([obj], broadcast=True, hash=False)
    return future


__all__ = ["MAX_CORES_IN_PROCESS", "MIN_TASKS_FOR_CLUSTER", "dask_client", "executor", "in_process", "scatter_once"]
