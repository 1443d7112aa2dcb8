"""Real linphonec agents against the pjsua2 agent, each phone in its own namespace, no NAT.

    lpta (10.231.0.11) ---- veth ---- lptb (10.231.0.12 pjsua2, 10.231.0.1 kamailio)

Both phones register to kamailio, then Linphone calls pjsua2 and pjsua2 calls Linphone. The
unit tests at the end read the stored logs in tests/data/linphone/ and need no root.
"""

from __future__ import annotations

import gzip
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import requires_root
from helpers import finish, wait_until

from agents import baresip_conf as bc
from agents import linphone_conf as lc
from agents.linphone_agent import main
from agents.tones import contains_tone
from services.coturn import Coturn, CoturnOptions
from services.credentials import make_credentials
from services.kamailio import Kamailio, PbxOptions, TrunkMode

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "linphone"
NS_LP, NS_PJ = "lpta", "lptb"  # linphone's namespace; pjsua2's and the PBX's
LP_IP, PJ_IP, PBX_IP = "10.231.0.11", "10.231.0.12", "10.231.0.1"
PASSWORDS = make_credentials([f"20{n:02d}" for n in range(1, 10)], seed="linphone-loopback")
PBX = PbxOptions(name="pbxlp", lan_ip=PBX_IP, public_ip="192.0.2.250", local_prefix="2",
                 peer_prefix="1", peer_public_ip="192.0.2.251", trunk=TrunkMode.NONE,
                 passwords=PASSWORDS)  # protected, as natlab's PBXs are
DURATION = 3.0
CALLER_HZ, CALLEE_HZ = 440.0, 1000.0
PACKETS_PER_SECOND = 50  # PCMU, 20 ms
Reports = dict[str, dict[str, Any]]

needs_linphonec = pytest.mark.skipif(shutil.which("linphonec") is None,
                                     reason="linphonec not installed (apt-get install "
                                            "linphone-cli)")  # fmt: skip


class Netns:
    """A named network namespace as a services Host."""

    def __init__(self, name: str) -> None:
        self.name = name

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        kwargs.setdefault("start_new_session", True)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(["ip", "netns", "exec", self.name, *args], **kwargs)

    def pids(self) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def delete_namespaces() -> None:
    for ns in (NS_LP, NS_PJ):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture(scope="module")
def pbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kamailio]:
    """Two namespaces joined by one veth pair (never in the root namespace), kamailio in lptb."""
    delete_namespaces()  # debris of a killed run
    for ns in (NS_LP, NS_PJ):
        ip("netns", "add", ns)
    try:
        ip("link", "add", "lpta0", "netns", NS_LP, "type", "veth", "peer", "name", "lptb0",
           "netns", NS_PJ)  # fmt: skip
        for ns, dev, addrs in ((NS_LP, "lpta0", [LP_IP]), (NS_PJ, "lptb0", [PJ_IP, PBX_IP])):
            for addr in addrs:
                ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", dev, "up")
            # without a default route linphonec advertises 127.0.0.1
            ip("-n", ns, "route", "add", "default", "dev", dev)
        daemon = Kamailio(Netns(NS_PJ), tmp_path_factory.mktemp("pbx"), PBX)
        daemon.render()
        daemon.check()
        daemon.start()
        try:
            daemon.wait_ready(5.0)
            yield daemon
        finally:
            daemon.stop()
    finally:
        delete_namespaces()


def linphone(work: Path, ext: str, *extra: str) -> list[str]:
    return ["ip", "netns", "exec", NS_LP, sys.executable, "-m", "agents.linphone_agent",
            "--ext", ext, "--bind", LP_IP, "--pbx", f"{PBX_IP}:5060", "--workdir", str(work),
            "--report", str(work / f"{ext}.json"), "--password", PASSWORDS[ext],
            *extra]  # fmt: skip


def pjsua(work: Path, ext: str, *extra: str) -> list[str]:
    return ["ip", "netns", "exec", NS_PJ, sys.executable, "-m", "agents.sipagent",
            "--ext", ext, "--bind", PJ_IP, "--pbx", f"{PBX_IP}:5060", "--workdir", str(work),
            "--report", str(work / f"{ext}.json"), "--password", PASSWORDS[ext],
            *extra]  # fmt: skip


