"""The media remedies with real daemons in one namespace (rm-lab, addresses on its lo):
ICE (srflx from coturn), TURN relay (coturn TURN mode), media anchoring (kamailio +
rtpengine) and ICE with baresip.

    10.77.0.1  caller      (its packets to coturn leave SNAT-ed as 10.77.0.101: a srflx
    10.77.0.2  callee       candidate that differs from the host one)
    10.77.0.10 coturn (STUN + TURN, long-term credentials)
    10.77.0.20 kamailio     10.77.0.30 rtpengine (userspace, ng on 2223)
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import requires, requires_root
from helpers import finish, wait_until

from agents.tones import contains_tone
from services.host import LocalHost
from services.kamailio import Kamailio, PbxOptions, TrunkMode
from services.probe import run_in_host

REPO = Path(__file__).resolve().parents[1]
NS = "rm-lab"
CALLER, CALLEE, SNAT = "10.77.0.1", "10.77.0.2", "10.77.0.101"
COTURN, PBX, RTPENGINE = "10.77.0.10", "10.77.0.20", "10.77.0.30"
STUN = f"{COTURN}:3478"
TURN_USER, TURN_PASS = "rmuser", "rmpass"
TURN_ARGS = ["--turn", STUN, "--turn-user", TURN_USER, "--turn-pass", TURN_PASS]
PASSWORDS = {"2001": "rm-secret-1", "2002": "rm-secret-2"}  # digest auth at the PBX
RELAY_PORTS = (49300, 49399)
ANCHOR_PORTS = (30000, 30100)
DURATION = 3.0
CALLER_HZ, CALLEE_HZ = 440.0, 1000.0
PACKETS_PER_SECOND = 50  # PCMU, 20 ms ptime
Reports = dict[str, dict[str, Any]]

pytestmark = [requires_root, requires("turnserver"), requires("kamailio")]


class NsHost:
    """Runs commands inside the test's namespace."""

    name = NS

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        return LocalHost(NS).popen(["ip", "netns", "exec", NS, *args], **kwargs)


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)



def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The namespace and a coturn answering STUN and TURN (long-term credentials)."""
    work = tmp_path_factory.mktemp("remedies")
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)  # a crashed earlier run
    sh("ip", "netns", "add", NS)
    coturn: subprocess.Popen[bytes] | None = None
    try:
        sh("ip", "-n", NS, "link", "set", "lo", "up")
        for addr in (CALLER, CALLEE, SNAT, COTURN, PBX, RTPENGINE):
            sh("ip", "-n", NS, "addr", "add", f"{addr}/32", "dev", "lo")
        sh("ip", "netns", "exec", NS, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", CALLER,
           "-d", COTURN, "-p", "udp", "-j", "SNAT", "--to-source", SNAT)
        with open(work / "coturn.log", "wb") as log:
            coturn = NsHost().popen(
                ["turnserver", "-n", "--listening-ip", COTURN, "--listening-port", "3478",
                 "--relay-ip", COTURN, "--min-port", str(RELAY_PORTS[0]),
                 "--max-port", str(RELAY_PORTS[1]), "--lt-cred-mech",
                 "--user", f"{TURN_USER}:{TURN_PASS}", "--realm", "natlab", "--no-cli",
                 "--no-tls", "--no-dtls", "--log-file", "stdout", "--simple-log",
                 "--userdb", str(work / "turn.db"), "--pidfile", str(work / "turn.pid")],
                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        wait_until(lambda: run_in_host(NsHost(), "stun", COTURN, 3478, 0.5) is not None, 10,
                   "coturn answering STUN")
        yield work
    finally:
        if coturn is not None:
            stop(coturn)
        sh("ip", "netns", "del", NS)


def agent(module: str, work: Path, ext: str, bind: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", f"agents.{module}", "--ext", ext, "--bind", bind,
            "--workdir", str(work), "--report", str(work / f"{ext}.json"), *extra]  # fmt: skip


def call(work: Path, callee: list[str], caller: list[str]) -> Reports:
    """Start the callee (answers, 1000 Hz), then the caller (440 Hz); both reports by role."""
    ready = work / "callee.ready"
    callee_proc = NsHost().popen(
        callee + ["--answer", "--tone-hz", str(CALLEE_HZ), "--max-wait", str(DURATION + 12),
                  "--ready-file", str(ready)], cwd=REPO)  # fmt: skip
    try:
        wait_until(ready.exists, 15, "callee ready")
        caller_proc = NsHost().popen(
            caller + ["--tone-hz", str(CALLER_HZ), "--duration", str(DURATION)], cwd=REPO)
        assert finish(caller_proc, DURATION + 25) == 0
        assert finish(callee_proc, 25) == 0
    finally:
        stop(callee_proc)
    return {role: json.loads((work / f"{ext}.json").read_text())
            for role, ext in (("caller", "2001"), ("callee", "2002"))}


def assert_call_heard(r: Reports) -> None:
    """Confirmed, RTP both ways, and each side recorded the other's tone."""
    for me, other, far in (("caller", "callee", CALLEE_HZ), ("callee", "caller", CALLER_HZ)):
        assert r[me]["error"] is None, r[me]["error"]
        assert r[me]["confirmed"] is True
        assert r[me]["rtp"]["tx"] >= 0.9 * DURATION * PACKETS_PER_SECOND
        assert r[me]["rtp"]["rx"] >= 0.9 * r[other]["rtp"]["tx"]
        assert contains_tone(r[me]["recording"], far)


