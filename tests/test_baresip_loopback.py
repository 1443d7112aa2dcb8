"""Real baresip agents on 127.0.0.1 against the pjsua2 agent and each other, no registrar.

Ports: SIP 5130-5160 (a baresip also takes TCP sip-port+1), RTP 4400-4600.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO, finish, requires, wait_for_file, wait_until

from agents import baresip_conf as bc
from agents.baresip_agent import main
from agents.tones import contains_tone

DURATION = 3.0
CALLER_HZ, CALLEE_HZ = 440.0, 1000.0
PACKETS_PER_SECOND = 50  # PCMU, 20 ms ptime
Reports = dict[str, dict[str, Any]]

pytestmark = requires("baresip")


def agent(module: str, work: Path, ext: str, sip: int, rtp: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", f"agents.{module}", "--ext", ext, "--bind", "127.0.0.1",
            "--sip-port", str(sip), "--rtp-port", str(rtp), "--workdir", str(work),
            "--report", str(work / f"{ext}.json"), *extra]  # fmt: skip


def callee_args(work: Path) -> list[str]:
    return ["--answer", "--tone-hz", str(CALLEE_HZ), "--max-wait", str(DURATION + 10),
            "--ready-file", str(work / "callee.ready")]  # fmt: skip


def caller_args(sip: int, duration: float = DURATION) -> list[str]:
    return ["--call", f"sip:2000@127.0.0.1:{sip}", "--tone-hz", str(CALLER_HZ),
            "--duration", str(duration)]  # fmt: skip


def baresips_of(work: Path) -> list[int]:
    """Pids of baresip processes whose config dir is under `work`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if entry.name.isdigit() and b"baresip" in cmd[0] and str(work).encode() in b" ".join(cmd):
            found.append(int(entry.name))
    return found


