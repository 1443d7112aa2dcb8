"""A small load step end to end (root): 10 simultaneous SIPp calls LAN2 -> LAN1 through both
NATs beside two pjsua2 calls; every call completes with its BYE answered and no RTP is lost."""
from __future__ import annotations

import pytest
from conftest import requires, requires_root
from helpers import assert_nothing_left, run_scenarios

pytestmark = [requires_root, requires("sipp", "kamailio", "turnserver")]


def test_ten_simultaneous_calls_complete_without_loss(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    steps = run_scenarios(tmp_path_factory.mktemp("load"), ["701_load_10"], timeout=180)
    (step,) = steps.values()
    row = step["load"]
    assert step["verdict"] == "works", step["explanation"]
    assert (row["attempted"], row["established"], row["completed"]) == (10, 10, 10)
    assert row["missing"] == 0 and row["loss_pct"]["max"] == 0.0
    assert row["directions"] == 2 * 10 + 4  # each SIPp call both ways, two pjsua2 calls
    assert row["mos"]["phones_min"] >= 4.3
    assert row["conntrack"]["r1"]["udp"] >= 10 and row["conntrack"]["r2"]["udp"] >= 10
    assert_nothing_left(["1002", "1005", "2001", "2005", "1900", "2900"])
