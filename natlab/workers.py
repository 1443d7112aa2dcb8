"""Worker processes for analysis and drawing (scenarios are independent of each other).

Forked from natlab, they die with it (PR_SET_PDEATHSIG, so a killed run leaves none holding its
lock or the reaper's pipe), ignore stop signals (natlab handles those and shuts them down) and
may run at a lower priority than the scenarios still running.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from natlab import spawn

T = TypeVar("T")


def _setup(nice: int) -> None:
    spawn.die_with_natlab()
    for sig in spawn.STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if nice:
        os.nice(nice)


def pool(workers: int, nice: int = 0) -> ProcessPoolExecutor:
    """A pool of `workers` forked processes (fork: they need no re-import of natlab)."""
    return ProcessPoolExecutor(workers, multiprocessing.get_context("fork"),
                               initializer=_setup, initargs=(nice,))


def map_all(fn: Callable[..., T], args: Iterable[tuple[Any, ...]]) -> list[T]:
    """fn(*a) for every a, one process per core when there is more than one thing to do;
    a stop signal cancels what has not started and goes on to the caller."""
    todo = list(args)
    workers = min(len(todo), os.cpu_count() or 1)
    if workers <= 1:
        return [fn(*a) for a in todo]
    ex = pool(workers)
    try:
        return list(ex.map(fn, *zip(*todo, strict=True)))
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
