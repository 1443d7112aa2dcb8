"""Run a run's scenarios, several side by side: each still gets its own network (its own
namespaces, conntrack tables, bridges named for its slot) and its own daemons.

Scenarios that measure QoS run alone, before the others, so that nothing else shares the CPU
while their jitter and delay are measured. With jobs = 1 every scenario runs alone, in order.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from natlab.constants import SLOTS
from natlab.progress import Progress
from scenarios.kinds import KINDS
from scenarios.model import Scenario
from topology.plan import Plan

JOBS = 5  # side by side on 2 cores: their calls mostly wait (CPU ~70 % busy; 8 made the
#           early analysis fall behind)
STOP_WAIT_S = 90.0  # after Ctrl-C: how long the running scenarios get to finish and tear down


def alone(sc: Scenario) -> bool:
    """A scenario that must have the machine to itself (QoS, load: its figures depend on it)."""
    return KINDS[sc.kind].alone(sc)


Done = Callable[[Scenario], None]


def run_all(plan: Plan, scenarios: list[Scenario], rundir: Path, creds: dict[str, str],
            progress: Progress, jobs: int = 1, on_done: Done | None = None) -> None:
    """Every scenario into rundir/<name>, calling on_done(sc) as each one finishes; raises the
    first failure (RunFailure, or KeyboardInterrupt on Ctrl-C) once no scenario runs any more."""
    side = [sc for sc in scenarios if not alone(sc)] if jobs > 1 else []
    for sc in scenarios:
        if sc not in side:
            _one(plan, sc, rundir, creds, progress, 0, False, on_done)
    _pool(plan, side, rundir, creds, progress, min(jobs, SLOTS), on_done)


def _one(plan: Plan, sc: Scenario, rundir: Path, creds: dict[str, str], progress: Progress,
         slot: int, quiet: bool, on_done: Done | None,
         stopped: Callable[[], bool] | None = None) -> None:
    from scenarios.runner import run_scenario  # needs Mininet: only when running

    progress.line(f"natlab: {sc.name}: {sc.description} ...")
    rec = run_scenario(plan, sc, rundir / sc.name, creds,
                       Progress(quiet=True) if quiet else progress, slot, stopped)
    progress.line(f"natlab: {sc.name}: ran {len(rec.calls)} call(s) in {rec.seconds:.1f} s")
    if on_done is not None:
        on_done(sc)


def _pool(plan: Plan, scenarios: list[Scenario], rundir: Path, creds: dict[str, str],
          progress: Progress, jobs: int, on_done: Done | None) -> None:
    if not scenarios:
        return
    todo = list(reversed(scenarios))
    lock = threading.Lock()
    stop = threading.Event()  # no more scenarios start
    interrupted = threading.Event()  # Ctrl-C: the running ones are marked interrupted
    errors: list[BaseException] = []

    def work(slot: int) -> None:
        while not stop.is_set():
            with lock:
                if not todo:
                    return
                sc = todo.pop()
            try:
                _one(plan, sc, rundir, creds, progress, slot, True, on_done,
                     interrupted.is_set)
            except BaseException as exc:  # handed to the main thread
                with lock:
                    errors.append(exc)
                stop.set()

    workers = [threading.Thread(target=work, args=(k + 1,), name=f"slot-{k + 1}", daemon=True)
               for k in range(min(jobs, len(scenarios)))]
    for w in workers:
        w.start()
    try:
        while any(w.is_alive() for w in workers):
            for w in workers:
                w.join(0.2)
    except KeyboardInterrupt:
        interrupted.set()
        stop.set()
        progress.line("natlab: stopping: waiting for the running scenarios to tear down")
        for w in workers:
            w.join(STOP_WAIT_S)
        raise
    if errors:
        raise errors[0]