def pjsua(work: Path, ext: str, bind: str, *extra: str) -> list[str]:
    return agent("sipagent", work, ext, bind, *extra)


def test_ice_with_stun_srflx(lab: Path, tmp_path: Path) -> None:
    r = call(tmp_path, pjsua(tmp_path, "2002", CALLEE, "--ice", "--stun", STUN),
             pjsua(tmp_path, "2001", CALLER, "--ice", "--stun", STUN,
                   "--call", f"sip:2002@{CALLEE}:5060"))
    assert_call_heard(r)
    caller, callee = r["caller"]["ice"], r["callee"]["ice"]
    assert caller["enabled"] and callee["enabled"]
    assert caller["state"] == callee["state"] == "Negotiation Success"
    assert (caller["role"], callee["role"]) == ("Controlling", "Controlled")
    kinds = {(c["type"], c["addr"]) for c in caller["local"]}
    assert {("host", CALLER), ("srflx", SNAT)} <= kinds  # srflx: pjnath's STUN via coturn
    assert caller["local"] == callee["remote"]
    # no NAT between the phones: the host pair wins; each side's pair mirrors the other's
    sel = caller["selected"]
    assert sel["local"]["type"] == sel["remote"]["type"] == "host"
    assert (sel["local"]["addr"], sel["remote"]["addr"]) == (CALLER, CALLEE)
    assert callee["selected"] == {"local": sel["remote"], "remote": sel["local"]}
    assert r["caller"]["turn"] is None and r["caller"]["stun_mapped"] is None


def test_turn_relay_carries_the_media(lab: Path, tmp_path: Path) -> None:
    r = call(tmp_path, pjsua(tmp_path, "2002", CALLEE, *TURN_ARGS, "--relay-only"),
             pjsua(tmp_path, "2001", CALLER, *TURN_ARGS, "--relay-only",
                   "--call", f"sip:2002@{CALLEE}:5060"))
    assert_call_heard(r)
    for me, other in (("caller", "callee"), ("callee", "caller")):
        ice, turn = r[me]["ice"], r[me]["turn"]
        assert ice["state"] == "Negotiation Success"
        assert [c["type"] for c in ice["local"]] == ["relay"]
        relay = ice["local"][0]
        assert relay["addr"] == COTURN and RELAY_PORTS[0] <= relay["port"] <= RELAY_PORTS[1]
        assert turn == {"server": STUN, "relay_addr": f"{COTURN}:{relay['port']}"}
        sel = ice["selected"]
        assert sel["local"] == relay
        assert sel["remote"] == r[other]["ice"]["local"][0]
        assert r[me]["remote_sdp"]["addr"] == COTURN  # the far end's relay


