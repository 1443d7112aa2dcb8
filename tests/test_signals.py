"""natlab under faults: a stop signal at moments spread over a run, and SIGKILL.

Each trial runs the shortest scenario and stops it with SIGINT (to its process group, as
Ctrl-C does) or SIGTERM (to natlab, as `kill` does), alternately, at one moment: from the
instant the run folder appears (the run holds its lock and builds the network) through the
services, captures and agents starting, the call, to the teardown and report. Each must exit
130, leave nothing (links, namespace shells, namespaced processes, the lock) and keep a
summary.json marked interrupted. SIGKILL cannot be caught: the kernel kills natlab's children
(PR_SET_PDEATHSIG) and its reaper removes the rest, within 2 s.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import (
    assert_nothing_left,
    finish,
    leftovers,
    reaper_of,
    requires_root,
    start_run,
    wait_until,
)

from natlab.guard import is_locked

pytestmark = requires_root
PHONES = ["1002", "1005", "2001", "2005"]
SCENARIO = "001_call_nostun_none"  # ~6 s from the run folder to the end of the call
RECORD = f"{SCENARIO}/scenario.json"  # written when the scenario ends (then teardown, report)
START_S = 30.0  # deadline for the run folder to appear (interpreter start, preflight)
STOP_S = 60.0  # deadline for natlab to exit after the signal
REAPED_S = 2.0  # SIGKILL: nothing may be left after this

# (what to wait for, then how long to wait before the signal): 10 moments spread over the
# scenario, two right when captures and agents start (where a tcpdump used to outlive the
# run), and one at its end (teardown and report)
MOMENTS = [("run.json", t) for t in (0.0, 0.3, 0.7, 1.1, 1.6, 2.2, 2.9, 3.7, 4.5, 5.3)] + \
          [(f"{SCENARIO}/r1-lan.tcpdump.log", 0.0), (f"{SCENARIO}/agents/callee.log", 0.0),
           (RECORD, 0.0)]


def _wait_for(results: Path, name: str, proc: subprocess.Popen[str]) -> None:
    def there() -> bool:
        assert proc.poll() is None, f"natlab ended first: {proc.communicate()}"
        return (results / "latest" / name).exists()
    wait_until(there, START_S, f"{name} in the run folder")


@pytest.mark.parametrize("index", range(len(MOMENTS)),
                         ids=[f"{m[0].split('/')[-1]}+{m[1]}s" for m in MOMENTS])
def test_stop_signal_at_any_moment(tmp_path: Path, index: int) -> None:
    anchor, delay = MOMENTS[index]
    sig = signal.SIGINT if index % 2 == 0 else signal.SIGTERM
    proc = start_run(tmp_path, SCENARIO)
    try:
        _wait_for(tmp_path, anchor, proc)
        time.sleep(delay)  # the moment itself is what the trial varies
        assert proc.poll() is None, "the run ended before the signal"
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=STOP_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert_nothing_left(PHONES)
    assert not is_locked(), "the run lock is still held (natlab or its reaper lives on)"
    summary = json.loads((tmp_path / "latest" / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["complete"] is False
    assert [s["name"] for s in summary["scenarios"]] in ([], [SCENARIO])
    print(f"{sig.name} at {anchor}+{delay}s: exit {proc.returncode}, nothing left")


def test_sigkill_leaves_nothing_within_2s(tmp_path: Path) -> None:
    proc = start_run(tmp_path, SCENARIO)
    try:
        _wait_for(tmp_path, f"{SCENARIO}/agents/caller.ready", proc)  # everything is up
        reaper = reaper_of(proc.pid)
        assert reaper is not None, "natlab runs no reaper"
        assert leftovers(PHONES), "nothing runs: the test would prove nothing"
    except BaseException:
        os.killpg(proc.pid, signal.SIGINT)
        proc.communicate(timeout=STOP_S)
        raise
    os.killpg(proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    finish(proc, 5)
    wait_until(lambda: not leftovers(PHONES), REAPED_S, "cleanup after SIGKILL")
    print(f"SIGKILL: nothing left after {time.monotonic() - killed:.2f} s")
    wait_until(lambda: not is_locked(), REAPED_S, "the reaper releasing the lock")
    res = subprocess.run([sys.executable, "-m", "natlab", "clean"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and "nothing" in res.stdout, res.stdout + res.stderr
