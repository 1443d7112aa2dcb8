"""A small load step end to end (root): 10 simultaneous SIPp calls LAN2 -> LAN1 through both
NATs beside two pjsua2 calls; every call completes with its BYE answered and no RTP is lost."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT, requires, requires_root
from helpers import assert_nothing_left

pytestmark = [requires_root, requires("sipp", "kamailio", "turnserver")]


def test_ten_simultaneous_calls_complete_without_loss(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    results = tmp_path_factory.mktemp("load")
    res = subprocess.run([sys.executable, "-m", "natlab", "run", "--scenario", "701_load_10",
                          "--results", str(results)], capture_output=True, text=True,
                         timeout=180, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((results / "latest" / "summary.json").read_text())
    (step,) = summary["scenarios"]
    row = step["load"]
    assert step["verdict"] == "works", step["explanation"]
    assert (row["attempted"], row["established"], row["completed"]) == (10, 10, 10)
    assert row["missing"] == 0 and row["loss_pct"]["max"] == 0.0
    assert row["directions"] == 2 * 10 + 4  # each SIPp call both ways, two pjsua2 calls
    assert row["mos"]["phones_min"] >= 4.3
    assert row["conntrack"]["r1"]["udp"] >= 10 and row["conntrack"]["r2"]["udp"] >= 10
    assert_nothing_left(["1002", "1005", "2001", "2005", "1900", "2900"])
