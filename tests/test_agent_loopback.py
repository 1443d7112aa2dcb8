"""Two real pjsua2 agents on 127.0.0.1: a direct call, and a call to nobody."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO, finish, requires, wait_for_file

from agents.phone import MediaMapping, parse_sdp, rewrite_sdp
from agents.sipagent import main, stun_map
from agents.tones import contains_tone
from services.credentials import make_credentials
from services.host import LocalHost
from services.kamailio import Kamailio, PbxOptions, TrunkMode

DURATION = 3.0
CALLER_HZ, CALLEE_HZ = 440.0, 1000.0
PACKETS_PER_SECOND = 50  # PCMU, 20 ms ptime


def agent(workdir: Path, ext: str, sip_port: int, rtp_port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "agents.sipagent",
        "--ext",
        ext,
        "--bind",
        "127.0.0.1",
        "--sip-port",
        str(sip_port),
        "--rtp-port",
        str(rtp_port),
        "--workdir",
        str(workdir),
        "--report",
        str(workdir / f"{ext}.json"),
        *extra,
    ]


@pytest.fixture(scope="module")
def call_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Run callee 2000 and caller 1000 once; return both JSON reports by role."""
    work = tmp_path_factory.mktemp("loopback")
    ready = work / "2000.ready"
    callee = subprocess.Popen(
        agent(
            work,
            "2000",
            5081,
            4110,
            "--answer",
            "--tone-hz",
            str(CALLEE_HZ),
            "--max-wait",
            str(DURATION + 10),
            "--ready-file",
            str(ready),
        ),
        cwd=REPO,
    )
    try:
        wait_for_file(ready, 10)
        caller = subprocess.Popen(
            agent(
                work,
                "1000",
                5082,
                4210,
                "--call",
                "sip:2000@127.0.0.1:5081",
                "--tone-hz",
                str(CALLER_HZ),
                "--duration",
                str(DURATION),
            ),
            cwd=REPO,
        )
        assert finish(caller, DURATION + 20) == 0
        assert finish(callee, 20) == 0
    finally:
        if callee.poll() is None:
            callee.kill()
            callee.wait()
    return {ext: json.loads((work / f"{ext}.json").read_text()) for ext in ("1000", "2000")}


@pytest.mark.parametrize("ext", ["1000", "2000"])
def test_call_completes(call_reports: dict[str, dict[str, Any]], ext: str) -> None:
    r = call_reports[ext]
    assert r["error"] is None
    assert r["confirmed"] is True
    assert r["invite_code"] == 200
    assert r["bye"] == {"direction": "sent" if ext == "1000" else "received", "status": 200}
    assert r["codec"] == "PCMU/8000"
    assert [s["state"] for s in r["states"]][-2:] == ["CONFIRMED", "DISCONNECTED"]


def test_sdp_and_rtp_match(call_reports: dict[str, dict[str, Any]]) -> None:
    caller, callee = call_reports["1000"], call_reports["2000"]
    assert caller["local_sdp"] == callee["remote_sdp"] == {"addr": "127.0.0.1", "port": 4210}
    assert callee["local_sdp"] == caller["remote_sdp"] == {"addr": "127.0.0.1", "port": 4110}
    for me, other in ((caller, callee), (callee, caller)):
        assert me["rtp"]["tx"] >= 0.9 * DURATION * PACKETS_PER_SECOND
        assert me["rtp"]["rx"] >= 0.95 * other["rtp"]["tx"]
        assert me["media_seconds"] >= 0.9 * DURATION


def test_each_side_hears_the_other(call_reports: dict[str, dict[str, Any]]) -> None:
    for ext, own, far in (("1000", CALLER_HZ, CALLEE_HZ), ("2000", CALLEE_HZ, CALLER_HZ)):
        heard = call_reports[ext]["recording"]
        assert heard is not None and heard.endswith(f"{ext}-heard.wav")
        assert contains_tone(heard, far)
        assert not contains_tone(heard, own)


def test_call_to_nobody_ends_within_max_wait(tmp_path: Path) -> None:
    max_wait = 3.0
    start = time.monotonic()
    proc = subprocess.Popen(
        agent(
            tmp_path,
            "1001",
            5083,
            4220,
            "--call",
            "sip:2000@127.0.0.1:5099",
            "--duration",
            "2",
            "--max-wait",
            str(max_wait),
        ),
        cwd=REPO,
    )
    assert finish(proc, max_wait + 15) == 0
    assert time.monotonic() - start < max_wait + 4
    r = json.loads((tmp_path / "1001.json").read_text())
    assert r["confirmed"] is False
    assert r["invite_code"] is None
    assert r["bye"] == {"direction": None, "status": None}
    assert r["error"] == "call not confirmed within max-wait"


