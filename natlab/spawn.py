"""Children that die with natlab, and stop signals that cannot split a spawn from its cleanup.

- `popen` starts every process natlab starts (Mininet's `_popen` calls it, for the namespace
  shells and every `host.popen`): its preexec_fn sets PR_SET_PDEATHSIG, so the kernel sends
  SIGKILL to the child when natlab dies, even by SIGKILL; and it records the child, so the end
  of a run can stop whatever its owner did not (`live_children`).
- SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt (so `finally` blocks tear down), except
  inside `deferred()`: there the signal is remembered and raised when the block ends. `popen`
  forks and records inside `deferred()`, so a signal never lands between the two (before, a
  tcpdump started while Ctrl-C arrived could outlive the run).
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

PR_SET_PDEATHSIG = 1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_depth = 0  # nesting of deferred() blocks (main thread only: Python runs handlers there)
_pending: int | None = None  # a stop signal that arrived inside deferred()
_children: list[subprocess.Popen[bytes]] = []  # every child started through popen()
_children_lock = threading.Lock()  # natlab's worker threads start children too


def die_with_natlab() -> None:
    """preexec_fn: SIGKILL this child when its parent dies; clear the inherited signal mask."""
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _handler(signum: int, frame: FrameType | None) -> None:
    global _pending
    if _depth:
        _pending = signum
        return
    _pending = None
    raise KeyboardInterrupt(f"signal {signum}")


def install() -> None:
    """SIGINT/SIGTERM/SIGHUP behave like Ctrl-C, deferred inside `deferred()` blocks."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _handler)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold stop signals until the block ends, then raise KeyboardInterrupt for one.
    A no-op in other threads (Python runs signal handlers in the main thread only)."""
    global _depth, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending is not None:
            signum, _pending = _pending, None
            raise KeyboardInterrupt(f"signal {signum} (deferred)")


def popen(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """subprocess.Popen for natlab's children: dies with natlab, recorded, never split from
    its record by a stop signal."""
    kwargs.setdefault("preexec_fn", die_with_natlab)
    with deferred():
        proc: subprocess.Popen[bytes] = subprocess.Popen(args, **kwargs)
        with _children_lock:
            _children[:] = [p for p in _children if p.returncode is None] + [proc]
    return proc


def live_children() -> list[int]:
    """Pids of the children started through popen() that have not exited."""
    with _children_lock:
        return [p.pid for p in _children if p.poll() is None]
