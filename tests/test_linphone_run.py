"""Linphone across both NATs (root): without a NAT policy the call fails with media sent toward
a private address; with STUN + ICE and the NAT-aware trunk it works. A phone kind whose program
is not installed is refused with one line, exit 2, before anything starts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, requires, requires_root
from helpers import assert_nothing_left, run_scenarios

pytestmark = [requires_root, requires("linphonec")]
CELLS = ("401_linphone_caller_nostun", "402_linphone_caller_stunice")


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return run_scenarios(tmp_path_factory.mktemp("linphone"), CELLS, timeout=300)


def test_no_nat_policy_fails_toward_private_address(cells: dict[str, Any]) -> None:
    sc = cells["401_linphone_caller_nostun"]
    assert sc["verdict"] == sc["expect"] == "fails"
    text = " ".join([sc["explanation"], *sc["evidence"]])
    assert "offers c=172.16.10.12" in text and "r1 sent 2005's RTP nowhere" in text
    assert "ran Linphone 5." in text and "NAT policy none" in text
    assert_nothing_left([])


def test_stun_ice_works_and_names_both_sdp_levels(cells: dict[str, Any]) -> None:
    sc = cells["402_linphone_caller_stunice"]
    assert sc["verdict"] == sc["expect"] == "works"
    caller = json.loads((sc["dir"] / "agents" / "caller.json").read_text())
    assert caller["agent"] == "linphone" and caller["linphone"]["ice"] is True
    first = caller["linphone"]["first_sdp"]  # the INVITE before ICE's re-INVITE
    assert first["session_addr"] == first["origin"] == "172.16.10.12"
    assert first["addr"] == "198.51.100.2"  # media level: r2's public address
    sent, got = sc["rtp_sent"], sc["rtp_received"]
    assert got["caller"] >= 0.95 * sent["callee"] > 0 and got["callee"] >= 0.95 * sent["caller"] > 0


def test_phone_kind_not_installed_is_refused(tmp_path: Path) -> None:
    """A PATH holding every program but linphonec: one line, exit 2, no run folder."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for d in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        for prog in Path(d).glob("*") if Path(d).is_dir() else ():
            link = bin_dir / prog.name
            if prog.name != "linphonec" and not link.exists():
                link.symlink_to(prog)
    results = tmp_path / "results"
    res = subprocess.run([sys.executable, "-m", "natlab", "run", "--scenario", CELLS[1],
                          "--results", str(results)], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, env={**os.environ, "PATH": str(bin_dir)})
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "linphonec" in lines[0] and "not installed" in lines[0]
    assert not results.exists() or not any(results.iterdir())
