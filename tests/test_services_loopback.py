"""Real coturn and kamailio on 127.0.0.1 through LocalHost (no namespaces needed)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import children

from services.coturn import Coturn, CoturnOptions
from services.credentials import make_credentials, read_credentials, write_credentials
from services.daemon import DaemonError
from services.host import LocalHost
from services.kamailio import Kamailio, PbxOptions, TrunkMode
from services.probe import sip_options, stun_binding
from topology.plan import DEFAULT_PLAN, ConfigError, parse_plan, read_toml

SIP_PORT, TRUNK_PORT, STUN_PORT = 15060, 15080, 34780
PASSWORDS = make_credentials(["2001", "2005"])
PBX = PbxOptions(name="pbx2", lan_ip="127.0.0.1", public_ip="127.0.0.2", local_prefix="2",
                 peer_prefix="1", peer_public_ip="127.0.0.3", trunk=TrunkMode.NONE,
                 sip_port=SIP_PORT, trunk_port=TRUNK_PORT, passwords=PASSWORDS)
STRANGER = "127.0.0.4"  # neither the PBX nor its peer


def skip_without(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def pbx(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Kamailio]:
    """A PBX; the parameter is a TrunkMode or a PbxOptions."""
    skip_without("kamailio")
    param = getattr(request, "param", TrunkMode.NONE)
    options = param if isinstance(param, PbxOptions) else replace(PBX, trunk=param)
    daemon = Kamailio(LocalHost(), tmp_path, options)
    daemon.render()
    daemon.check()
    daemon.start()
    yield daemon
    daemon.stop()


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Coturn]:
    skip_without("turnserver")
    daemon = Coturn(LocalHost(), tmp_path, CoturnOptions(listen_ips=("127.0.0.1",),
                                                         port=STUN_PORT))
    daemon.render()
    daemon.start()
    yield daemon
    daemon.stop()


def digest(challenge: str, user: str, password: str, method: str, uri: str) -> str:
    """The Authorization/Proxy-Authorization value answering a 401/407 (RFC 2617, MD5, with
    qop=auth when the challenge offers it), computed here from the challenge text,
    independently of kamailio."""
    header = re.search(r"^(?:WWW|Proxy)-Authenticate: *Digest (.*)$", challenge, re.M | re.I)
    assert header, challenge
    fields = dict(re.findall(r'(\w+)="([^"]*)"', header.group(1)))
    realm, nonce = fields["realm"], fields["nonce"]

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1, ha2 = md5(f"{user}:{realm}:{password}"), md5(f"{method}:{uri}")
    head = f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
    if "auth" not in fields.get("qop", "").split(","):
        return head + f'response="{md5(f"{ha1}:{nonce}:{ha2}")}", algorithm=MD5'
    cnonce, nc = "0a4f113b", "00000001"
    response = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
    return head + f'response="{response}", algorithm=MD5, qop=auth, nc={nc}, cnonce="{cnonce}"'


class Phone:
    """A raw UDP SIP endpoint: enough to REGISTER, send INVITE and read what arrives."""

    def __init__(self, ip: str = "127.0.0.1", port: int = 0, user: str = "test") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, port))
        self.ip, self.port = self.sock.getsockname()
        self.user = user
        self.cseq = 0

    def close(self) -> None:
        self.sock.close()

    def send(self, method: str, ruri: str, to: str, extra: tuple[str, ...] = (),
             port: int = SIP_PORT) -> None:
        self.cseq += 1
        token = os.urandom(4).hex()
        lines = [f"{method} {ruri} SIP/2.0",
                 f"Via: SIP/2.0/UDP {self.ip}:{self.port};branch=z9hG4bK{token};rport",
                 "Max-Forwards: 70", f"From: <sip:{self.user}@{PBX.lan_ip}>;tag={token}",
                 f"To: <{to}>", f"Call-ID: {token}@{self.ip}", f"CSeq: {self.cseq} {method}",
                 f"Contact: <sip:{self.user}@{self.ip}:{self.port}>", *extra,
                 "Content-Length: 0"]
        self.sock.sendto(("\r\n".join(lines) + "\r\n\r\n").encode(), (PBX.lan_ip, port))

    def receive(self, timeout: float = 2.0, skip_provisional: bool = True) -> str:
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            text = self.sock.recv(65535).decode()  # socket.timeout fails the test
            if not (skip_provisional and text.startswith("SIP/2.0 1")):
                return text

    def request(self, method: str, ruri: str, to: str, password: str | None = None,
                extra: tuple[str, ...] = ()) -> str:
        """Send; if challenged (401/407) and given a password, answer the challenge once.
        The last final reply (for INVITE: none is awaited after the authorised resend)."""
        self.send(method, ruri, to, extra)
        reply = self.receive()
        code = reply.split(" ", 2)[1]
        if password is None or code not in ("401", "407"):
            return reply
        name = "Authorization" if code == "401" else "Proxy-Authorization"
        self.send(method, ruri, to, (*extra, f"{name}: "
                                     f"{digest(reply, self.user, password, method, ruri)}"))
        return "" if method == "INVITE" else self.receive()


def register(phone: Phone, password: str | None) -> str:
    return phone.request("REGISTER", f"sip:{PBX.lan_ip}", f"sip:{phone.user}@{PBX.lan_ip}",
                         password, ("Expires: 60",))


@pytest.fixture
def phone() -> Iterator[Phone]:
    p = Phone(user="2001")
    yield p
    p.close()


@pytest.mark.parametrize("mode", list(TrunkMode))
def test_render_and_check_all_modes(tmp_path: Path, mode: TrunkMode) -> None:
    daemon = Kamailio(LocalHost(), tmp_path, replace(PBX, trunk=mode))
    daemon.render()
    daemon.check()
    text = daemon.config_path.read_text()
    assert ("advertise 127.0.0.2:15080" in text) == (mode is TrunkMode.NAT_AWARE)
    assert daemon.options.forwarded_port() == {TrunkMode.NONE: None, TrunkMode.NAIVE: SIP_PORT,
                                                TrunkMode.NAT_AWARE: TRUNK_PORT}[mode]


def test_broken_config_fails_check_with_one_line(tmp_path: Path) -> None:
    daemon = Kamailio(LocalHost(), tmp_path, PBX)
    daemon.render()
    with daemon.config_path.open("a") as cfg:
        cfg.write("\nroute[BROKEN] {\n    no_such_function();\n}\n")
    with pytest.raises(DaemonError, match="no_such_function") as info:
        daemon.check()
    assert "\n" not in str(info.value)


def test_coturn_binding(coturn: Coturn) -> None:
    coturn.wait_ready(5.0)
    assert "stun-only" in coturn.config_path.read_text()
    ip, port = stun_binding("127.0.0.1", STUN_PORT, timeout=1.0, bind="127.0.0.1")
    assert ip == "127.0.0.1" and 1024 <= port <= 65535


@pytest.mark.parametrize("pbx", [replace(PBX, insecure=True)], indirect=True)
def test_insecure_kamailio_registers_anyone(pbx: Kamailio, phone: Phone) -> None:
    pbx.wait_ready(5.0)
    assert sip_options(PBX.lan_ip, SIP_PORT, timeout=1.0) == 200
    reply = register(phone, None)
    assert reply.startswith("SIP/2.0 200"), reply
    assert f"sip:2001@127.0.0.1:{phone.port}" in reply  # the registered Contact
    assert "save location" in pbx.log_path.read_text()
    assert "#!define PROTECTED" not in pbx.config_path.read_text()
    assert not (pbx.workdir / "pbx2.run" / "passwords.cfg").exists()


def test_register_needs_the_password(pbx: Kamailio, phone: Phone) -> None:
    pbx.wait_ready(5.0)
    assert sip_options(PBX.lan_ip, SIP_PORT, timeout=1.0) == 200  # the probe needs no auth
    reply = register(phone, None)
    assert reply.startswith("SIP/2.0 401"), reply
    assert 'WWW-Authenticate: Digest realm="pbx2"' in reply and 'qop="auth"' in reply
    wrong = register(phone, PASSWORDS["2005"])  # another extension's password
    assert wrong.startswith("SIP/2.0 403 Wrong Password"), wrong
    reply = register(phone, PASSWORDS["2001"])
    assert reply.startswith("SIP/2.0 200"), reply
    assert f"sip:2001@127.0.0.1:{phone.port}" in reply  # the registered Contact
    # 2001's credentials do not register 2005
    phone.send("REGISTER", f"sip:{PBX.lan_ip}", f"sip:2005@{PBX.lan_ip}")
    challenge = phone.receive()
    auth = digest(challenge, "2001", PASSWORDS["2001"], "REGISTER", f"sip:{PBX.lan_ip}")
    phone.send("REGISTER", f"sip:{PBX.lan_ip}", f"sip:2005@{PBX.lan_ip}",
               (f"Authorization: {auth}",))
    assert phone.receive().startswith("SIP/2.0 403 Forbidden")
    log = pbx.log_path.read_text()
    assert "401 challenge" in log and "403 wrong password for 2001" in log
    assert "save location" in log
    password_file = pbx.workdir / "pbx2.run" / "passwords.cfg"
    assert password_file.stat().st_mode & 0o077 == 0
    assert PASSWORDS["2001"] not in pbx.config_path.read_text()


def test_invite_from_a_phone_needs_the_password(pbx: Kamailio) -> None:
    pbx.wait_ready(5.0)
    caller = Phone(user="2005")
    try:
        reply = caller.request("INVITE", f"sip:2001@{PBX.lan_ip}", f"sip:2001@{PBX.lan_ip}")
        assert reply.startswith("SIP/2.0 407"), reply
        assert 'Proxy-Authenticate: Digest realm="pbx2"' in reply
        caller.request("INVITE", f"sip:2001@{PBX.lan_ip}", f"sip:2001@{PBX.lan_ip}",
                       PASSWORDS["2005"])
        assert caller.receive().startswith("SIP/2.0 404 Not Found")  # past auth: not registered
    finally:
        caller.close()


def test_kamailio_routes_local_calls(pbx: Kamailio, phone: Phone) -> None:
    pbx.wait_ready(5.0)
    caller = Phone(user="2005")
    pw = PASSWORDS["2005"]
    try:
        caller.request("INVITE", f"sip:2001@{PBX.lan_ip}", f"sip:2001@{PBX.lan_ip}", pw)
        assert caller.receive().startswith("SIP/2.0 404 Not Found")  # not registered yet
        caller.request("INVITE", f"sip:1001@{PBX.lan_ip}", f"sip:1001@{PBX.lan_ip}", pw)
        assert caller.receive().startswith("SIP/2.0 404 No route to 1xxx")  # trunk none
        assert register(phone, PASSWORDS["2001"]).startswith("SIP/2.0 200")
        caller.request("INVITE", f"sip:2001@{PBX.lan_ip}", f"sip:2001@{PBX.lan_ip}", pw)
        invite = phone.receive()
        assert invite.startswith(f"INVITE sip:2001@127.0.0.1:{phone.port} SIP/2.0"), invite
        assert f"Record-Route: <sip:127.0.0.1:{SIP_PORT};lr" in invite
    finally:
        caller.close()


@pytest.mark.parametrize("pbx, port, via", [
    (TrunkMode.NAIVE, SIP_PORT, f"127.0.0.1:{SIP_PORT}"),
    (TrunkMode.NAT_AWARE, TRUNK_PORT, f"127.0.0.2:{TRUNK_PORT}"),
], indirect=["pbx"])
def test_kamailio_trunk(pbx: Kamailio, phone: Phone, port: int, via: str) -> None:
    pbx.wait_ready(5.0)
    peer = Phone(PBX.peer_public_ip, port)  # stands in for the other PBX
    try:
        phone.request("INVITE", f"sip:1001@{PBX.lan_ip}", f"sip:1001@{PBX.lan_ip}",
                      PASSWORDS["2001"])
        invite = peer.receive()
        assert invite.startswith(f"INVITE sip:1001@{PBX.peer_public_ip}:{port} SIP/2.0"), invite
        assert f"Via: SIP/2.0/UDP {via};branch=" in invite
        assert f"Record-Route: <sip:{via};" in invite
    finally:
        peer.close()


@pytest.mark.parametrize("pbx", [TrunkMode.NAT_AWARE], indirect=True)
def test_trunk_socket_takes_only_the_peer(pbx: Kamailio) -> None:
    pbx.wait_ready(5.0)
    stranger, peer = Phone(STRANGER, user="2005"), Phone(PBX.peer_public_ip, TRUNK_PORT, "1001")
    try:
        for method in ("OPTIONS", "INVITE"):  # a stranger gets 403, whatever it sends
            stranger.send(method, f"sip:2005@{PBX.lan_ip}", f"sip:2005@{PBX.lan_ip}",
                          port=TRUNK_PORT)
            assert stranger.receive().startswith("SIP/2.0 403 Forbidden")
        # the user's report: REGISTER for 2005 on the trunk socket. Refused, from anyone.
        for phone in (stranger, peer):
            phone.send("REGISTER", f"sip:{PBX.lan_ip}", f"sip:2005@{PBX.lan_ip}",
                       ("Expires: 60",), port=TRUNK_PORT)
            assert phone.receive().startswith("SIP/2.0 403 Register On The LAN Socket")
        # the peer PBX is not challenged: its INVITE is routed (2005 is not registered)
        peer.send("INVITE", f"sip:2005@{PBX.lan_ip}", f"sip:2005@{PBX.lan_ip}",
                  port=TRUNK_PORT)
        assert peer.receive().startswith("SIP/2.0 404 Not Found")
    finally:
        stranger.close()
        peer.close()
    log = pbx.log_path.read_text()
    assert f"from {STRANGER}:{stranger.port} -> 403 trunk socket: not the peer" in log
    assert "403 no REGISTER on the trunk socket" in log


def test_flood_guard_blocks_one_source_only(pbx: Kamailio) -> None:
    pbx.wait_ready(5.0)
    burst = 3 * PBX.flood_limit  # far above the limit, within one pike window
    flooder, normal = Phone("127.0.0.6"), Phone("127.0.0.7")
    try:
        for _ in range(burst):
            flooder.send("OPTIONS", f"sip:{PBX.lan_ip}:{SIP_PORT}", f"sip:{PBX.lan_ip}")
        answered = 0
        with pytest.raises(TimeoutError):
            while True:  # until the PBX goes quiet for 1 s
                assert flooder.receive(timeout=1.0).startswith("SIP/2.0 200")
                answered += 1
        assert 0 < answered < burst
        for _ in range(PBX.flood_limit // 2):  # a normal source is still answered, every time
            normal.send("OPTIONS", f"sip:{PBX.lan_ip}:{SIP_PORT}", f"sip:{PBX.lan_ip}")
            assert normal.receive().startswith("SIP/2.0 200")
    finally:
        flooder.close()
        normal.close()
    log = pbx.log_path.read_text()
    assert log.count("from 127.0.0.6:") and log.count("dropped by the flood guard") == 1


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


def test_stop_after_the_main_process_died_leaves_no_worker(pbx: Kamailio) -> None:
    """Killed (SIGKILL) before its workers, kamailio leaves them running: stop() ends its
    process group anyway."""
    pbx.wait_ready(5.0)
    main = pbx.pid
    assert main is not None
    workers = children(main)
    assert len(workers) > 2
    os.kill(main, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pbx.pid is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pbx.pid is None
    orphans = [pid for pid in workers if alive(pid)]
    assert orphans, "kamailio's workers all ended with it: nothing left to test"
    pbx.stop()
    time.sleep(0.2)  # SIGKILL lands at once; init reaps the orphans
    assert [pid for pid in workers if alive(pid)] == []


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
    with pytest.raises(ValueError, match="password of 2001") as info:
        replace(PBX, passwords={"2001": "has space"})
    assert "has space" not in str(info.value)
    assert PASSWORDS["2001"] not in repr(PBX)


def test_protected_pbx_without_passwords_does_not_start(tmp_path: Path) -> None:
    daemon = Kamailio(LocalHost(), tmp_path, replace(PBX, passwords={}))
    with pytest.raises(DaemonError, match="protected but no passwords"):
        daemon.render()


def test_credentials_file(tmp_path: Path) -> None:
    path = tmp_path / "run" / "credentials.json"
    write_credentials(path, PASSWORDS)
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_credentials(path) == PASSWORDS
    path.write_text('{"2001": "x y"}')
    with pytest.raises(ValueError, match="password of 2001") as info:
        read_credentials(path)
    assert "x y" not in str(info.value)


def test_credentials() -> None:
    exts = ["2001", "2005", "1002"]
    random_1, random_2 = make_credentials(exts), make_credentials(exts)
    assert set(random_1) == set(exts) and random_1 != random_2
    assert len(set(random_1.values())) == 3 and all(len(p) >= 24 for p in random_1.values())
    assert make_credentials(exts, seed="s") == make_credentials(exts, seed="s")
    assert make_credentials(exts, seed="s") != make_credentials(exts, seed="t")
    fixed = make_credentials(exts, given={"2001": "lab-pass-2001"})
    assert fixed["2001"] == "lab-pass-2001" and fixed["2005"] != "lab-pass-2001"
    with pytest.raises(ValueError, match="password of 2005"):
        make_credentials(exts, given={"2005": "short"})


def test_plan_auth_passwords() -> None:
    data = read_toml(DEFAULT_PLAN, "config")
    assert parse_plan(data).passwords == {}
    data["auth"] = {"passwords": {"2005": "lab-pass-2005", "1002": "lab-pass-1002"}}
    plan = parse_plan(data)
    assert plan.passwords == {"2005": "lab-pass-2005", "1002": "lab-pass-1002"}
    assert "lab-pass" not in repr(plan)
    for bad, message in (({"passwords": {"3001": "lab-pass-3001"}}, "not an extension"),
                         ({"passwords": {"2005": "a b c d e f"}}, "password of 2005"),
                         ({"passwords": {"2005": 12345678}}, "password of 2005"),
                         ({"insecure": True}, "takes only passwords")):
        data["auth"] = bad
        with pytest.raises(ConfigError, match=message):
            parse_plan(data)
