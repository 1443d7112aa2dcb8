"""A real kamailio, the conference bridge 2900 and three pjsua2 callers, all on 127.0.0.1."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO, finish, kill_all, requires, running, wait_for_file

from agents.confbridge import main as confbridge_main
from agents.tones import tone_levels
from services.coturn import Coturn, CoturnOptions
from services.credentials import make_credentials
from services.host import LocalHost
from services.kamailio import Kamailio, PbxOptions, TrunkMode

SIP_PORT, STUN_PORT = 15110, 15120
PASSWORDS = make_credentials(["2900", "2011", "2012", "2013"])
PBX = PbxOptions(name="pbxconf", lan_ip="127.0.0.1", public_ip="127.0.0.2", local_prefix="2",
                 peer_prefix="1", peer_public_ip="127.0.0.3", trunk=TrunkMode.NONE,
                 sip_port=SIP_PORT, trunk_port=SIP_PORT + 1, passwords=PASSWORDS)
BRIDGE_SIP, BRIDGE_RTP = 5180, 4800
CONF_SECONDS = 6.0  # the bridge's --max-wait: it hangs up on everyone then
# caller ext -> (tone Hz, SIP port, RTP port)
CALLERS = {"2011": (440.0, 5181, 4900), "2012": (1000.0, 5182, 4920),
           "2013": (1500.0, 5183, 4940)}
PACKETS_PER_SECOND = 50
needs_kamailio = requires("kamailio")


def bridge_cmd(work: Path, max_wait: float) -> list[str]:
    return [sys.executable, "-m", "agents.confbridge", "--ext", "2900", "--bind", "127.0.0.1",
            "--sip-port", str(BRIDGE_SIP), "--rtp-port", str(BRIDGE_RTP),
            "--pbx", f"127.0.0.1:{SIP_PORT}", "--max-wait", str(max_wait), "--record",
            "--workdir", str(work), "--report", str(work / "2900.json"),
            "--ready-file", str(work / "2900.ready"), "--password", PASSWORDS["2900"]]


def caller_cmd(work: Path, ext: str) -> list[str]:
    hz, sip, rtp = CALLERS[ext]
    return [sys.executable, "-m", "agents.sipagent", "--ext", ext, "--bind", "127.0.0.1",
            "--sip-port", str(sip), "--rtp-port", str(rtp), "--pbx", f"127.0.0.1:{SIP_PORT}",
            "--call", "2900", "--tone-hz", str(hz), "--duration", "20", "--max-wait", "20",
            "--workdir", str(work), "--report", str(work / f"{ext}.json"),
            "--password", PASSWORDS[ext]]


def caller_of(participant: dict[str, Any]) -> str:
    """The extension in a participant's remote URI, e.g. <sip:2011@127.0.0.1>."""
    match = re.match(r"<?sip:(\d+)@", participant["remote_uri"])
    assert match, participant["remote_uri"]
    return match.group(1)