def test_bad_arguments_give_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--ext", "1", "--bind", "127.0.0.1", "--call", "1002"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["sipagent: error: --call EXT needs --pbx (or give a full sip: URI)"]
    assert main(["--ext", "1", "--bind", "nope", "--answer"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_sdp_parse_and_stun_rewrite() -> None:
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 10.0.1.2\r\ns=pjmedia\r\nc=IN IP4 10.0.1.2\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0 120\r\nc=IN IP4 10.0.1.2\r\na=rtcp:4001 IN IP4 10.0.1.2\r\n"
    )
    assert parse_sdp("INVITE sip:x SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n" + sdp) == {
        "addr": "10.0.1.2",
        "port": 4000,
    }
    public = rewrite_sdp(sdp, MediaMapping(addr="198.51.100.2", rtp=40000, rtcp=40001))
    assert parse_sdp(public) == {"addr": "198.51.100.2", "port": 40000}
    assert "a=rtcp:40001 IN IP4 198.51.100.2\r\n" in public
    assert "m=audio 40000 RTP/AVP 0 120\r\n" in public
    assert parse_sdp("v=0\r\ns=-\r\n") is None


@requires("turnserver")
def test_stun_map_against_coturn(tmp_path: Path) -> None:
    coturn = subprocess.Popen(
        ["turnserver", "--stun-only", "--listening-ip", "127.0.0.1", "--listening-port", "5095",
         "--no-cli", "--no-tls", "--no-dtls", "--log-file", "stdout",
         "--userdb", str(tmp_path / "turn.db"), "--pidfile", str(tmp_path / "turn.pid")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        end = time.monotonic() + 5
        mapped = None
        while mapped is None and time.monotonic() < end:
            mapped = stun_map("127.0.0.1", 4150, "127.0.0.1:5095")
        assert mapped == ("127.0.0.1", 4150)
    finally:
        coturn.terminate()
        coturn.wait(timeout=5)


AUTH_PBX_PORT = 15140
AUTH_PASSWORDS = make_credentials(["2001", "2002", "2003"])


@pytest.fixture(scope="module")
def auth_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """A protected kamailio; pjsua2 2001 calls baresip 2002, both with their passwords;
    2003 registers with 2001's password. All reports by extension."""
    work = tmp_path_factory.mktemp("auth")
    options = PbxOptions(name="pbxauth", lan_ip="127.0.0.1", public_ip="127.0.0.2",
                         local_prefix="2", peer_prefix="1", peer_public_ip="127.0.0.3",
                         trunk=TrunkMode.NONE, sip_port=AUTH_PBX_PORT,
                         trunk_port=AUTH_PBX_PORT + 1, passwords=AUTH_PASSWORDS)
    pbx = Kamailio(LocalHost(), work / "pbx", options)
    pbx.render()
    pbx.check()
    pbx.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        pbx.wait_ready(5.0)
        registrar = ("--pbx", f"127.0.0.1:{AUTH_PBX_PORT}")
        callee = agent(work, "2002", 5094, 4130, "--answer", "--tone-hz", str(CALLEE_HZ),
                       "--max-wait", str(DURATION + 10), "--ready-file", str(work / "2002.ready"),
                       *registrar, "--password", AUTH_PASSWORDS["2002"])
        callee[2] = "agents.baresip_agent"  # the same command line, the baresip agent
        procs.append(subprocess.Popen(callee, cwd=REPO))
        procs.append(subprocess.Popen(agent(work, "2003", 5097, 4140, "--answer", "--max-wait",
                                            "5", *registrar, "--password",
                                            AUTH_PASSWORDS["2001"]), cwd=REPO))
        wait_for_file(work / "2002.ready", 10)
        procs.append(subprocess.Popen(agent(work, "2001", 5092, 4120, "--call", "2002",
                                            "--tone-hz", str(CALLER_HZ), "--duration",
                                            str(DURATION), *registrar, "--password",
                                            AUTH_PASSWORDS["2001"]), cwd=REPO))
        for proc in procs:
            assert finish(proc, DURATION + 20) == 0
        log = pbx.log_path.read_text()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        pbx.stop()
    reports = {ext: json.loads((work / f"{ext}.json").read_text())
               for ext in ("2001", "2002", "2003")}
    reports["pbx"] = {"log": log}
    return reports


def test_call_through_a_protected_pbx(auth_reports: dict[str, dict[str, Any]]) -> None:
    caller, callee = auth_reports["2001"], auth_reports["2002"]
    for r in (caller, callee):
        assert r["register_code"] == 200
        assert r["error"] is None and r["confirmed"] is True and r["invite_code"] == 200
        assert r["rtp"]["tx"] >= 0.9 * DURATION * PACKETS_PER_SECOND
    assert callee["agent"] == "baresip"
    assert contains_tone(caller["recording"], CALLEE_HZ)
    log = auth_reports["pbx"]["log"]
    for ext, port in (("2001", 5092), ("2002", 5094)):  # baresip's To has the port
        assert re.search(rf"REGISTER sip:{ext}@127\.0\.0\.1\S* from 127\.0\.0\.1:{port} "
                         r"-> 401 challenge", log)
    assert "INVITE sip:2002@127.0.0.1:15140 from 127.0.0.1:5092 -> 407 challenge" in log
    for password in AUTH_PASSWORDS.values():
        assert password not in log


def test_wrong_password_is_refused(auth_reports: dict[str, dict[str, Any]]) -> None:
    r = auth_reports["2003"]
    assert r["register_code"] == 403
    assert r["error"] == "registration failed: 403"
    assert "403 wrong password for 2003" in auth_reports["pbx"]["log"]
