"""Analyse finished scenarios while others still run (one low-priority background process).

Only while scenarios run side by side: a scenario that runs alone (QoS) is analysed once the
side-by-side ones have started, never while a QoS measurement has the machine. Analysis reads
only the finished scenario's folder, so the results equal those of `natlab report`.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from natlab import workers
from scenarios.model import Scenario
from scenarios.parallel import alone

NICE = 10  # below the scenarios' processes


class EarlyAnalysis:
    def __init__(self, rundir: Path, analyse_one: Callable[[Path, str], Any], enabled: bool):
        """Create it before any scenario thread starts: its process is forked right here."""
        self.rundir, self.analyse_one = rundir, analyse_one
        self.pool: ProcessPoolExecutor | None = None
        self.pending: list[str] = []  # finished alone, waiting for side-by-side ones to start
        self.futures: dict[str, Future[Any]] = {}
        self.lock = threading.Lock()
        if enabled:
            self.pool = workers.pool(1, NICE)
            self.pool.submit(os.getpid).result()  # fork now, while no other thread runs

    def done(self, sc: Scenario) -> None:
        """A scenario finished (called from the thread that ran it)."""
        with self.lock:
            if alone(sc):
                self.pending.append(sc.name)
                return
            names, self.pending = [*self.pending, sc.name], []
            if self.pool is None:
                return
            for name in names:
                self.futures[name] = self.pool.submit(self.analyse_one, self.rundir, name)

    def results(self) -> dict[str, Any]:
        """What finished without error (the rest is analysed again by the caller)."""
        out: dict[str, Any] = {}
        for name, fut in self.futures.items():
            try:
                out[name] = fut.result()
            except Exception:  # e.g. the process died: analysed again afterwards
                continue
        if self.pool is not None:
            self.pool.shutdown()
        return out
