"""The paper's other services across both NATs: ring group, conference, video, baresip."""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from helpers import assert_nothing_left, requires_root

pytestmark = requires_root

VIDEO = """description = "short video call"
stun = true
trunk = "nat-aware"
expect = "works"
baresip = ["1002", "2005"]
kind = "video"
duration_s = 5
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("services")
    video = tmp / "290_video_short.toml"
    video.write_text(VIDEO)
    names = ["211_ringgroup_parallel", "212_ringgroup_sequential", "221_conference_3party",
             "231_baresip_nostun_nataware", "232_baresip_stun_nataware",
             "202_video_nostun_nataware", str(video)]
    args = [a for n in names for a in ("--scenario", n)]
    res = subprocess.run([sys.executable, "-m", "natlab", "run", *args, "--results",
                          str(tmp / "results")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    latest = tmp / "results" / "latest"
    summary = json.loads((latest / "summary.json").read_text())
    qos = json.loads((latest / "qos.json").read_text())
    return {"dir": latest, "by_name": {s["name"]: s for s in summary["scenarios"]},
            "qos": {s["name"]: s for s in qos["scenarios"]}}


def test_verdicts_match_the_paper(run: dict[str, Any]) -> None:
    for name, s in run["by_name"].items():
        assert s["verdict"] == s["expect"], f"{name}: {s['explanation']}"
    assert_nothing_left(["1002", "1005", "2001", "2005"])


def test_ring_group_first_answer_wins_and_loser_sees_cancel(run: dict[str, Any]) -> None:
    s = run["by_name"]["211_ringgroup_parallel"]
    assert s["checks"]["first_to_answer_won"] and s["checks"]["cancel_on_wire"]
    assert "2001 answered first" in s["explanation"]
    assert "192.168.1.25 (2005) got CANCEL from PBX1 (p2005.pcap frame" in s["explanation"]
    hunt = run["by_name"]["212_ringgroup_sequential"]
    assert "2005 answered" in hunt["explanation"] and hunt["checks"]["losers_cancelled"]


def test_qos_rows_for_ring_group_and_conference(run: dict[str, Any]) -> None:
    ring = run["qos"]["211_ringgroup_parallel"]["rows"]
    assert {(r["sender"], r["receiver"]) for r in ring} == {("1002", "2001"), ("2001", "1002")}
    conf = run["qos"]["221_conference_3party"]["rows"]
    assert len(conf) == 6 and all(r["packets"] >= 250 and r["loss_pct"] == 0 for r in conf)
    assert {r["receiver"] for r in conf} == {"bridge", "1002", "2001", "2005"}


def test_conference_mixes_every_other_party(run: dict[str, Any]) -> None:
    s = run["by_name"]["221_conference_3party"]
    for ext in ("1002", "2001", "2005"):
        assert s["checks"][f"{ext}_hears_others"] and s["checks"][f"{ext}_rtp_both_ways"]
    parts = {p["name"]: p for p in s["calls"]}
    assert set(parts["1002"]["heard_db"]) == {"1000", "1500"}  # JSON keys are strings
    assert all(v > -10 for v in parts["2005"]["heard_db"].values())


def test_video_both_ways_on_negotiated_payload_type(run: dict[str, Any]) -> None:
    s = run["by_name"]["290_video_short"]
    assert s["checks"]["video_to_caller"] and s["checks"]["video_to_callee"]
    assert "negotiated VP8 payload type 96" in s["explanation"]
    failing = run["by_name"]["202_video_nostun_nataware"]
    assert not failing["checks"]["video_to_callee"]
    assert "VP8 packets leaving toward the private address" in failing["explanation"]


def test_baresip_interop_same_verdicts_as_pjsua2(run: dict[str, Any]) -> None:
    assert run["by_name"]["231_baresip_nostun_nataware"]["verdict"] == "fails"
    assert "sent 1002's RTP nowhere" in run["by_name"]["231_baresip_nostun_nataware"][
        "explanation"]
    assert run["by_name"]["232_baresip_stun_nataware"]["verdict"] == "works"
