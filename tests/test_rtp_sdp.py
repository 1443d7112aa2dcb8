"""RTP streams set up by SDP (dynamic payload types, clock rates), and every link type and
IP fragments, against tshark on generated captures (no root; skipped without tshark).

What tshark 4.0.17 does, measured on these captures: an SDP in a SIP message makes each m=
address and port an RTP conversation from that frame on (the offer's as soon as it is seen,
the answer's too); a packet whose destination, else source, is such an endpoint is RTP with
that SDP's a=rtpmap names and clock rates (speex/16000, opus/48000, VP8/90000: jitter at
that clock; telephone-event: no jitter), even on a port another dissector owns and without
the rtp_udp heuristic. Other packets need the heuristic, and a dynamic payload type no SDP
named stays "RTPType-N" without jitter.
"""
from __future__ import annotations

import random
from pathlib import Path

import pytest
from pcapgen import LINKS, Datagram, StreamSpec, merge, rtp_stream, sip_with_sdp, write_pcap
from tshark_check import TSHARK, Key, assert_like_tshark

from analysis.rtp import RtpStream

needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed")

A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.9"
OFFER = ("m=audio {port} RTP/AVP 97 111 101", "a=rtpmap:97 speex/16000",
         "a=rtpmap:111 opus/48000/2", "a=rtpmap:101 telephone-event/8000",
         "m=video 30010 RTP/AVP 96", "a=rtpmap:96 VP8/90000")
ANSWER = ("m=audio {port} RTP/AVP 97 101", "a=rtpmap:97 speex/16000",
          "a=rtpmap:101 telephone-event/8000", "m=video 31010 RTP/AVP 96",
          "a=rtpmap:96 VP8/90000")
CLASH = ("m=audio {port} RTP/AVP 97 98", "a=rtpmap:97 opus/48000/2",
         "a=rtpmap:98 AMR-WB/16000")  # an answer mapping 97 otherwise than the offer


def _stream(rng: random.Random, **kw: object) -> list[Datagram]:
    spec = StreamSpec(start_us=200_000, jitter_us=3000, count=60)
    for k, v in kw.items():
        setattr(spec, k, v)
    return rtp_stream(spec, rng)


def _signalling(answer: tuple[str, ...]) -> list[Datagram]:
    return [sip_with_sdp(0, A, 5060, B, 5060, f"INVITE sip:b@{B} SIP/2.0", "c1", "1 INVITE",
                         A, 30000, OFFER),
            sip_with_sdp(100_000, B, 5060, A, 5060, "SIP/2.0 200 OK", "c1", "1 INVITE",
                         B, 31000, answer)]


def sdp_call(rng: random.Random) -> list[Datagram]:
    """Offer and answer with dynamic payload types at several clock rates, and streams that
    match the conversations in every way tshark's lookup can."""
    ab = {"src": A, "sport": 30000, "dst": B, "dport": 31000}
    ba = {"src": B, "sport": 31000, "dst": A, "dport": 30000}
    return merge(
        _signalling(ANSWER),
        _stream(rng, **ba, ssrc=0xE, count=3, start_us=50_000, pt=97, clock=16000),  # early
        _stream(rng, **ab, ssrc=1, pt=97, clock=16000, markers={0}),
        _stream(rng, **ba, ssrc=2, pt=111, clock=48000, lost={9, 10}),
        _stream(rng, **ab, ssrc=3, pt=101, count=20),
        _stream(rng, src=A, sport=30010, dst=B, dport=31010, ssrc=4, pt=96, clock=90000,
                ptime_ms=40),
        _stream(rng, src=B, sport=31010, dst=A, dport=30010, ssrc=5, pt=96, clock=90000,
                ptime_ms=33, payload_len=900),
        _stream(rng, src="10.0.0.7", sport=36000, dst="10.0.0.8", dport=36002, ssrc=6,
                pt=97, clock=16000),  # no SDP for it: heuristic only, no clock
        _stream(rng, src=C, sport=33000, dst=A, dport=30000, ssrc=7, pt=97, clock=16000),
        _stream(rng, src=A, sport=30000, dst=B, dport=53, ssrc=8, pt=97, clock=16000),
        _stream(rng, src=C, sport=33002, dst=B, dport=31001, ssrc=9, pt=0),  # RTCP port
    )


