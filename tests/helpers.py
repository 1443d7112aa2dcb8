"""Markers, waits and assertions shared by the tests (conftest.py re-exports the markers)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from natlab.guard import leftover_links, our_processes
from services.daemon import Daemon

REPO = Path(__file__).resolve().parent.parent
# what a run starts in its namespaces: daemons, captures, agents (pjsua2, baresip, linphonec),
# probes, and mnexec (a child between its fork and its exec)
DAEMONS = ("kamailio|turnserver|rtpengine|tcpdump|agents\\.|baresip|linphonec|turnutils_|"
           "services\\.probe|topology\\.conntrack|impair\\.nfq|mnexec")
POLL_S = 0.05  # how often a wait looks again; never a synchronisation by itself

READY_S = 5.0  # a daemon's readiness deadline in the tests
D = TypeVar("D", bound=Daemon)

requires_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces)")


def requires(*tools: str) -> pytest.MarkDecorator:
    """Skip unless every named program is on PATH (kamailio, turnserver, baresip, tshark...)."""
    missing = [t for t in tools if shutil.which(t) is None]
    return pytest.mark.skipif(bool(missing), reason=f"not installed: {', '.join(missing)}")


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Return once check() is true; fail the test if it is not within `timeout` seconds."""
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, f"{what} did not happen within {timeout} s"
        time.sleep(POLL_S)


def wait_for_file(path: Path, timeout: float) -> None:
    wait_until(path.exists, timeout, f"{path} appearing")


def finish(proc: subprocess.Popen[Any], timeout: float) -> int:
    """The process's exit code; killed (and the test failed) if it outlives `timeout`."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


@contextmanager
def running(daemon: D, ready_s: float = READY_S) -> Iterator[D]:
    """Render, check and start a daemon, wait until it answers; stop it afterwards."""
    daemon.render()
    daemon.check()
    daemon.start()
    try:
        daemon.wait_ready(ready_s)
        yield daemon
    finally:
        daemon.stop()


def start_run(results: Path, scenario: str) -> subprocess.Popen[str]:
    """`natlab run --scenario` in its own process group (as from a terminal: Ctrl-C is
    os.killpg(proc.pid, SIGINT)), output kept."""
    return subprocess.Popen([sys.executable, "-m", "natlab", "run", "--scenario", scenario,
                             "--results", str(results)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=REPO)


def children(pid: int) -> list[int]:
    """The processes whose parent is pid, found through each one's stat:
    /proc/PID/task/TID/children may miss children while others start and exit (proc(5))."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def reaper_of(pid: int) -> int | None:
    """The natlab.reaper child of a natlab run (natlab/reaper.py), if it runs."""
    for child in children(pid):
        try:
            cmd = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"natlab.reaper" in cmd:
            return child
    return None


def kill_all(procs: list[subprocess.Popen[Any]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def ping(host: Any, addr: str) -> bool:
    out = host.cmd(f"ping -c1 -W1 {addr} >/dev/null 2>&1; echo $?")
    return out.strip().endswith("0")


def namespaced_daemons() -> list[str]:
    """Our kinds of process running in a network namespace other than the root one."""
    root_ns = os.readlink("/proc/self/ns/net")
    found = []
    for pid in subprocess.run(["pgrep", "-f", DAEMONS], capture_output=True,
                              text=True).stdout.split():
        try:
            if os.readlink(f"/proc/{pid}/ns/net") != root_ns:
                found.append(pid)
        except OSError:
            continue
    return found


def leftovers(phones: list[str]) -> list[str]:
    """What a run left behind: bridges and veths, namespace shells, namespaced processes."""
    return ([f"link {n}" for n in leftover_links()]
            + [f"shell {p}" for p in our_processes(None, phones)]
            + [f"process {p}" for p in namespaced_daemons()])


def assert_nothing_left(phones: list[str]) -> None:
    left = leftovers(phones)
    assert left == [], f"left behind: {', '.join(left)}"


def run_scenarios(results: Path, names: tuple[str, ...] | list[str],
                  timeout: float) -> dict[str, dict[str, Any]]:
    """`natlab run --scenario ...` into `results` (must exit 0); its summary entries by name,
    each with "dir" (the scenario's folder)."""
    args = [a for name in names for a in ("--scenario", name)]
    res = subprocess.run([sys.executable, "-m", "natlab", "run", *args, "--results",
                          str(results)], capture_output=True, text=True, timeout=timeout,
                         cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((results / "latest" / "summary.json").read_text())
    return {s["name"]: {**s, "dir": results / "latest" / s["name"]}
            for s in summary["scenarios"]}