def callee_args(work: Path) -> list[str]:
    return ["--answer", "--tone-hz", str(CALLEE_HZ), "--max-wait", str(DURATION + 10),
            "--ready-file", str(work / "callee.ready")]  # fmt: skip


def caller_args(callee: str, duration: float = DURATION) -> list[str]:
    return ["--call", callee, "--tone-hz", str(CALLER_HZ), "--duration", str(duration)]



def linphonecs_of(work: Path) -> list[int]:
    """Pids of linphonec processes whose rc is under `work`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if entry.name.isdigit() and cmd[0].endswith(b"linphonec") and \
                str(work).encode() in b" ".join(cmd):  # fmt: skip
            found.append(int(entry.name))
    return found


def run_call(work: Path, callee: list[str], caller: list[str]) -> Reports:
    """Start the callee, then the caller once it is ready; both reports, by ext."""
    proc = subprocess.Popen(callee, cwd=REPO, stdout=subprocess.DEVNULL)
    try:
        wait_until((work / "callee.ready").exists, 15, "callee registered")
        assert finish(subprocess.Popen(caller, cwd=REPO, stdout=subprocess.DEVNULL),
                      DURATION + 25) == 0  # fmt: skip
        assert finish(proc, 20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert linphonecs_of(work) == []
    assert Netns(NS_LP).pids() == []  # nothing left running in linphone's namespace
    return {ext: json.loads((work / f"{ext}.json").read_text()) for ext in ("2001", "2002")}


@pytest.fixture(scope="module")
def linphone_calls_pjsua(pbx: Kamailio, tmp_path_factory: pytest.TempPathFactory) -> Reports:
    work = tmp_path_factory.mktemp("lp2pj")
    return run_call(work, pjsua(work, "2002", *callee_args(work)),
                    linphone(work, "2001", *caller_args("2002")))


@pytest.fixture(scope="module")
def pjsua_calls_linphone(pbx: Kamailio, tmp_path_factory: pytest.TempPathFactory) -> Reports:
    work = tmp_path_factory.mktemp("pj2lp")
    return run_call(work, linphone(work, "2002", *callee_args(work)),
                    pjsua(work, "2001", *caller_args("2002")))


def check_call(reports: Reports, linphone_ext: str) -> None:
    caller, callee = reports["2001"], reports["2002"]
    lp = reports[linphone_ext]
    assert lp["agent"] == "linphone" and lp["linphone"]["version"] == "5.1.65"
    assert lp["linphone"] == {"version": "5.1.65", "nat_policy": "none", "ice": False,
                              "stun_error": None}
    for r, direction in ((caller, "sent"), (callee, "received")):
        assert r["error"] is None
        assert r["register_code"] == 200
        assert r["confirmed"] is True and r["invite_code"] == 200
        assert r["bye"] == {"direction": direction, "status": 200}
        assert r["codec"] == "PCMU/8000"
        assert [s["state"] for s in r["states"]][-2:] == ["CONFIRMED", "DISCONNECTED"]
    for me, other in ((caller, callee), (callee, caller)):
        assert {k: me["local_sdp"][k] for k in ("addr", "port")} == \
            {k: other["remote_sdp"][k] for k in ("addr", "port")}  # fmt: skip
        assert me["rtp"]["tx"] >= 0.9 * DURATION * PACKETS_PER_SECOND
        assert me["rtp"]["rx"] >= 0.95 * other["rtp"]["tx"]
        assert me["media_seconds"] >= 0.9 * DURATION
    assert lp["local_sdp"] == {"addr": LP_IP, "port": 4000, "session_addr": LP_IP}
    for r, own, far in ((caller, CALLER_HZ, CALLEE_HZ), (callee, CALLEE_HZ, CALLER_HZ)):
        assert r["recording"] is not None and r["recording"].endswith(f"{r['ext']}-heard.wav")
        assert contains_tone(r["recording"], far)
        assert not contains_tone(r["recording"], own)


@requires_root
@needs_linphonec
def test_linphone_caller_pjsua_callee(linphone_calls_pjsua: Reports) -> None:
    check_call(linphone_calls_pjsua, "2001")
    assert [s["state"] for s in linphone_calls_pjsua["2001"]["states"]][:2] == ["CALLING",
                                                                                 "EARLY"]


@requires_root
@needs_linphonec
def test_pjsua_caller_linphone_callee(pjsua_calls_linphone: Reports) -> None:
    check_call(pjsua_calls_linphone, "2002")
    assert [s["state"] for s in pjsua_calls_linphone["2002"]["states"]][0] == "INCOMING"


@requires_root
@needs_linphonec
def test_stun_ice_without_nat(pbx: Kamailio, tmp_path: Path) -> None:
    """--stun (policy stun-ice by default) against coturn beside the PBX: linphone offers ICE,
    gets Binding answers for its RTP and RTCP ports, and the call to pjsua2 (no ICE) carries
    both tones."""
    stun = Coturn(Netns(NS_PJ), tmp_path / "stun", CoturnOptions(listen_ips=(PBX_IP,)))
    stun.render()
    stun.start()
    try:
        stun.wait_ready(5.0)
        reports = run_call(tmp_path, pjsua(tmp_path, "2002", *callee_args(tmp_path)),
                           linphone(tmp_path, "2001", "--stun", f"{PBX_IP}:3478",
                                    *caller_args("2002")))  # fmt: skip
    finally:
        stun.stop()
    lp = reports["2001"]
    assert lp["linphone"]["nat_policy"] == "stun-ice" and lp["linphone"]["ice"] is True
    assert lp["error"] is None and lp["confirmed"] is True and lp["stun"] == f"{PBX_IP}:3478"
    assert lp["local_sdp"] == {"addr": LP_IP, "port": 4000, "session_addr": LP_IP}  # no NAT
    log = (tmp_path / "2001-linphone.log").read_text(errors="replace")
    assert "typ host" in last_sdp(log, sent=True)
    for port in (4000, 4001):  # coturn answered the Binding from the RTP and the RTCP port
        assert f"Add candidate obtained by STUN/TURN: {LP_IP}:{port}:srflx" in log
    for r, far in ((lp, CALLEE_HZ), (reports["2002"], CALLER_HZ)):
        assert r["recording"] is not None and contains_tone(r["recording"], far)


@requires_root
@needs_linphonec
def test_sigterm_mid_call_and_sigkill(pbx: Kamailio, tmp_path: Path) -> None:
    """SIGTERM: the caller hangs up and reports within seconds; SIGKILL of an agent takes its
    linphonec with it (PR_SET_PDEATHSIG)."""
    callee = subprocess.Popen(linphone(tmp_path, "2002", "--answer", "--max-wait", "40",
                                       "--ready-file", str(tmp_path / "callee.ready")),
                              cwd=REPO, stdout=subprocess.DEVNULL)  # fmt: skip
    caller: subprocess.Popen[bytes] | None = None
    try:
        wait_until((tmp_path / "callee.ready").exists, 15, "callee registered")
        caller = subprocess.Popen(pjsua(tmp_path, "2001", *caller_args("2002", duration=30)),
                                  cwd=REPO, stdout=subprocess.DEVNULL)  # fmt: skip
        log = tmp_path / "2002-linphone.log"
        wait_until(lambda: b"to LinphoneCallStreamsRunning" in log.read_bytes(), 15,
                   "call established")  # fmt: skip
        heard = tmp_path / "2002-heard.wav"
        wait_until(lambda: heard.exists() and heard.stat().st_size > 16000, 10,
                   "a second of media recorded")  # fmt: skip
        start = time.monotonic()
        callee.send_signal(signal.SIGTERM)
        assert finish(callee, 10) == 0
        assert time.monotonic() - start < 5
        assert finish(caller, 10) == 0
    finally:
        for proc in (callee, caller):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert linphonecs_of(tmp_path) == []
    r = json.loads((tmp_path / "2002.json").read_text())
    assert r["confirmed"] is True and r["error"] is None
    assert r["bye"] == {"direction": "sent", "status": 200}
    assert r["rtp"]["tx"] > 0 and r["rtp"]["rx"] > 0
    assert [s["state"] for s in r["states"]][-1] == "DISCONNECTED"

    killed = tmp_path / "killed"
    proc = subprocess.Popen(linphone(killed, "2003", "--answer", "--max-wait", "30",
                                     "--ready-file", str(killed / "ready")),
                            cwd=REPO, stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_until((killed / "ready").exists, 15, "agent registered")
        assert linphonecs_of(killed) != []
        proc.kill()
        proc.wait()
        wait_until(lambda: linphonecs_of(killed) == [], 5, "linphonec gone with its agent")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@requires_root
@needs_linphonec
def test_call_to_unregistered_extension_fails(pbx: Kamailio, tmp_path: Path) -> None:
    proc = subprocess.Popen(linphone(tmp_path, "2001", "--call", "2099", "--max-wait", "5"),
                            cwd=REPO, stdout=subprocess.DEVNULL)  # fmt: skip
    assert finish(proc, 20) == 0
    assert linphonecs_of(tmp_path) == []
    r = json.loads((tmp_path / "2001.json").read_text())
    assert r["register_code"] == 200 and r["confirmed"] is False
    assert r["invite_code"] == 404 and r["error"] == "call failed: 404"
    assert [s["state"] for s in r["states"]] == ["CALLING", "DISCONNECTED"]
    assert r["bye"] == {"direction": None, "status": None} and r["recording"] is None


@requires_root
@needs_linphonec
def test_unanswered_call_is_cancelled(pbx: Kamailio, tmp_path: Path) -> None:
    reports = run_call(tmp_path, linphone(tmp_path, "2002", "--no-answer", "--max-wait", "10",
                                          "--ready-file", str(tmp_path / "callee.ready")),
                       pjsua(tmp_path, "2001", "--call", "2002", "--max-wait", "2"))  # fmt: skip
    r = reports["2002"]
    assert r["cancelled"] is True and r["confirmed"] is False
    assert r["invite_code"] == 487 and r["error"] == "cancelled by caller/PBX"
    assert [s["state"] for s in r["states"]] == ["INCOMING", "DISCONNECTED"]
    assert r["recording"] is None and reports["2001"]["confirmed"] is False


def test_bad_arguments_give_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--ext", "1", "--bind", "127.0.0.1", "--call", "1002"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["linphone_agent: error: --call EXT needs --pbx (or give a full sip: URI)"]
    assert main(["--ext", "1", "--bind", "127.0.0.1", "--answer", "--nat-policy", "stun"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "linphone_agent: error: --nat-policy stun needs --stun IP:PORT"]
    assert main(["--ext", "1", "--bind", "nope", "--answer"]) == 2
    assert main(["--ext", "1", "--bind", "127.0.0.1", "--answer", "--nat-policy", "turn"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 2


def test_rc_renders_policy_codecs_and_ports() -> None:
    o = lc.Options("10.0.1.2", 5062, 4002, lc.NatPolicy.STUN_ICE, "198.51.100.10:3478")
    rc = lc.render_rc(o)
    assert "sip_port=5062\n" in rc and "bind_address=10.0.1.2\n" in rc
    assert "use_ipv6=0\nipv6_migration_done=1\n" in rc and "audio_rtp_port=4002\n" in rc
    assert "nat_policy_ref=np0" in rc and "stun_server=198.51.100.10:3478\n" in rc
    assert "protocols=stun,ice\n" in rc
    assert "[audio_codec_0]\nmime=PCMU\nrate=8000\nchannels=1\nenabled=1\n" in rc
    assert rc.count("enabled=1") == 1 and rc.count("enabled=0") == len(lc.OTHER_CODECS)
    plain = lc.render_rc(lc.Options("10.0.1.2", 5060, 4000, lc.NatPolicy.STUN, "1.2.3.4:3478"))
    assert "protocols=stun\n" in plain
    assert "nat_policy" not in lc.render_rc(lc.Options("10.0.1.2", 5060, 4000,
                                                       lc.NatPolicy.NONE, None))  # fmt: skip
    assert lc.register_command("2001", "10.0.1.1:5060", None) == \
        "register sip:2001@10.0.1.1 sip:10.0.1.1:5060"  # fmt: skip
    assert lc.register_command("2001", "10.0.1.1", "pw").endswith(" sip:10.0.1.1 pw")
    with pytest.raises(ValueError, match="blanks"):
        lc.setup_commands(Path("/a b/t.wav"), Path("/x.wav"))


def stored(name: str) -> str:
    """A stored linphonec -d 6 log (CRLFs of the SIP trace kept)."""
    with gzip.open(DATA / f"{name}.log.gz", "rb") as fh:
        return fh.read().decode("utf-8", "replace")


def trace_of(log: str) -> list[tuple[bool, str, int | None]]:
    return [(m.sent, m.method, m.status) for m in lc.parse_trace(log)]


def last_sdp(log: str, sent: bool) -> str:
    return next(m.body for m in reversed(lc.parse_trace(log)) if m.sent is sent and "m=" in m.body)


def test_parse_a_call_to_pjsua() -> None:
    log = stored("caller-to-pjsua")
    assert trace_of(log) == [
        (True, "REGISTER", None), (False, "REGISTER", 200), (True, "INVITE", None),
        (False, "INVITE", 100), (False, "INVITE", 180), (False, "INVITE", 200),
        (True, "ACK", None), (True, "BYE", None), (False, "BYE", 200),
        (True, "REGISTER", None), (False, "REGISTER", 200)]  # fmt: skip
    facts = bc.sip_facts(lc.parse_trace(log))
    assert (facts.invite_code, facts.codec) == (200, "PCMU/8000")
    assert facts.bye == {"direction": "sent", "status": 200}
    assert lc.rtp_stats(log) == {"tx": 151, "rx": 151}
    assert lc.version(log) == "5.1.65" and lc.stun_error(log) is None
    assert lc.sdp_summary(last_sdp(log, sent=True)) == {"addr": LP_IP, "port": 4000,
                                                        "session_addr": LP_IP}  # fmt: skip
    # pjsua2 puts c= at media level only
    assert lc.sdp_summary(last_sdp(log, sent=False)) == {"addr": PJ_IP, "port": 4000,
                                                         "session_addr": None}  # fmt: skip
    events = lc.events(log.splitlines())
    assert [e.value for e in events if e.kind == "call"] == [
        "OutgoingInit", "OutgoingProgress", "OutgoingRinging", "Connected", "StreamsRunning",
        "End", "Released"]  # fmt: skip
    assert [e.value for e in events if e.kind == "register"] == ["Progress", "Ok", "Cleared"]
    assert events[0] == lc.Event("listening", f"{LP_IP}:5060")
    assert lc.Event("code", "200", "OK") in events


def test_parse_an_answered_call_and_a_refused_one() -> None:
    log = stored("callee-from-pjsua")
    facts = bc.sip_facts(lc.parse_trace(log))
    assert facts.invite_code == 200 and facts.bye == {"direction": "received", "status": 200}
    assert (True, "INVITE", 180) in trace_of(log) and lc.rtp_stats(log) == {"tx": 150, "rx": 150}
    calls = [e.value for e in lc.events(log.splitlines()) if e.kind == "call"]
    assert calls[0] == "IncomingReceived" and "OutgoingInit" not in calls
    log = stored("caller-404")
    facts = bc.sip_facts(lc.parse_trace(log))
    assert facts.invite_code == 404 and facts.bye == {"direction": None, "status": None}
    assert lc.rtp_stats(log) is None
    assert [e.value for e in lc.events(log.splitlines()) if e.kind == "call"][-2:] == [
        "Error", "Released"]  # fmt: skip


def test_parse_stun_ice_and_plain_stun_behind_nat() -> None:
    """Recorded behind a MASQUERADE router (LAN 10.231.1.0/24, public 203.0.113.1), coturn on
    203.0.113.4: with ICE the media-level c= is public, the session-level one stays private."""
    log = stored("caller-stun-ice-nat")
    offer = last_sdp(log, sent=True)
    assert lc.sdp_summary(offer) == {"addr": "203.0.113.1", "port": 4000,
                                     "session_addr": "10.231.1.11"}  # fmt: skip
    assert lc.srflx(offer) == {"addr": "203.0.113.1", "rtp": 4000, "rtcp": 4001}
    assert "a=ice-ufrag:" in offer and "o=2001 " in offer and "IN IP4 10.231.1.11" in offer
    assert lc.origin_addr(offer) == "10.231.1.11"
    log = stored("caller-stun-nat")
    offer = last_sdp(log, sent=True)
    assert lc.srflx(offer) is None and "a=ice-ufrag" not in offer
    assert lc.sdp_summary(offer) == {"addr": "10.231.1.11", "port": 4000,
                                     "session_addr": "10.231.1.11"}  # fmt: skip
    assert lc.stun_error(log) == "Bind socket to 0.0.0.0:4000 failed: Address already in use"


def test_log_tail_returns_complete_lines_once(tmp_path: Path) -> None:
    path = tmp_path / "log"
    tail = lc.LogTail(path)
    assert tail.lines() == []
    path.write_bytes(b"one\ntw")
    assert tail.lines() == ["one"]
    with path.open("ab") as fh:
        fh.write(b"o\nthree")
    assert tail.lines() == ["two"] and tail.lines() == []