def clash_call(rng: random.Random) -> list[Datagram]:
    ab = {"src": A, "sport": 30000, "dst": B, "dport": 31000}
    ba = {"src": B, "sport": 31000, "dst": A, "dport": 30000}
    return merge(_signalling(CLASH),
                 _stream(rng, **ab, ssrc=1, pt=97, clock=16000),
                 _stream(rng, **ba, ssrc=2, pt=97, clock=48000),
                 _stream(rng, **ab, ssrc=3, pt=98, clock=16000),
                 _stream(rng, **ba, ssrc=4, pt=98, clock=16000),
                 _stream(rng, src=C, sport=31000, dst=A, dport=33000, ssrc=5, pt=97))


def no_sdp(rng: random.Random) -> list[Datagram]:
    return merge(*(_stream(rng, src=A, sport=30000 + 2 * i, dst=B, dport=31000 + 2 * i,
                           ssrc=i + 1, pt=pt, clock=clock)
                   for i, (pt, clock) in enumerate(((96, 90000), (97, 16000), (101, 8000),
                                                    (111, 48000), (0, 8000)))))


def _by_ssrc(streams: dict[Key, RtpStream]) -> dict[int, RtpStream]:
    return {s.ssrc: s for s in streams.values()}


@needs_tshark
@pytest.mark.parametrize("heuristic", [True, False])
def test_sdp_sets_names_and_clocks(tmp_path: Path, heuristic: bool) -> None:
    pcap = write_pcap(tmp_path / "sdp.pcap", sdp_call(random.Random(1)))
    s = _by_ssrc(assert_like_tshark(pcap, heuristic))
    names = {k: v.payload_names() for k, v in s.items()}
    assert names[1] == names[0xE] == names[7] == names[8] == "speex"
    assert (names[2], names[3], names[4], names[5]) == ("opus", "telephone-event", "VP8", "VP8")
    assert all(s[k].min_jitter_ms is not None for k in (1, 2, 4, 5, 7, 8, 0xE))
    assert s[3].min_jitter_ms is None and s[2].lost == 2
    assert 9 not in s  # to the answer's RTCP port: RTCP's conversation, not RTP
    assert (6 in s) == heuristic  # no SDP for it: only the heuristic finds it
    if heuristic:
        assert names[6] == "RTPType-97" and s[6].min_jitter_ms is None


@needs_tshark
@pytest.mark.parametrize("heuristic", [True, False])
def test_destination_conversation_first(tmp_path: Path, heuristic: bool) -> None:
    """Offer and answer map 97 differently: a packet takes its destination's mapping."""
    pcap = write_pcap(tmp_path / "clash.pcap", clash_call(random.Random(2)))
    s = _by_ssrc(assert_like_tshark(pcap, heuristic))
    assert [s[k].payload_names() for k in (1, 2, 3, 4)] == ["opus", "speex", "AMR-WB",
                                                            "RTPType-98"]
    assert (5 in s) == heuristic  # port 31000 of another address: no conversation


@needs_tshark
def test_dynamic_payloads_without_sdp(tmp_path: Path) -> None:
    pcap = write_pcap(tmp_path / "nosdp.pcap", no_sdp(random.Random(3)))
    s = _by_ssrc(assert_like_tshark(pcap))
    assert [s[k].payload_names() for k in range(1, 6)] == [
        "RTPType-96", "RTPType-97", "rtpevent", "RTPType-111", "g711U"]
    assert [s[k].min_jitter_ms is None for k in range(1, 6)] == [True] * 4 + [False]
    assert assert_like_tshark(pcap, heuristic=False) == {}


@needs_tshark
@pytest.mark.parametrize("link", list(LINKS))
def test_link_types_and_fragments(tmp_path: Path, link: str) -> None:
    """Every link type; video packets in IPv4 fragments; IPv6 (also fragmented)."""
    r = random.Random(link)
    frames = merge(sdp_call(r), _stream(r, src="2001:db8::1", sport=34000, dst="2001:db8::2",
                                        dport=34002, ssrc=10, payload_len=1300))
    pcap = write_pcap(tmp_path / f"{link}.pcap", frames, link=link, mtu=576,
                      nano=link == "sll2")
    s = _by_ssrc(assert_like_tshark(pcap))
    assert s[5].packets == 60 and s[10].packets == 60  # reassembled, every one
