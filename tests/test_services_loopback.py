"""Real coturn and kamailio on 127.0.0.1 through LocalHost (no namespaces needed)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import requires, running

from services.coturn import Coturn, CoturnOptions
from services.daemon import DaemonError
from services.host import LocalHost
from services.kamailio import Kamailio, PbxOptions, TrunkMode
from services.probe import sip_options, stun_binding

SIP_PORT, TRUNK_PORT, STUN_PORT = 15060, 15080, 34780
PBX = PbxOptions(name="pbx2", lan_ip="127.0.0.1", public_ip="127.0.0.2", local_prefix="2",
                 peer_prefix="1", peer_public_ip="127.0.0.3", trunk=TrunkMode.NONE,
                 sip_port=SIP_PORT, trunk_port=TRUNK_PORT)
needs_kamailio = requires("kamailio")
needs_coturn = requires("turnserver")


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.fixture
def pbx(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Kamailio]:
    mode: TrunkMode = getattr(request, "param", TrunkMode.NONE)
    with running(Kamailio(LocalHost(), tmp_path, replace(PBX, trunk=mode))) as daemon:
        yield daemon


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Coturn]:
    options = CoturnOptions(listen_ips=("127.0.0.1",), port=STUN_PORT)
    with running(Coturn(LocalHost(), tmp_path, options)) as daemon:
        yield daemon


class Phone:
    """A raw UDP SIP endpoint: enough to REGISTER, send INVITE and read what arrives."""

    def __init__(self, ip: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, port))
        self.ip, self.port = self.sock.getsockname()
        self.cseq = 0

    def close(self) -> None:
        self.sock.close()

    def send(self, method: str, ruri: str, to: str, extra: tuple[str, ...] = ()) -> None:
        self.cseq += 1
        token = os.urandom(4).hex()
        lines = [f"{method} {ruri} SIP/2.0",
                 f"Via: SIP/2.0/UDP {self.ip}:{self.port};branch=z9hG4bK{token};rport",
                 "Max-Forwards: 70", f"From: <sip:test@{self.ip}>;tag={token}", f"To: <{to}>",
                 f"Call-ID: {token}@{self.ip}", f"CSeq: {self.cseq} {method}",
                 f"Contact: <sip:test@{self.ip}:{self.port}>", *extra, "Content-Length: 0"]
        self.sock.sendto(("\r\n".join(lines) + "\r\n\r\n").encode(), (PBX.lan_ip, SIP_PORT))

    def receive(self, timeout: float = 2.0, skip_provisional: bool = True) -> str:
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            text = self.sock.recv(65535).decode()  # socket.timeout fails the test
            if not (skip_provisional and text.startswith("SIP/2.0 1")):
                return text


@pytest.fixture
def phone() -> Iterator[Phone]:
    p = Phone()
    yield p
    p.close()


@pytest.mark.parametrize("mode", list(TrunkMode))
@needs_kamailio
def test_render_and_check_all_modes(tmp_path: Path, mode: TrunkMode) -> None:
    daemon = Kamailio(LocalHost(), tmp_path, replace(PBX, trunk=mode))
    daemon.render()
    daemon.check()
    text = daemon.config_path.read_text()
    assert ("advertise 127.0.0.2:15080" in text) == (mode is TrunkMode.NAT_AWARE)
    assert daemon.options.forwarded_port() == {TrunkMode.NONE: None, TrunkMode.NAIVE: SIP_PORT,
                                                TrunkMode.NAT_AWARE: TRUNK_PORT}[mode]


@needs_kamailio
def test_broken_config_fails_check_with_one_line(tmp_path: Path) -> None:
    daemon = Kamailio(LocalHost(), tmp_path, PBX)
    daemon.render()
    with daemon.config_path.open("a") as cfg:
        cfg.write("\nroute[BROKEN] {\n    no_such_function();\n}\n")
    with pytest.raises(DaemonError, match="no_such_function") as info:
        daemon.check()
    assert "\n" not in str(info.value)


@needs_coturn
def test_coturn_binding(coturn: Coturn) -> None:
    coturn.wait_ready(5.0)
    assert "stun-only" in coturn.config_path.read_text()
    ip, port = stun_binding("127.0.0.1", STUN_PORT, timeout=1.0, bind="127.0.0.1")
    assert ip == "127.0.0.1" and 1024 <= port <= 65535


@needs_kamailio
def test_kamailio_options_and_register(pbx: Kamailio, phone: Phone) -> None:
    pbx.wait_ready(5.0)
    assert sip_options(PBX.lan_ip, SIP_PORT, timeout=1.0) == 200
    phone.send("REGISTER", f"sip:{PBX.lan_ip}", f"sip:2001@{PBX.lan_ip}", ("Expires: 60",))
    reply = phone.receive()
    assert reply.startswith("SIP/2.0 200"), reply
    assert f"sip:test@127.0.0.1:{phone.port}" in reply  # the registered Contact
    assert "save location" in pbx.log_path.read_text()


@needs_kamailio
def test_kamailio_routes_local_calls(pbx: Kamailio, phone: Phone) -> None:
    pbx.wait_ready(5.0)
    caller = Phone()
    try:
        caller.send("INVITE", f"sip:2001@{PBX.lan_ip}", f"sip:2001@{PBX.lan_ip}")
        assert caller.receive().startswith("SIP/2.0 404 Not Found")  # not registered yet
        caller.send("INVITE", f"sip:1001@{PBX.lan_ip}", f"sip:1001@{PBX.lan_ip}")
        assert caller.receive().startswith("SIP/2.0 404 No route to 1xxx")  # trunk none
        phone.send("REGISTER", f"sip:{PBX.lan_ip}", f"sip:2001@{PBX.lan_ip}", ("Expires: 60",))
        assert phone.receive().startswith("SIP/2.0 200")
        caller.send("INVITE", f"sip:2001@{PBX.lan_ip}", f"sip:2001@{PBX.lan_ip}")
        invite = phone.receive()
        assert invite.startswith(f"INVITE sip:test@127.0.0.1:{phone.port} SIP/2.0"), invite
        assert f"Record-Route: <sip:127.0.0.1:{SIP_PORT};lr" in invite
    finally:
        caller.close()


@needs_kamailio
@pytest.mark.parametrize("pbx, port, via", [
    (TrunkMode.NAIVE, SIP_PORT, f"127.0.0.1:{SIP_PORT}"),
    (TrunkMode.NAT_AWARE, TRUNK_PORT, f"127.0.0.2:{TRUNK_PORT}"),
], indirect=["pbx"])
def test_kamailio_trunk(pbx: Kamailio, phone: Phone, port: int, via: str) -> None:
    pbx.wait_ready(5.0)
    peer = Phone(PBX.peer_public_ip, port)  # stands in for the other PBX
    try:
        phone.send("INVITE", f"sip:1001@{PBX.lan_ip}", f"sip:1001@{PBX.lan_ip}")
        invite = peer.receive()
        assert invite.startswith(f"INVITE sip:1001@{PBX.peer_public_ip}:{port} SIP/2.0"), invite
        assert f"Via: SIP/2.0/UDP {via};branch=" in invite
        assert f"Record-Route: <sip:{via};" in invite
    finally:
        peer.close()


@needs_kamailio
@needs_coturn
def test_stop_leaves_no_process(pbx: Kamailio, coturn: Coturn) -> None:
    pbx.wait_ready(5.0)
    coturn.wait_ready(5.0)
    pids = [p for d in (pbx, coturn) if (p := d.pid) is not None]
    pids += children(pids[0])  # kamailio's workers
    assert len(pids) > 3
    pbx.stop()
    coturn.stop()
    coturn.stop()  # idempotent
    assert pbx.pid is None and coturn.pid is None
    assert [pid for pid in pids if alive(pid)] == []


@needs_kamailio
def test_wait_ready_fails_fast_when_daemon_exits(tmp_path: Path) -> None:
    # 192.0.2.99 is on no interface: kamailio cannot bind and exits at once.
    daemon = Kamailio(LocalHost(), tmp_path, replace(PBX, lan_ip="192.0.2.99"))
    daemon.render()
    daemon.start()
    try:
        start = time.monotonic()
        with pytest.raises(DaemonError, match="exited with") as info:
            daemon.wait_ready(20.0)
        assert time.monotonic() - start < 5.0
        assert "\n" not in str(info.value)
    finally:
        daemon.stop()


def test_pbx_options_validation() -> None:
    with pytest.raises(ValueError, match="not digits"):
        replace(PBX, local_prefix="2x")
    with pytest.raises(ValueError, match="both"):
        replace(PBX, peer_prefix="2")
