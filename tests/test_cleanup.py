"""Nothing survives Ctrl-C, SIGKILL of natlab and its reaper + `natlab clean`; a second
concurrent run is refused. (Stop signals at many moments, SIGKILL alone: test_signals.py.)"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from helpers import assert_nothing_left, reaper_of, requires_root, start_run, wait_until

from analysis.packets import read_udp
from natlab.guard import RunLock, is_locked
from topology.plan import Plan

pytestmark = requires_root
PHONES = ["1002", "1005", "2001", "2005"]
SCENARIO = "006_call_stun_nataware"
CALLER = "1002"


def _rtp_both_ways(results: Path, caller_ip: str) -> bool:
    """The caller's capture holds RTP it sent and RTP it received (tcpdump writes with -U)."""
    pcaps = list(results.glob(f"*/{SCENARIO}/p{CALLER}.pcap"))
    if not pcaps:
        return False
    rtp = [p for p in read_udp(pcaps[0]) if p.kind == "rtp"]
    return any(p.src == caller_ip for p in rtp) and any(p.dst == caller_ip for p in rtp)


def _wait_mid_call(results: Path, proc: subprocess.Popen[str], plan: Plan,
                   timeout: float = 30) -> None:
    """Until media flows both ways at the caller: the call is up."""
    caller_ip = next(lan.phones[CALLER] for lan in plan.lans if CALLER in lan.phones)

    def mid_call() -> bool:
        assert proc.poll() is None, proc.communicate()
        return _rtp_both_ways(results, caller_ip)

    wait_until(mid_call, timeout, "RTP both ways at the caller")


def test_sigint_mid_call_leaves_nothing(tmp_path: Path, plan: Plan) -> None:
    proc = start_run(tmp_path, SCENARIO)
    try:
        _wait_mid_call(tmp_path, proc, plan)
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


def test_sigkill_then_clean(tmp_path: Path, plan: Plan) -> None:
    """natlab and its reaper both killed (as by the OOM killer): `natlab clean` is the
    fallback for what PR_SET_PDEATHSIG does not remove (bridges and their ports)."""
    proc = start_run(tmp_path, SCENARIO)
    try:
        _wait_mid_call(tmp_path, proc, plan)
        reaper = reaper_of(proc.pid)
        assert reaper is not None, "natlab runs no reaper"
    except BaseException:
        os.killpg(proc.pid, signal.SIGINT)  # let natlab undo what it built
        proc.communicate(timeout=40)
        raise
    os.kill(reaper, signal.SIGKILL)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    res = subprocess.run([sys.executable, "-m", "natlab", "clean"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "link s1" in res.stdout  # the bridges: it really had something to clean
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