@pytest.fixture
def anchored_pbx(lab: Path, tmp_path: Path) -> Iterator[tuple[Kamailio, Path]]:
    """rtpengine (userspace) + kamailio with media_anchor and 1 s NAT pings."""
    if shutil.which("rtpengine") is None:
        pytest.skip("rtpengine is not installed")
    log_path = tmp_path / "rtpengine.log"
    with open(log_path, "wb") as log:
        rtpe = NsHost().popen(
            ["rtpengine", "-f", "-E", "-t", "-1", "-i", RTPENGINE, "-n", f"{RTPENGINE}:2223",
             "--port-min", str(ANCHOR_PORTS[0]), "--port-max", str(ANCHOR_PORTS[1]),
             "-L", "6", "--delete-delay=0", "--pidfile", str(tmp_path / "rtpengine.pid"),
             "--config-file=none"],
            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    pbx = Kamailio(NsHost(), tmp_path / "pbx", PbxOptions(
        name="pbx2", lan_ip=PBX, public_ip=PBX, local_prefix="2", peer_prefix="1",
        peer_public_ip="203.0.113.2", trunk=TrunkMode.NONE, passwords=PASSWORDS,
        media_anchor=f"udp:{RTPENGINE}:2223", natping_interval=1))
    try:
        wait_until(lambda: "Startup complete" in log_path.read_text(errors="replace"), 10,
                   "rtpengine startup")
        pbx.render()
        pbx.check()
        pbx.start()
        pbx.wait_ready(10)
        yield pbx, log_path
    finally:
        pbx.stop()
        stop(rtpe)


def test_rtpengine_anchors_the_media(anchored_pbx: tuple[Kamailio, Path],
                                     tmp_path: Path) -> None:
    pbx, rtpe_log = anchored_pbx
    work = tmp_path / "call"
    r = call(work, pjsua(work, "2002", CALLEE, "--pbx", PBX, "--password", PASSWORDS["2002"],
                         "--keepalive", "5"),
             pjsua(work, "2001", CALLER, "--pbx", PBX, "--password", PASSWORDS["2001"],
                   "--call", "2002"))
    assert_call_heard(r)
    caller_sdp, callee_sdp = r["caller"]["remote_sdp"], r["callee"]["remote_sdp"]
    # each phone was told to send to rtpengine, on two different ports of its range
    for sdp in (caller_sdp, callee_sdp):
        assert sdp["addr"] == RTPENGINE
        assert ANCHOR_PORTS[0] <= sdp["port"] <= ANCHOR_PORTS[1]
    assert caller_sdp["port"] != callee_sdp["port"]
    assert r["callee"]["keepalive_s"] == 5
    # rtpengine's own count of what it forwarded, per leg, logged when the call is deleted
    wait_until(lambda: "Final packet stats" in rtpe_log.read_text(errors="replace"), 10,
               "rtpengine deleting the call")
    text = rtpe_log.read_text(errors="replace")
    legs = re.findall(rf"Port\s+{re.escape(RTPENGINE)}:(\d+) <> +[\d.]+:(\d+)\s*,.*?(\d+) p,",
                      text)
    forwarded = {int(port): int(pkts) for port, _, pkts in legs}
    for sdp, sender in ((caller_sdp, "callee"), (callee_sdp, "caller")):
        assert forwarded.get(sdp["port"], 0) >= 0.9 * r[sender]["rtp"]["tx"]
    # nathelper: the PBX saw private contacts, and pinged the registered phones
    log = pbx.log_text()
    assert "behind a NAT (nathelper)" in log
    heard = (work / "2002-pjsip.log").read_text(errors="replace")
    assert re.search(rf"RX \d+ bytes Request msg OPTIONS/cseq=\d+ .*from UDP {PBX}:5060", heard)
    # the callee's own keep-alives toward its registrar (pjsua's udpKaIntervalSec)
    assert f"Keep-alive timer started for acc 0, destination:{PBX}:5060" in heard


@requires("baresip")
def test_baresip_ice_calls_pjsua2(lab: Path, tmp_path: Path) -> None:
    r = call(tmp_path, pjsua(tmp_path, "2002", CALLEE, "--ice", "--stun", STUN),
             agent("baresip_agent", tmp_path, "2001", CALLER, "--ice", "--stun", STUN,
                   "--call", f"sip:2002@{CALLEE}:5060"))
    assert_call_heard(r)
    bs, pj = r["caller"]["ice"], r["callee"]["ice"]
    assert bs["state"] == "completed"
    assert pj["state"] == "Negotiation Success"
    # baresip gathers on every address of the shared lo (its srflx comes from the one it
    # picks as default), so only the caller's own host candidate is predictable here
    kinds = {(c["type"], c["addr"]) for c in bs["local"]}
    assert ("host", CALLER) in kinds and "srflx" in {kind for kind, _ in kinds}
    assert bs["local"] == pj["remote"]
    assert bs["selected"]["remote"] == {k: pj["selected"]["local"][k] for k in ("addr", "port")}