def run_call(work: Path, callee: list[str], caller: list[str]) -> Reports:
    """Start the callee, then the caller once it is ready; both reports, by ext."""
    proc = subprocess.Popen(callee, cwd=REPO, stdout=subprocess.DEVNULL)
    try:
        wait_for_file(work / "callee.ready", 10)
        assert finish(subprocess.Popen(caller, cwd=REPO, stdout=subprocess.DEVNULL),
                      DURATION + 20) == 0  # fmt: skip
        assert finish(proc, 20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert baresips_of(work) == []
    return {ext: json.loads((work / f"{ext}.json").read_text()) for ext in ("1000", "2000")}


@pytest.fixture(scope="module")
def baresip_calls_pjsua(tmp_path_factory: pytest.TempPathFactory) -> Reports:
    work = tmp_path_factory.mktemp("bs2pj")
    return run_call(work, agent("sipagent", work, "2000", 5132, 4410, *callee_args(work)),
                    agent("baresip_agent", work, "1000", 5130, 4400, *caller_args(5132)))


@pytest.fixture(scope="module")
def pjsua_calls_baresip(tmp_path_factory: pytest.TempPathFactory) -> Reports:
    work = tmp_path_factory.mktemp("pj2bs")
    return run_call(work, agent("baresip_agent", work, "2000", 5136, 4430, *callee_args(work)),
                    agent("sipagent", work, "1000", 5134, 4420, *caller_args(5136)))


@pytest.fixture(scope="module")
def video_call(tmp_path_factory: pytest.TempPathFactory) -> Reports:
    work = tmp_path_factory.mktemp("video")
    return run_call(
        work,
        agent("baresip_agent", work, "2000", 5140, 4450, "--video", *callee_args(work)),
        agent("baresip_agent", work, "1000", 5138, 4440, "--video", *caller_args(5140)),
    )


def check_audio_call(reports: Reports, baresip_ext: str) -> None:
    caller, callee = reports["1000"], reports["2000"]
    assert reports[baresip_ext]["agent"] == "baresip"
    for r, direction in ((caller, "sent"), (callee, "received")):
        assert r["error"] is None
        assert r["confirmed"] is True and r["invite_code"] == 200
        assert r["bye"] == {"direction": direction, "status": 200}
        assert r["codec"] == "PCMU/8000"
        assert [s["state"] for s in r["states"]][-2:] == ["CONFIRMED", "DISCONNECTED"]
    assert caller["local_sdp"] == callee["remote_sdp"]
    assert callee["local_sdp"] == caller["remote_sdp"]
    for me, other in ((caller, callee), (callee, caller)):
        assert me["rtp"]["tx"] >= 0.9 * DURATION * PACKETS_PER_SECOND
        assert me["rtp"]["rx"] >= 0.95 * other["rtp"]["tx"]
        assert me["media_seconds"] >= 0.9 * DURATION
    for r, own, far in ((caller, CALLER_HZ, CALLEE_HZ), (callee, CALLEE_HZ, CALLER_HZ)):
        assert r["recording"] is not None and r["recording"].endswith(f"{r['ext']}-heard.wav")
        assert contains_tone(r["recording"], far)
        assert not contains_tone(r["recording"], own)


def test_baresip_caller_pjsua_callee(baresip_calls_pjsua: Reports) -> None:
    check_audio_call(baresip_calls_pjsua, "1000")
    assert baresip_calls_pjsua["1000"]["local_sdp"] == {"addr": "127.0.0.1", "port": 4400}


def test_pjsua_caller_baresip_callee(pjsua_calls_baresip: Reports) -> None:
    check_audio_call(pjsua_calls_baresip, "2000")
    assert pjsua_calls_baresip["2000"]["local_sdp"] == {"addr": "127.0.0.1", "port": 4430}
    assert [s["state"] for s in pjsua_calls_baresip["2000"]["states"]][0] == "INCOMING"


def test_baresip_video_call(video_call: Reports) -> None:
    check_audio_call(video_call, "1000")
    caller, callee = video_call["1000"], video_call["2000"]
    log = (Path(callee["recording"]).parent / "2000-baresip.log").read_text(errors="replace")
    answer = next(m for m in bc.parse_trace(log, "127.0.0.1:5140")
                  if m.method == "INVITE" and m.status == 200)  # fmt: skip
    vp8 = bc.parse_sdp(answer.body)["video"].pt_of("VP8")
    assert vp8 is not None
    for me, other in ((caller, callee), (callee, caller)):
        video = me["video"]
        assert video["codec"] == "VP8" and video["payload_type"] == vp8
        assert video["rtp"]["tx"] > DURATION * 10  # fakevideo: 25 frames/s
        assert video["rtp"]["rx"] > 0
        assert video["rtp"]["rx"] >= 0.9 * other["video"]["rtp"]["tx"]


def test_sigterm_mid_call(tmp_path: Path) -> None:
    callee = subprocess.Popen(agent("sipagent", tmp_path, "2000", 5144, 4470, "--answer",
                                    "--max-wait", "40", "--ready-file",
                                    str(tmp_path / "callee.ready")),
                              cwd=REPO, stdout=subprocess.DEVNULL)  # fmt: skip
    caller: subprocess.Popen[bytes] | None = None
    try:
        wait_for_file(tmp_path / "callee.ready", 10)
        caller = subprocess.Popen(agent("baresip_agent", tmp_path, "1000", 5142, 4460,
                                        *caller_args(5144, duration=30)), cwd=REPO)
        log = tmp_path / "1000-baresip.log"
        media = b"stream: incoming rtp for 'audio' established"  # baresip's first RTP in
        wait_until(lambda: log.exists() and media in log.read_bytes(), 10,
                   "RTP reaching the caller")  # fmt: skip
        start = time.monotonic()
        caller.send_signal(signal.SIGTERM)
        assert finish(caller, 10) == 0
        assert time.monotonic() - start < 5
        assert finish(callee, 10) == 0
    finally:
        for proc in (callee, caller):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert baresips_of(tmp_path) == []
    r = json.loads((tmp_path / "1000.json").read_text())
    assert r["confirmed"] is True and r["error"] is None
    assert r["bye"] == {"direction": "sent", "status": 200}
    assert r["rtp"]["tx"] > 0 and r["rtp"]["rx"] > 0
    assert [s["state"] for s in r["states"]][-1] == "DISCONNECTED"


def test_call_to_nobody_ends_within_max_wait(tmp_path: Path) -> None:
    start = time.monotonic()
    proc = subprocess.Popen(agent("baresip_agent", tmp_path, "1000", 5146, 4480,
                                  "--call", "sip:2000@127.0.0.1:5159", "--max-wait", "3"),
                            cwd=REPO)  # fmt: skip
    assert finish(proc, 20) == 0
    assert time.monotonic() - start < 3 + 4
    assert baresips_of(tmp_path) == []
    r = json.loads((tmp_path / "1000.json").read_text())
    assert r["confirmed"] is False and r["invite_code"] is None
    assert r["bye"] == {"direction": None, "status": None}
    assert r["error"] == "call not confirmed within max-wait"


def test_unanswered_call_is_cancelled(tmp_path: Path) -> None:
    callee = agent("baresip_agent", tmp_path, "2000", 5150, 4500, "--no-answer", "--max-wait",
                   "10", "--ready-file", str(tmp_path / "callee.ready"))  # fmt: skip
    caller = agent("sipagent", tmp_path, "1000", 5148, 4490, "--call", "sip:2000@127.0.0.1:5150",
                   "--max-wait", "2")  # fmt: skip
    reports = run_call(tmp_path, callee, caller)
    r = reports["2000"]
    assert r["cancelled"] is True and r["confirmed"] is False
    assert r["invite_code"] == 487 and r["error"] == "cancelled by caller/PBX"
    assert [s["state"] for s in r["states"]] == ["INCOMING", "DISCONNECTED"]
    assert reports["1000"]["confirmed"] is False


def test_bad_arguments_give_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--ext", "1", "--bind", "127.0.0.1", "--call", "1002"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["baresip_agent: error: --call EXT needs --pbx (or give a full sip: URI)"]
    assert main(["--ext", "1", "--bind", "127.0.0.1", "--answer", "--rtp-port", "4001"]) == 2
    assert main(["--ext", "1", "--bind", "nope", "--answer"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 2


def test_netstrings_and_log_parsing() -> None:
    frames = bc.netstring({"command": "dial", "params": "sip:a@b"})
    assert frames == b'40:{"command": "dial", "params": "sip:a@b"},'
    dec = bc.NetstringDecoder()
    assert dec.feed(frames[:7]) == [] and dec.feed(frames[7:] + b"2:{},") == [
        {"command": "dial", "params": "sip:a@b"}, {}]
    with pytest.raises(ValueError):
        bc.NetstringDecoder().feed(b"x2:{},")
    log = ("\x1b[36;1m#\nUDP 10.0.0.1:5060 -> 10.0.0.2:5060\nBYE sip:b SIP/2.0\r\n"
           "CSeq: 2 BYE\r\n\r\n\x1b[;m\n\naudio           Transmit:     Receive:\n"
           "packets:            244          243\navg. bitrate:  64.1  64.1  (kbit/s)\n"
           "\x1b[36;1m#\nUDP 10.0.0.2:5060 -> 10.0.0.1:5060\nSIP/2.0 200 OK\r\n"
           "CSeq: 2 BYE\r\n\r\n\x1b[;m\n")  # fmt: skip
    msgs = bc.parse_trace(log, "10.0.0.1:5060")
    assert [(m.sent, m.method, m.status) for m in msgs] == [(True, "BYE", None),
                                                             (False, "BYE", 200)]  # fmt: skip
    assert bc.sip_facts(msgs).bye == {"direction": "sent", "status": 200}
    assert bc.parse_rtp_stats(log) == {"audio": {"tx": 244, "rx": 243}}
    sdp = bc.parse_sdp("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0 101\r\n"
                       "a=rtcp:4001\r\nm=video 4002 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n")
    assert sdp["audio"].codec(0) == "PCMU/8000" and sdp["audio"].rtcp == 4001
    assert sdp["video"].addr == "1.2.3.4" and sdp["video"].pt_of("VP8") == 96


def test_config_has_no_device_and_loopback_control(tmp_path: Path) -> None:
    o = bc.Options("1000", "10.0.1.2", 5060, 4000, 40000, "10.0.1.1", "1.2.3.4:3478", True,
                   tmp_path / "t.wav", tmp_path / "snd")  # fmt: skip
    conf = bc.render_config(o)
    assert "ctrl_tcp_listen\t127.0.0.1:40000" in conf and "rtp_ports\t4000-4004" in conf
    assert "audio_player" not in conf and "module\tvp8.so" in conf
    assert bc.account_line(o).startswith("<sip:1000@10.0.1.1>;regint=600;")
    assert "medianat=stun;stunserver=stun:1.2.3.4:3478" in bc.account_line(o)
    assert os.path.basename(str(o.tone_wav)) in conf
