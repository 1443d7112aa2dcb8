"""A fault end to end: the core's link toward r1 down for 2 s in the middle of a working call
(`natlab run --scenario 604_fault_wan_link_down`). The call survives, the RTP gap measured at
each phone is about the 2 s the link was down, and nothing is left afterwards."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import requires_root
from helpers import assert_nothing_left

pytestmark = requires_root


def test_wan_link_down_2s_call_survives(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "natlab", "run", "--scenario",
                          "604_fault_wan_link_down", "--results", str(tmp_path)],
                         capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    rundir = tmp_path / "latest"
    s = json.loads((rundir / "summary.json").read_text())["scenarios"][0]
    assert s["verdict"] == "works", s["explanation"]
    log = json.loads((rundir / s["name"] / "fault.json").read_text())
    assert [st["cmd"] for st in log["steps"]] == ["ip link set core-r1 down",
                                                  "ip link set core-r1 up"]
    assert all(st["rc"] == 0 for st in log["steps"]) and log["error"] is None
    down_s = log["steps"][1]["t"] - log["steps"][0]["t"]
    assert 1.9 <= down_s <= 2.5, down_s
    gaps = s["fault"]["gaps"]
    assert [(g["sender"], g["receiver"]) for g in gaps] == [("1002", "2005"), ("2005", "1002")]
    for g in gaps:  # the outage each way is the time the link was down, to a packet or two
        assert abs(g["gap_ms"] - down_s * 1000) <= 80, g
        assert g["recovery"] == "ongoing RTP stream", g
        assert g["first_after"] in s["explanation"]
    assert "Fault timelines" in (rundir / "report.md").read_text()
    assert "Fault timelines" in (rundir / "report.html").read_text()
    assert_nothing_left(["1002", "1005", "2001", "2005"])
