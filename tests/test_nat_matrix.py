"""NAT matrix cells end to end (root): TURN through symmetric NAT on both sides, media anchored
by rtpengine through symmetric NAT, and the mapping-lifetime pair (keepalives fix it)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import requires, requires_root
from helpers import assert_nothing_left, run_scenarios

pytestmark = [requires_root, requires("rtpengine", "turnutils_natdiscovery", "nft")]
CELLS = ("343_symmetric_iceturn", "344_symmetric_anchor", "383_lifetime_nokeepalive",
         "384_lifetime_keepalive")


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return run_scenarios(tmp_path_factory.mktemp("nat"), CELLS, timeout=400)


def test_turn_relays_through_symmetric_nat_on_both_sides(cells: dict[str, Any]) -> None:
    s = cells["343_symmetric_iceturn"]
    assert s["verdict"] == "works", s["explanation"]
    assert s["nat"]["path"] == "relayed" and s["nat"]["measured"]["lan1"].startswith("APDM/APDF")
    for role in ("caller", "callee"):
        ice = json.loads((Path(s["dir"]) / "agents" / f"{role}.json").read_text())["ice"]
        assert ice["selected"]["local"]["type"] == "relay", ice


def test_rtpengine_anchors_media_through_symmetric_nat(cells: dict[str, Any]) -> None:
    s = cells["344_symmetric_anchor"]
    assert s["verdict"] == "works", s["explanation"]
    assert s["nat"]["path"] == "anchored"
    assert s["explanation"].count("names 192.0.2.10:") == 2  # both phones were told: the relay


def test_mapping_lifetime_and_keepalive(cells: dict[str, Any]) -> None:
    lost, kept = cells["383_lifetime_nokeepalive"], cells["384_lifetime_keepalive"]
    assert kept["verdict"] == "works", kept["explanation"]
    assert lost["verdict"] == "fails"
    first, second = lost["calls"]
    assert first["verdict"] == "works" and second["verdict"] == "fails"
    assert not second["checks"]["invite_200"]  # r2 forgot the trunk mapping: no INVITE came in
    drops = json.loads((Path(lost["dir"]) / "nat.json").read_text())["routers"]["lan2"]["drops"]
    assert sum(d["packets"] for d in drops.values()) > 0
    assert_nothing_left(["1002", "1005", "2001", "2005"])
