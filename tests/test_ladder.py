"""The ladder of the six STUN x trunk cells, from stored real captures (no root): arrows across
every capture point, the frame each arrow names, what each NAT rewrote, where a failing call's
arrow ends, and the payload fields still private after a NAT."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT

from analysis.evidence import Captures
from analysis.ladder import NOWHERE, SERVER, Arrow, Ladder
from natlab import pipeline
from report.ladder import svg, text

RUN = ROOT / "tests" / "data" / "run"
CELLS = ["001_call_nostun_none", "002_call_nostun_naive", "003_call_nostun_nataware",
         "004_call_stun_none", "005_call_stun_naive", "006_call_stun_nataware"]


@pytest.fixture(scope="module")
def ladders() -> dict[str, Ladder]:
    analysis = pipeline.analyse(RUN, CELLS)
    out = {}
    for name in CELLS:
        (label, ladder), = analysis.ladders[name]
        assert label == "call"
        out[name] = ladder
    return out


def arrows(ladder: Ladder, label: str, src: str | None = None, dst: str | None = None
           ) -> list[Arrow]:
    return [a for a in ladder.arrows if a.label.startswith(label)
            and src in (None, a.src) and dst in (None, a.dst)]


def frame_of(name: str, capture: str, frame: int) -> bytes:
    """The UDP payload of one frame of a stored capture, read independently of the ladder."""
    caps = Captures({capture: RUN / name / f"{capture}.pcap"})
    found = [p for p in caps.packets(capture) if p.frame == frame]
    assert found, (name, capture, frame)
    return found[0].payload


def test_columns_name_both_sides_of_each_router(ladders: dict[str, Ladder]) -> None:
    keys = [k for k, _ in ladders["006_call_stun_nataware"].columns]
    assert keys == ["p1002", "pbx2", "r2-lan", "r2-wan", "r1-wan", "r1-lan", "pbx1", "p2005",
                    SERVER]
    assert SERVER not in [k for k, _ in ladders["001_call_nostun_none"].columns]  # no STUN
    labels = dict(ladders["006_call_stun_nataware"].columns)
    assert labels["r2-lan"] == "r2 LAN\n172.16.10.1" and labels["r2-wan"] == "r2 WAN\n198.51.100.2"


def test_no_trunk_ends_at_the_pbx_with_404(ladders: dict[str, Ladder]) -> None:
    for name in ("001_call_nostun_none", "004_call_stun_none"):
        ladder = ladders[name]
        (no_route,) = arrows(ladder, "404", "pbx2", "p1002")
        assert [s.capture for s in no_route.seen] == ["p1002", "pbx2"]
        assert frame_of(name, "pbx2", no_route.seen[1].frame).startswith(b"SIP/2.0 404")
        assert not [a for a in ladder.arrows if a.kind == "sip" and "r2-wan" in (a.src, a.dst)]


def test_stun_binding_arrows_carry_the_mapped_address(ladders: dict[str, Ladder]) -> None:
    for name in ("004_call_stun_none", "005_call_stun_naive", "006_call_stun_nataware"):
        ladder = ladders[name]
        requests = arrows(ladder, "STUN Binding request", "r2-wan", SERVER)
        responses = arrows(ladder, "STUN Binding response", "r2-lan", "p1002")
        assert len(requests) == len(responses) == 2, name
        assert "mapped 198.51.100.2:4000" in responses[0].label
        assert requests[0].nat == ("r2 rewrote source 172.16.10.12:4000 -> 198.51.100.2:4000")
        wan = requests[0].seen[0]
        assert frame_of(name, "r2-wan", wan.frame)[:2] == b"\x00\x01"  # a Binding request
    assert not [a for a in ladders["003_call_nostun_nataware"].arrows if a.kind == "stun"]


def test_naive_trunk_ack_ends_nowhere_and_200_ok_is_resent(ladders: dict[str, Ladder]) -> None:
    for name in ("002_call_nostun_naive", "005_call_stun_naive"):
        ladder = ladders[name]
        lost = arrows(ladder, "ACK", "r2-wan", NOWHERE)
        assert lost and all(a.seen[0].dst == "192.168.1.10:5060" for a in lost)
        first = lost[0].seen[0]
        assert first.capture == "r2-wan"
        assert frame_of(name, "r2-wan", first.frame).startswith(b"ACK sip:")
        resent = [a for a in arrows(ladder, "200 OK (INVITE)", "p2005", "pbx1") if a.copy > 1]
        assert len(resent) >= 2, name
        ok_wan = arrows(ladder, "200 OK (INVITE)", "r1-wan", "r2-wan")[0]
        assert "Record-Route 192.168.1.10" in ok_wan.private  # where the ACK's address came from
        assert "Contact 192.168.1.25" in ok_wan.private


def test_frames_agree_with_the_explanation(ladders: dict[str, Ladder]) -> None:
    """The explanation and the ladder read the captures separately; they name the same frames."""
    verdict = {v.name: v for v in pipeline.analyse(RUN, ["002_call_nostun_naive"]).verdicts}
    why = verdict["002_call_nostun_naive"].explanation
    ladder = ladders["002_call_nostun_naive"]
    ack = arrows(ladder, "ACK", "r2-wan", NOWHERE)[0]
    assert f"r2-wan.pcap frame {ack.seen[0].frame}" in why
    rtp = arrows(ladder, "RTP", "r2-wan", NOWHERE)[0]
    assert f"first r2-wan.pcap frame {rtp.seen[0].frame}" in why
    assert f"{rtp.count} RTP packets to 192.168.1.25" in why


def test_no_stun_rtp_is_sent_nowhere_with_a_private_sdp(ladders: dict[str, Ladder]) -> None:
    ladder = ladders["003_call_nostun_nataware"]
    (out,) = arrows(ladder, "RTP", "r2-wan", NOWHERE)
    assert out.seen[0].dst == "192.168.1.25:4000" and out.count > 100
    assert out.last and out.last[0].frame > out.seen[0].frame
    ok = arrows(ladder, "200 OK (INVITE)", "r1-wan", "r2-wan")[0]
    assert "c=192.168.1.25" in ok.private
    invite = arrows(ladder, "INVITE", "r2-wan", "r1-wan")[0]
    assert "c=172.16.10.12" in invite.private and "Contact 172.16.10.12" in invite.private
    assert invite.nat == "r2 rewrote source 172.16.10.10:5080 -> 198.51.100.2:5080"


def test_the_papers_fix_reaches_every_phone(ladders: dict[str, Ladder]) -> None:
    ladder = ladders["006_call_stun_nataware"]
    assert not [a for a in ladder.arrows if a.dst == NOWHERE or a.dropped]
    for src, dst in (("r1-lan", "p2005"), ("r2-lan", "p1002")):
        (rtp,) = arrows(ladder, "RTP", src, dst)
        assert rtp.count >= 190 and rtp.last
    into = arrows(ladder, "RTP", "r1-lan", "p2005")[0]
    assert into.nat == "r1 rewrote destination 203.0.113.2:4000 -> 192.168.1.25:4000"
    invite = arrows(ladder, "INVITE", "r2-wan", "r1-wan")[0]
    assert "Contact 172.16.10.12" in invite.private  # the header is rewritten, not the payload
    assert not [p for p in invite.private if p.startswith("c=")]  # STUN put a public c=
    assert [s.capture for s in invite.seen] == ["r1-wan", "r2-wan"]  # one arrow, two captures
    assert arrows(ladder, "ACK", "r1-lan", "pbx1") and arrows(ladder, "200 OK (BYE)")


def test_drawings_show_the_same_arrows(ladders: dict[str, Ladder]) -> None:
    ladder = ladders["002_call_nostun_naive"]
    ack = arrows(ladder, "ACK", "r2-wan", NOWHERE)[0]
    txt = text(ladder)
    assert f"r2-wan #{ack.seen[0].frame}; r2 rewrote source" in txt
    assert "X" in txt and "still private: " in txt
    doc = svg(ladder, "002")
    assert "to 192.168.1.10:5060: private, unroutable" in doc
    assert 'fill="#c0392b" font-size="9">still private: Contact 192.168.1.25' in doc
    assert f"r2-wan #{ack.seen[0].frame}" in doc


def test_symmetric_nat_drop_is_marked() -> None:
    (_, ladder), = pipeline.analyse(RUN, ["341_symmetric_stun"]).ladders["341_symmetric_stun"]
    dropped = [a for a in ladder.arrows if a.kind == "rtp" and a.dropped]
    assert {a.dst for a in dropped} == {"r1-wan", "r2-wan"}
    assert any("r1 forwarded none of it into LAN1" == a.dropped for a in dropped)


def test_text_ladder_of_a_stored_run_is_written(tmp_path: Path) -> None:
    from report.ladder import write

    ladder = pipeline.analyse(RUN, ["006_call_stun_nataware"]).ladders[
        "006_call_stun_nataware"][0][1]
    paths = write(ladder, "006 call", tmp_path / "call")
    assert {p.suffix for p in paths} == {".svg", ".txt", ".png", ".json"}
    assert (tmp_path / "call.png").read_bytes()[:4] == b"\x89PNG"


def test_stun_and_turn_messages_are_named() -> None:
    from analysis.ladder import stun_label

    names = {t: stun_label(t.to_bytes(2, "big") + bytes(18)) for t in
             (0x0001, 0x0101, 0x0003, 0x0113, 0x0009, 0x0016, 0x0017)}
    assert names == {0x0001: "STUN Binding request", 0x0101: "STUN Binding response",
                     0x0003: "STUN TURN Allocate request",
                     0x0113: "STUN TURN Allocate error response",
                     0x0009: "STUN TURN ChannelBind request",
                     0x0016: "STUN TURN Send indication", 0x0017: "STUN TURN Data indication"}


def test_conference_ladder_has_every_participants_leg() -> None:
    (_, ladder), = pipeline.analyse(RUN, ["221_conference_3party"]).ladders[
        "221_conference_3party"]
    for phone in ("p1002", "p2001", "p2005"):
        assert any(a.label == "INVITE" and a.src == phone for a in ladder.arrows), phone
    assert len({a.label for a in ladder.arrows if a.kind == "rtp"}) >= 1
    assert [a for a in ladder.arrows if a.kind == "rtp" and a.dst == "p2005"]


def test_a_call_inside_one_lan_has_its_router_on_the_right() -> None:
    from analysis.ladder import columns
    from topology.plan import load_plan

    plan = load_plan(RUN / "config.toml")
    keys = [k for k, _ in columns(plan, "2001", ["2005"], server=True)]
    assert keys == ["p2001", "pbx1", "p2005", "r1-lan", "r1-wan", SERVER]


def test_hairpin_shows_the_router_turning_rtp_back_or_not() -> None:
    """A call inside LAN1 with STUN: each phone sends to the other's public mapping, i.e. to
    r1's own public address (stored real run, 2026-12-03)."""
    run = ROOT / "tests" / "data" / "run-hairpin"
    analysis = pipeline.analyse(run)
    (_, off), = analysis.ladders["381_hairpin_off"]
    (_, on), = analysis.ladders["382_hairpin_on"]
    assert [k for k, _ in on.columns][:5] == ["p2001", "pbx1", "p2005", "r1-lan", "r1-wan"]
    sent = [a for a in off.arrows if a.kind == "rtp" and a.dst == "r1-lan"]
    assert len(sent) == 2 and all(a.seen[0].dst.startswith("203.0.113.2:") for a in sent)
    assert {a.dropped for a in sent} == {"r1 forwarded none of it into LAN1 (no hairpin)"}
    assert not [a for a in off.arrows if a.kind == "rtp" and a.src == "r1-lan"]
    back = [a for a in on.arrows if a.kind == "rtp" and a.src == "r1-lan"]
    assert {a.dst for a in back} == {"p2001", "p2005"}
    for a in back:
        assert a.nat.startswith("r1 rewrote source 192.168.1.") and a.nat.endswith("(hairpin)")
        assert a.seen[0].src.startswith("203.0.113.2:") and a.count >= 140