@pytest.fixture(scope="module")
def pbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kamailio]:
    with running(Kamailio(LocalHost(), tmp_path_factory.mktemp("pbx"), PBX)) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def conference(pbx: Kamailio, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Bridge 2900 + three callers who stay until the bridge hangs up; all reports."""
    work = tmp_path_factory.mktemp("conf")
    procs = [subprocess.Popen(bridge_cmd(work, CONF_SECONDS), cwd=REPO)]
    try:
        wait_for_file(work / "2900.ready", 10)
        procs += [subprocess.Popen(caller_cmd(work, ext), cwd=REPO) for ext in CALLERS]
        for proc in procs:
            assert proc.wait(timeout=CONF_SECONDS + 15) == 0
    finally:
        kill_all(procs)
    return {ext: json.loads((work / f"{ext}.json").read_text()) for ext in ["2900", *CALLERS]}


@needs_kamailio
def test_bridge_report(conference: dict[str, Any]) -> None:
    bridge = conference["2900"]
    assert bridge["error"] is None and bridge["register_code"] == 200
    parts = bridge["participants"]
    assert sorted(caller_of(p) for p in parts) == sorted(CALLERS)
    ports = {p["local_sdp"]["port"] for p in parts}
    assert len(ports) == 3 and all(BRIDGE_RTP <= port < BRIDGE_RTP + 16 for port in ports)
    for p in parts:
        assert p["confirmed"] is True
        assert p["t_join"] is not None and p["t_leave"] is not None
        in_call = p["t_leave"] - p["t_join"]
        assert p["rtp"]["tx"] >= 0.8 * in_call * PACKETS_PER_SECOND
        assert p["rtp"]["rx"] >= 0.8 * in_call * PACKETS_PER_SECOND


@needs_kamailio
@pytest.mark.parametrize("ext", sorted(CALLERS))
def test_caller_in_conference(conference: dict[str, Any], ext: str) -> None:
    r = conference[ext]
    assert r["error"] is None and r["confirmed"] is True and r["invite_code"] == 200
    assert r["bye"] == {"direction": "received", "status": 200}  # the bridge hung up
    assert r["rtp"]["tx"] >= 0.8 * r["media_seconds"] * PACKETS_PER_SECOND
    assert r["rtp"]["rx"] >= 0.8 * r["media_seconds"] * PACKETS_PER_SECOND
    assert r["media_seconds"] >= CONF_SECONDS - 2


@needs_kamailio
@pytest.mark.parametrize("ext", sorted(CALLERS))
def test_each_caller_hears_the_two_others(conference: dict[str, Any], ext: str) -> None:
    own = CALLERS[ext][0]
    others = [hz for e, (hz, _, _) in CALLERS.items() if e != ext]
    levels = tone_levels(conference[ext]["recording"], [own, *others])
    for hz in others:
        assert levels[hz] >= -10.0, levels  # each far tone carries a real share of the power
        assert levels[hz] - levels[own] >= 20.0, levels  # and our own tone is not echoed


@needs_kamailio
def test_bridge_recordings_hold_the_others(conference: dict[str, Any]) -> None:
    by_ext = {caller_of(p): p for p in conference["2900"]["participants"]}
    for ext, (own, _, _) in CALLERS.items():
        heard = by_ext[ext]["recording"]
        others = [hz for e, (hz, _, _) in CALLERS.items() if e != ext]
        levels = tone_levels(heard, [own, *others])
        assert min(levels[hz] for hz in others) - levels[own] >= 20.0, levels


@needs_kamailio
def test_sigterm_ends_an_empty_conference(pbx: Kamailio, tmp_path: Path) -> None:
    proc = subprocess.Popen(bridge_cmd(tmp_path, 30), cwd=REPO)
    try:
        wait_for_file(tmp_path / "2900.ready", 10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        kill_all([proc])
    r = json.loads((tmp_path / "2900.json").read_text())
    assert r["participants"] == [] and r["error"] is None and r["register_code"] == 200


@needs_kamailio
@requires("turnserver")
def test_stun_maps_every_rtp_port(pbx: Kamailio, tmp_path: Path) -> None:
    with running(Coturn(LocalHost(), tmp_path / "stun", CoturnOptions(("127.0.0.1",),
                                                                      STUN_PORT))):
        proc = subprocess.Popen(bridge_cmd(tmp_path, 1) + ["--stun", f"127.0.0.1:{STUN_PORT}"],
                                cwd=REPO)
        assert finish(proc, 15) == 0
    r = json.loads((tmp_path / "2900.json").read_text())
    assert r["error"] is None
    assert r["stun_mapped"] == {str(port): {"addr": "127.0.0.1", "rtp": port, "rtcp": port + 1}
                                for port in range(BRIDGE_RTP, BRIDGE_RTP + 16, 2)}


def test_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert confbridge_main(["--ext", "2900", "--bind", "127.0.0.1"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "confbridge: error: the following arguments are required: --pbx"]
