"""One run at a time, and nothing left behind: run lock, state file, leftover cleanup.

Every process a run starts has the run folder in its command line (config, log or report
path), and every namespace shell is `mininet:<node>`; cleanup finds them by that, so even a
run killed with SIGKILL can be cleaned by `natlab clean` (or by natlab.reaper, at once). Within
the run, cleanup also stops every child natlab.spawn recorded that is still alive.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from natlab import spawn
from natlab.constants import INFRA_NODES, SWITCHES
from natlab.errors import InputError

STATE_DIR = Path("/run/natlab")


class AlreadyRunning(InputError):
    """Another natlab run holds the lock."""


@dataclass
class RunState:
    owner: int
    rundir: str
    phones: list[str] = field(default_factory=list)


class RunLock:
    """An exclusive lock plus a state file describing what the run may leave behind."""

    def __init__(self, state_dir: Path = STATE_DIR):
        self.dir = state_dir
        self.fh: IO[str] | None = None

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    def acquire(self, rundir: Path, phones: list[str]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        fh = open(self.dir / "lock", "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            owner = read_state(self.state_file)
            who = f" (pid {owner.owner}, {owner.rundir})" if owner else ""
            raise AlreadyRunning(
                f"another natlab run is active{who}; wait for it to finish") from None
        self.fh = fh
        if read_state(self.state_file) is not None:
            clean_leftovers(self.state_file)  # a killed run's debris
        state = RunState(owner=os.getpid(), rundir=str(rundir), phones=phones)
        self.state_file.write_text(json.dumps(state.__dict__))

    def release(self) -> None:
        if self.fh is not None:
            self.state_file.unlink(missing_ok=True)
            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()
            self.fh = None


def is_locked(state_dir: Path = STATE_DIR) -> bool:
    path = state_dir / "lock"
    if not path.exists():
        return False
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


def read_state(path: Path) -> RunState | None:
    try:
        return RunState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _cmdlines() -> dict[int, str]:
    out: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                raw = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            out[int(entry.name)] = raw.replace(b"\0", b" ").decode(errors="replace")
    return out


def our_processes(rundir: str | None, phones: list[str]) -> list[int]:
    """Processes of a natlab run: its namespace shells and anything naming its run folder."""
    shells = {f"mininet:{n}" for n in (*INFRA_NODES, *(f"p{e}" for e in phones))}
    me = os.getpid()
    found = []
    for pid, cmd in _cmdlines().items():
        if pid == me:
            continue
        words = cmd.split()
        if any(w in shells for w in words) or (rundir and rundir.rstrip("/") + "/" in cmd):
            found.append(pid)
    return found


def leftover_links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
    return [n for n in names if n in SWITCHES or n.startswith(tuple(f"{s}-eth" for s in SWITCHES))]


def _alive(pid: int) -> bool:
    """Running (a zombie is dead: only its parent, maybe not us, can reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def kill_all(pids: list[int], grace: float = 2.0,
             first: signal.Signals = signal.SIGTERM) -> None:
    for sig in dict.fromkeys((first, signal.SIGKILL)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.05)


def clean_leftovers(state_file: Path = STATE_DIR / "state.json",
                    first: signal.Signals = signal.SIGTERM) -> list[str]:
    """Remove what a dead run left: processes, bridges, veths. Returns what was removed."""
    state = read_state(state_file)
    rundir = state.rundir if state else None
    pids = our_processes(rundir, state.phones if state else [])
    pids += [p for p in spawn.live_children() if p not in pids]
    names = {p: _comm(p, rundir) for p in pids}
    kill_all(pids, first=first)
    links = leftover_links()
    for name in sorted(links, key=lambda n: n in SWITCHES):  # ports first, then bridges
        subprocess.run(["ip", "link", "del", name], capture_output=True)
    state_file.unlink(missing_ok=True)
    return [f"pid {p} ({names[p]})" for p in pids] + [f"link {n}" for n in links]


def _comm(pid: int, rundir: str | None = None) -> str:
    """A process's name, and the run's subfolder its command line names if any (the scenario
    that left it behind), for the message."""
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return "gone"
    head = rundir.rstrip("/") + "/" if rundir else None
    if head and head in cmd:
        where = re.split(r"[/\0\s]", cmd.split(head, 1)[1])[0]
        return f"{name}, {where}"
    return name


def raise_on_term() -> None:
    """SIGTERM/SIGHUP behave like Ctrl-C, so `finally` blocks tear everything down (deferred
    while natlab.spawn starts a child)."""
    spawn.install()
