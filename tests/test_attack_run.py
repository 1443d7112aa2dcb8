"""The REGISTER hijack end to end (root): the attacker atk sends a REGISTER for 2005 to r1's
forwarded trunk port; the insecure PBX binds 2005 to the attacker (200 OK), the protected one
refuses it (403) and logs the source. About 20 s."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import requires, requires_root
from helpers import assert_nothing_left, run_scenarios

from analysis.packets import read_udp, sip_messages

pytestmark = [requires_root, requires("sipsak")]
PAIR = ("531_hijack_insecure", "532_hijack_protected")
ATTACKER = "192.0.2.66"


@pytest.fixture(scope="module")
def hijack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return run_scenarios(tmp_path_factory.mktemp("attack"), PAIR, timeout=120)


def _answers(folder: Path) -> list[str]:
    """First lines of the answers the attacker received, from its own capture."""
    msgs = sip_messages(read_udp(folder / "atk.pcap"))
    return [m.first_line for m in msgs if not m.is_request and m.pkt.dst == ATTACKER]


def test_insecure_pbx_binds_2005_to_the_attacker(hijack: dict[str, Any]) -> None:
    s = hijack["531_hijack_insecure"]
    assert s["verdict"] == "obtained" == s["expect"], s["explanation"]
    assert _answers(Path(s["dir"])) == ["SIP/2.0 200 OK"]
    assert f"sip:2005@{ATTACKER}" in s["explanation"]  # the new binding, in the 200 OK
    tool = json.loads((Path(s["dir"]) / "agents" / "attacker.json").read_text())
    assert tool["command"][0] == "sipsak" and tool["exit"] == 0


def test_protected_pbx_refuses_and_logs_the_source(hijack: dict[str, Any]) -> None:
    s = hijack["532_hijack_protected"]
    assert s["verdict"] == "refused" == s["expect"], s["explanation"]
    assert _answers(Path(s["dir"])) == ["SIP/2.0 403 Register On The LAN Socket"]
    log = (Path(s["dir"]) / "pbx1" / "pbx1.log").read_text()
    assert f"from {ATTACKER}:" in log and "403 no REGISTER on the trunk socket" in log
    assert all(s["checks"].values()), s["checks"]
    assert_nothing_left(["2005"])
