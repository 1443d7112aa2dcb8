"""Nothing survives Ctrl-C, SIGKILL + `natlab clean`; a second concurrent run is refused."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import requires_root
from helpers import assert_nothing_left

from natlab.guard import RunLock, is_locked

pytestmark = requires_root
PHONES = ["1002", "1005", "2001", "2005"]
SCENARIO = "006_call_stun_nataware"


def _start_run(results: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "natlab", "run", "--scenario", SCENARIO,
                             "--results", str(results)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_mid_call(results: Path, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    """Until the caller has registered and placed its call."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list(results.glob(f"*/{SCENARIO}/agents/caller.ready")):
            time.sleep(1.5)  # the call is up by now (RTP flowing)
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("the call never started")


def test_sigint_mid_call_leaves_nothing(tmp_path: Path) -> None:
    proc = _start_run(tmp_path)
    try:
        _wait_mid_call(tmp_path, proc)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _, err = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert not is_locked()
    assert_nothing_left(PHONES)
    latest = tmp_path / "latest"  # the partial results, marked
    summary = json.loads((latest / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["complete"] is False
    assert [s["name"] for s in summary["scenarios"]] == [SCENARIO]
    assert "**Interrupted:**" in (latest / "report.md").read_text()
    record = json.loads((latest / SCENARIO / "scenario.json").read_text())
    assert record["status"] == "interrupted"


def test_sigkill_then_clean(tmp_path: Path) -> None:
    proc = _start_run(tmp_path)
    _wait_mid_call(tmp_path, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    res = subprocess.run([sys.executable, "-m", "natlab", "clean"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "removed pid" in res.stdout  # it really had something to clean
    assert_nothing_left(PHONES)


def test_second_run_refused(tmp_path: Path) -> None:
    lock = RunLock()
    lock.acquire(tmp_path, PHONES)
    try:
        res = subprocess.run([sys.executable, "-m", "natlab", "run", "--scenario", SCENARIO,
                              "--results", str(tmp_path / "r")], capture_output=True, text=True,
                             timeout=60)
    finally:
        lock.release()
    assert res.returncode == 2
    assert res.stderr.startswith("natlab: error: another natlab run is active")
    assert res.stderr.count("\n") == 1
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())
