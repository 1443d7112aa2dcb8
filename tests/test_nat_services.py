"""coturn's TURN mode, rtpengine's command line and ng encoding, the TURN client's integrity
(pure; the daemons themselves run in tests/test_nat_behaviours.py)."""
from __future__ import annotations

import hashlib
import hmac
import struct
from pathlib import Path

import pytest

from services import stunmsg
from services.coturn import Coturn, CoturnOptions, TurnAuth
from services.host import LocalHost
from services.rtpengine import (
    BencodeError,
    Rtpengine,
    RtpengineOptions,
    bdecode,
    bencode,
    ng_reply,
    ng_request,
)
from services.turnclient import ALLOCATE_REQUEST, long_term_key, with_integrity


def test_coturn_stun_only_by_default(tmp_path: Path) -> None:
    lines = Coturn(LocalHost(), tmp_path, CoturnOptions(("192.0.2.10",))).config_lines()
    assert "stun-only" in lines and not any(line.startswith("user=") for line in lines)


def test_coturn_turn_mode(tmp_path: Path) -> None:
    opts = CoturnOptions(("192.0.2.10", "192.0.2.11"), turn=TurnAuth("u", "p", "r.test",
                                                                    50000, 50009))
    daemon = Coturn(LocalHost(), tmp_path, opts)
    daemon.render()
    text = daemon.config_path.read_text()
    for line in ("lt-cred-mech", "user=u:p", "realm=r.test", "min-port=50000",
                 "max-port=50009", "relay-ip=192.0.2.10", "no-tls", "no-dtls",
                 "listening-ip=192.0.2.11"):
        assert line in text.splitlines()
    assert "stun-only" not in text and "STUN + TURN" in text
    with pytest.raises(ValueError, match="relay port range"):
        TurnAuth(min_port=50010, max_port=50000)


def test_bencode_round_trip() -> None:
    value = {"command": "offer", "sdp": "v=0\r\n", "flags": ["trust-address"], "n": 3}
    raw = bencode(value)
    assert raw == b"d7:command5:offer5:flagsl13:trust-addresse1:ni3e3:sdp5:v=0\r\ne"
    assert bdecode(raw) == {"command": b"offer", "sdp": b"v=0\r\n",
                            "flags": [b"trust-address"], "n": 3}
    for bad in (b"d3:abc", b"i1ex", b"l", b"x"):
        with pytest.raises(BencodeError):
            bdecode(bad)


def test_ng_cookie() -> None:
    assert ng_request("c1", {"command": "ping"}) == b"c1 d7:command4:pinge"
    assert ng_reply(b"c1 d6:result4:ponge", "c1") == {"result": b"pong"}
    with pytest.raises(BencodeError, match="cookie"):
        ng_reply(b"c2 d6:result4:ponge", "c1")


def test_rtpengine_command(tmp_path: Path) -> None:
    cmd = Rtpengine(LocalHost(), tmp_path, RtpengineOptions("192.168.1.10")).command()
    assert cmd[:7] == ["rtpengine", "-f", "-E", "-t", "-1", "-i", "192.168.1.10"]
    assert "192.168.1.10:2223" in cmd and cmd[-1] == "--config-file=none"
    assert cmd[cmd.index("--port-min") + 1] == "30000"
    with pytest.raises(ValueError):
        RtpengineOptions("192.168.1.10", port_min=40000, port_max=30000)


def test_turn_message_integrity() -> None:
    key = long_term_key("natlab", "natlab.test", "natlab")
    assert key == hashlib.md5(b"natlab:natlab.test:natlab").digest()  # noqa: S324
    tid = bytes(12)
    raw = with_integrity(stunmsg.Message(ALLOCATE_REQUEST, tid,
                                         ((stunmsg.AttributeType.USERNAME, b"natlab"),)), key)
    msg = stunmsg.parse_message(raw)  # the length field covers the integrity attribute
    kind, value = msg.attributes[-1]
    assert kind == stunmsg.AttributeType.MESSAGE_INTEGRITY and len(value) == 20
    assert struct.unpack_from("!H", raw, 2)[0] == len(raw) - 20
    assert hmac.new(key, raw[:-24], hashlib.sha1).digest() == value
