"""The paper's central result, end to end: `natlab run` on the default set (6 scenarios)."""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from conftest import requires_root
from helpers import assert_nothing_left

pytestmark = requires_root


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    results = tmp_path_factory.mktemp("results")
    res = subprocess.run([sys.executable, "-m", "natlab", "run", "--set", "default",
                          "--results", str(results)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    latest = results / "latest"
    summary = json.loads((latest / "summary.json").read_text())
    return {"dir": latest, "summary": summary, "stdout": res.stdout,
            "by_name": {s["name"]: s for s in summary["scenarios"]}}


def test_summary_schema(run: dict[str, Any]) -> None:
    scenarios = run["summary"]["scenarios"]
    assert len(scenarios) == 6
    for s in scenarios:
        assert {"name", "stun", "trunk", "verdict", "rtp_received", "explanation"} <= set(s)
        assert s["trunk"] in ("none", "naive", "nat-aware") and isinstance(s["stun"], bool)
        assert set(s["rtp_received"]) == {"caller", "callee"}
    assert (run["dir"] / "report.md").read_text().count("### ") == 6
    assert_nothing_left(["1002", "1005", "2001", "2005"])


def test_only_stun_plus_nat_aware_trunk_works(run: dict[str, Any]) -> None:
    verdicts = {(s["stun"], s["trunk"]): s["verdict"] for s in run["summary"]["scenarios"]}
    assert verdicts == {(stun, trunk): "works" if (stun, trunk) == (True, "nat-aware") else "fails"
                        for stun in (False, True) for trunk in ("none", "naive", "nat-aware")}


def test_working_call_media_both_ways(run: dict[str, Any]) -> None:
    s = run["by_name"]["006_call_stun_nataware"]
    assert all(s["checks"].values()), s["checks"]
    for role in ("caller", "callee"):
        assert s["rtp_received"][role] >= 0.95 * s["rtp_sent"]["callee" if role == "caller"
                                                                else "caller"]
    assert "198.51.100.2" in s["explanation"] and "203.0.113.2" in s["explanation"]
    for pcap in ("r1-lan", "r1-wan", "r2-lan", "r2-wan", "pbx1", "pbx2"):
        assert (run["dir"] / s["name"] / f"{pcap}.pcap").stat().st_size > 24


@pytest.mark.parametrize("name", ["001_call_nostun_none", "004_call_stun_none"])
def test_no_trunk_is_404_at_own_pbx(run: dict[str, Any], name: str) -> None:
    s = run["by_name"][name]
    assert "404" in s["explanation"] and "never left LAN2" in s["explanation"]
    assert s["rtp_received"] == {"caller": 0, "callee": 0}


@pytest.mark.parametrize("name", ["002_call_nostun_naive", "005_call_stun_naive"])
def test_naive_trunk_loses_ack(run: dict[str, Any], name: str) -> None:
    s = run["by_name"][name]
    assert not s["checks"]["callee_confirmed"] and s["checks"]["invite_200"]
    assert "never got the ACK" in s["explanation"]
    assert "192.168.1.10" in s["explanation"] and "Record-Route" in s["explanation"]


def test_no_stun_media_goes_to_private_address(run: dict[str, Any]) -> None:
    s = run["by_name"]["003_call_nostun_nataware"]
    assert s["checks"]["callee_confirmed"] and s["checks"]["bye_answered"]
    assert s["rtp_received"] == {"caller": 0, "callee": 0}
    assert "c=192.168.1.25" in s["explanation"] and "private address of LAN1" in s["explanation"]
    assert "sent 1002's RTP nowhere" in s["explanation"]
