"""The NAT remedies' rendered configuration and parsers, without root."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from conftest import requires

from agents import baresip_agent, sipagent
from agents import baresip_conf as bc
from agents.ice import TurnServer, parse_dump, sdp_candidates
from services.daemon import DaemonError
from services.host import LocalHost
from services.kamailio import ANCHOR_FLAGS, Kamailio, PbxOptions, TrunkMode, render_config

PBX = PbxOptions(name="pbx1", lan_ip="127.0.0.1", public_ip="203.0.113.2", local_prefix="2",
                 peer_prefix="1", peer_public_ip="198.51.100.2", trunk=TrunkMode.NAT_AWARE,
                 sip_port=15160, trunk_port=15180, passwords={"2001": "secret-2001"})
ANCHOR = "udp:127.0.0.1:2223"

# From a real pjsip log of an ICE call (10.77.0.1 behind an SNAT to 10.77.0.101).
OFFER = ("v=0\r\no=- 1 2 IN IP4 10.77.0.1\r\ns=pjmedia\r\nt=0 0\r\nm=audio 4032 RTP/AVP 0 120\r\n"
         "c=IN IP4 10.77.0.101\r\na=ice-ufrag:736aee30\r\n"
         "a=candidate:Sa4d0001 1 UDP 1862270975 10.77.0.101 4032 typ srflx raddr 10.77.0.1 "
         "rport 4032\r\n"
         "a=candidate:Ha4d0001 1 UDP 1694498815 10.77.0.1 4032 typ host\r\n"
         "a=candidate:Sa4d0001 2 UDP 1862270974 10.77.0.101 4015 typ srflx raddr 10.77.0.1 "
         "rport 4015\r\n"
         "a=candidate:Ha4d0001 2 UDP 1694498814 10.77.0.1 4015 typ host\r\n")
DUMP = ("       ICE role: Controlling, state: Negotiation Success, comp_cnt: 2\n"
        "          [0]: L:10.77.0.1:4032 (h) --> R:10.77.0.2:4039 (h)\n"
        "          [1]: L:10.77.0.1:4015 (h) --> R:10.77.0.2:4031 (h)\n")


def test_kamailio_off_has_no_remedy() -> None:
    text = render_config(PBX)
    assert "#!define WITH_" not in text and "#!define PROTECTED" in text
    assert "# NAT remedies: off (no nathelper, no media anchor)" in text
    assert not PBX.nathelper


def test_kamailio_media_anchor_lines() -> None:
    text = render_config(replace(PBX, media_anchor=ANCHOR))
    assert "#!define WITH_NATHELPER\n#!define WITH_MEDIA_ANCHOR\n" in text
    assert f'modparam("rtpengine", "rtpengine_sock", "{ANCHOR}")' in text
    assert text.count(f'rtpengine_manage("{ANCHOR_FLAGS}");') == 2  # requests and replies
    assert 'modparam("nathelper", "natping_interval", 0)' in text


def test_kamailio_natping_without_anchor() -> None:
    o = replace(PBX, natping_interval=15)
    text = render_config(o)
    assert o.nathelper and "#!define WITH_NATHELPER\n" in text
    assert "#!define WITH_MEDIA_ANCHOR" not in text
    assert 'modparam("nathelper", "natping_interval", 15)' in text


@pytest.mark.parametrize("bad", ["127.0.0.1:2223", "tcp:127.0.0.1:2223", "udp:host:2223"])
def test_kamailio_rejects_a_bad_anchor(bad: str) -> None:
    with pytest.raises(ValueError, match="media_anchor must be udp:IP:PORT"):
        replace(PBX, media_anchor=bad)
    with pytest.raises(ValueError, match="natping_interval"):
        replace(PBX, natping_interval=-1)


@requires("kamailio")
@pytest.mark.parametrize("change", [{}, {"media_anchor": ANCHOR}, {"natping_interval": 20},
                                    {"media_anchor": ANCHOR, "natping_interval": 20}])
def test_kamailio_accepts_the_config(tmp_path: Path, change: dict[str, object]) -> None:
    daemon = Kamailio(LocalHost(), tmp_path, replace(PBX, **change))  # type: ignore[arg-type]
    daemon.render()
    try:
        daemon.check()
    except DaemonError as exc:
        pytest.fail(str(exc))


def options(**kw: object) -> bc.Options:
    base = dict(ext="2001", bind="10.0.0.1", sip_port=5060, rtp_port=4000, ctrl_port=4444,
                pbx=None, stun=None, video=False, tone_wav=Path("t.wav"), snd_dir=Path("s"))
    base.update(kw)
    return bc.Options(**base)  # type: ignore[arg-type]


def test_baresip_ice_and_turn_account_lines() -> None:
    turn = TurnServer("10.0.0.10:3478", "u", "p")
    stun = options(stun="10.0.0.10:3478")
    assert bc.account_line(stun).endswith(";medianat=stun;stunserver=stun:10.0.0.10:3478")
    ice = options(stun="10.0.0.10:3478", ice=True)
    assert bc.account_line(ice).endswith(";medianat=ice;stunserver=stun:10.0.0.10:3478")
    assert "ice" in ice.modules and "stun" not in ice.modules
    assert bc.account_line(options(ice=True)).endswith(";ptime=20;medianat=ice")
    relay = options(turn=turn)
    assert bc.account_line(relay).endswith(
        ";medianat=turn;stunserver=turn:10.0.0.10:3478;stunuser=u;stunpass=p")
    assert "turn" in relay.modules
    both = options(turn=turn, ice=True)
    assert ";medianat=ice;stunserver=turn:10.0.0.10:3478;stunuser=u;" in bc.account_line(both)
    assert "medianat" not in bc.account_line(options())


def test_baresip_ice_log_facts() -> None:
    log = ("ice: audio: connectivity check is complete (update=1)\n"
           "stream: mnat 'ice' connected: raddr 10.77.0.2:4002 10.77.0.2:4006\n")
    assert bc.ice_facts(log) == ("completed", {"addr": "10.77.0.2", "port": 4002})
    assert bc.ice_facts("ice: audio: connectivity check failed\n") == ("failed", None)
    assert bc.ice_facts("") == (None, None)


def test_candidates_and_selected_pair() -> None:
    assert sdp_candidates("INVITE sip:x SIP/2.0\r\n\r\n" + OFFER) == [
        {"type": "srflx", "addr": "10.77.0.101", "port": 4032},
        {"type": "host", "addr": "10.77.0.1", "port": 4032},
    ]
    assert parse_dump(DUMP) == {
        "role": "Controlling", "state": "Negotiation Success",
        "selected": {"local": {"type": "host", "addr": "10.77.0.1", "port": 4032},
                     "remote": {"type": "host", "addr": "10.77.0.2", "port": 4039}}}
    assert parse_dump("no ice here") == {"role": None, "state": None, "selected": None}


BASE = ["--ext", "2001", "--bind", "10.0.0.1", "--answer"]


def test_nat_arguments() -> None:
    a = sipagent.parse_args(BASE + ["--turn", "10.0.0.10:3478", "--turn-user", "u",
                                    "--turn-pass", "p", "--keepalive", "15"])
    assert a.ice and a.turn_server == TurnServer("10.0.0.10:3478", "u", "p")
    assert a.keepalive == 15
    b = baresip_agent.parse_args(BASE + ["--turn", "10.0.0.10:3478", "--turn-user", "u",
                                         "--turn-pass", "p"])
    assert not b.ice and b.turn_server is not None  # baresip: medianat=turn without ICE


@pytest.mark.parametrize("extra, message", [
    (["--turn", "10.0.0.10:3478"], "--turn needs --turn-user and --turn-pass"),
    (["--turn-user", "u"], "--turn-user/--turn-pass need --turn"),
    (["--relay-only"], "--relay-only needs --ice or --turn"),
    (["--keepalive", "-1"], "--keepalive must be >= 0"),
])
def test_bad_nat_arguments(extra: list[str], message: str,
                           capsys: pytest.CaptureFixture[str]) -> None:
    assert sipagent.main(BASE + extra) == 2
    assert capsys.readouterr().err.strip() == f"sipagent: error: {message}"


def test_baresip_refuses_pjsua2_only_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert baresip_agent.main(BASE + ["--ice", "--relay-only"]) == 2
    assert "pjsua2 agent options only" in capsys.readouterr().err
