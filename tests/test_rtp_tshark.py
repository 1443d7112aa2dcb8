"""analysis.rtp against tshark: the same streams and the same printed figures.

Each scenario writes its own pcap (tests/pcapgen.py), runs
`tshark -q -r PCAP --enable-heuristic rtp_udp -z rtp,streams`, parses the table and checks
that analyze_pcap finds exactly the same streams with the same packets, lost, loss %, start
and end time, min/mean/max delta and jitter (as tshark prints them: 3 decimals) and
"Problems?" flag. Scenario-specific checks pin the figures that do not depend on tshark.
No root needed; skipped where tshark is not installed.
"""
from __future__ import annotations

import argparse
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from pcapgen import (
    ArpFrame,
    Datagram,
    StreamSpec,
    merge,
    random_noise,
    rtcp_noise,
    rtp_packet,
    rtp_stream,
    sip_noise,
    sip_with_sdp,
    stun_noise,
    write_pcap,
    write_pcap_fast,
)
from tshark_check import TSHARK, Key, assert_like_tshark, differences, tshark_streams

from analysis.packets import read_udp
from analysis.rtp import (
    RtpStream,
    analyze_pcap,
    format_streams,
    port_claimed,
    rtp_header,
    rtp_streams,
    streams_json,
)
from natlab import cmd_analyze

needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed")


A, B = "10.0.0.1:40000", "10.0.0.2:40002"
SSRC = StreamSpec().ssrc


def noise(rng: random.Random) -> list[Datagram]:
    """Non-RTP UDP: random bytes, random bytes that look like version 2 on a port a
    dissector claims (DNS), STUN, RTCP, SIP text."""
    out: list[Datagram] = []
    for i in range(40):
        t = 7000 + i * 25_000
        out.append(random_noise(t, "10.0.9.1", 41000 + i, "10.0.9.2", 41002, rng))
        out.append(random_noise(t + 1, "10.0.9.1", 41000 + i, "10.0.9.2", 53, rng,
                                first_byte=0x80))
        out.append(stun_noise(t + 2, "10.0.0.1", 40000, "10.0.9.3", 3478, rng))
        out.append(rtcp_noise(t + 3, "10.0.0.1", 40001, "10.0.0.2", 40003, SSRC))
        out.append(sip_noise(t + 4, "10.0.9.1", 5060, "10.0.9.2", 5060))
    return out


def call(rng: random.Random) -> list[Datagram | ArpFrame]:
    """A call as the testbed captures it (phone side): ARP first, SIP INVITE/200 with SDP
    (PCMU + telephone-event), STUN, RTP both ways with a DTMF burst, RTCP, BYE."""
    me, peer = "172.16.10.12", "203.0.113.2"
    sig: list[Datagram | ArpFrame] = [
        ArpFrame(0, me, "172.16.10.1"),
        stun_noise(2_000, me, 4000, "198.51.100.3", 3478, rng),
        sip_with_sdp(9_000, me, 5060, peer, 5060, f"INVITE sip:2005@{peer} SIP/2.0", "c1",
                     "1 INVITE", me, 4000),
        sip_with_sdp(210_000, peer, 5060, me, 5060, "SIP/2.0 200 OK", "c1", "1 INVITE",
                     peer, 4000),
        rtcp_noise(2_300_000, me, 4001, peer, 4001, 0x7B3FF26D),
        sip_noise(4_300_000, me, 5060, peer, 5060),
    ]
    dtmf = {i: 101 for i in range(120, 128)}
    out = rtp_stream(StreamSpec(src=me, sport=4000, dst=peer, dport=4000, ssrc=0x7B3FF26D,
                                start_us=219_450, seq0=4711, ts0=3_000_000, jitter_us=900,
                                pt_changes=dtmf, markers={0, 120}), rng)
    back = rtp_stream(StreamSpec(src=peer, sport=4000, dst=me, dport=4000, ssrc=0x4BA20278,
                                 start_us=234_269, seq0=65500, ts0=0xFFFFF000, jitter_us=900,
                                 markers={0}), rng)
    return merge(sig, out, back)


def several(rng: random.Random) -> list[Datagram]:
    specs = [StreamSpec(src=f"10.0.{i}.1", sport=16384 + 2 * i, dst=f"10.1.{i}.1",
                        dport=20000 + 2 * i, ssrc=0x1000 + i, start_us=i * 3_333,
                        pt=[0, 8, 18][i % 3], jitter_us=1500 * i, lost={10 + i})
             for i in range(6)]
    return merge(*(rtp_stream(s, rng) for s in specs))


# name -> (capture builder, check of the figures that do not need tshark)
Scenario = tuple[Callable[[random.Random], list], Callable[[dict[Key, RtpStream]], None]]


def _one(streams: dict[Key, RtpStream]) -> RtpStream:
    assert len(streams) == 1
    return next(iter(streams.values()))


def _clean(st: dict[Key, RtpStream]) -> None:
    s = _one(st)
    assert (s.packets, s.expected, s.lost, s.seq_errors) == (200, 200, 0, 0)
    assert s.min_delta_ms == s.max_delta_ms == 20.0 and s.max_jitter_ms == 0.0


def _loss(st: dict[Key, RtpStream]) -> None:
    s = _one(st)
    assert (s.packets, s.expected, s.lost, s.seq_errors) == (195, 200, 5, 3)
    assert round(s.loss_pct, 1) == 2.5 and s.problem


def _dups(st: dict[Key, RtpStream]) -> None:
    s = _one(st)
    assert (s.packets, s.expected, s.lost, s.seq_errors) == (203, 200, -3, 3)


def _reorder(st: dict[Key, RtpStream]) -> None:
    s = _one(st)  # 10 and 11 swapped: 11 is "lost" then 10 is "late": two errors
    assert (s.packets, s.lost, s.seq_errors) == (200, 0, 2) and s.problem


def _wrap(st: dict[Key, RtpStream]) -> None:
    s = _one(st)
    assert (s.packets, s.expected, s.lost) == (298, 300, 2)
    assert s.series.seq[0] == 65400 and s.series.seq[-1] == (65400 + 299) % 65536


def _late_last(st: dict[Key, RtpStream]) -> None:
    s = _one(st)  # tshark's span ends at the last packet *received*: 48, not 49
    assert (s.packets, s.expected, s.lost, s.seq_errors) == (50, 49, -1, 2)


def _payload_change(st: dict[Key, RtpStream]) -> None:
    s = _one(st)  # one stream; comfort noise (and the packet after it) not in the deltas
    assert s.payload_names() == "g711U, g711A, CN" and s.payload_type == 0
    assert s.max_delta_ms == pytest.approx(20.0) and not s.problem


def _burst(st: dict[Key, RtpStream]) -> None:
    s = _one(st)
    assert s.lost == 0 and s.max_delta_ms == pytest.approx(219.5, abs=0.001)
    assert s.min_delta_ms == pytest.approx(0.05, abs=0.001)


def _several(st: dict[Key, RtpStream]) -> None:
    assert len(st) == 6 and all(s.lost == 1 for s in st.values())
    assert sorted(s.payload_type for s in st.values()) == [0, 0, 8, 8, 18, 18]


def _ssrc_change(st: dict[Key, RtpStream]) -> None:
    assert sorted((s.ssrc, s.packets, s.lost) for s in st.values()) == [(0x55, 100, 0),
                                                                      (SSRC, 100, 0)]


def _marker_jump(st: dict[Key, RtpStream]) -> None:
    s = _one(st)  # the jump packet carries the marker bit: not a 100 ms delta
    assert s.max_delta_ms == pytest.approx(20.0, abs=0.001) and s.max_jitter_ms > 5


def _backwards_ts(st: dict[Key, RtpStream]) -> None:
    s = _one(st)  # timestamps fall below the first one: tshark stops measuring
    assert s.problem and s.seq_errors == 0 and s.max_delta_ms == pytest.approx(20.0)


def _noise(st: dict[Key, RtpStream]) -> None:
    assert (A, B, SSRC) in st and st[(A, B, SSRC)].packets == 200
    assert all(not s.dst.endswith(":53") for s in st.values())


def _jitter(st: dict[Key, RtpStream]) -> None:
    s = _one(st)
    assert s.max_jitter_ms > 1.0 and s.min_delta_ms is not None and s.min_delta_ms < 20


def _call(st: dict[Key, RtpStream]) -> None:
    assert len(st) == 2 and all(s.packets == 200 and s.lost == 0 for s in st.values())


SCENARIOS: dict[str, Scenario] = {
    "clean": (lambda r: rtp_stream(StreamSpec()), _clean),
    "loss": (lambda r: rtp_stream(StreamSpec(lost={5, 6, 7, 50, 199 - 20})), _loss),
    "duplicates": (lambda r: rtp_stream(StreamSpec(duplicated={3, 40, 41})), _dups),
    "reorder": (lambda r: rtp_stream(StreamSpec(swapped={10}, jitter_us=3000), r), _reorder),
    "seq_wrap": (lambda r: rtp_stream(StreamSpec(seq0=65400, count=300, lost={135, 136}),
                                      r), _wrap),
    "late_last": (lambda r: rtp_stream(StreamSpec(count=50, swapped={48})), _late_last),
    "payload_change": (lambda r: rtp_stream(StreamSpec(
        pt_changes={**{i: 8 for i in range(50, 80)}, **{i: 13 for i in range(100, 110)}},
        gaps_us={100: 60_000})), _payload_change),
    "burst": (lambda r: rtp_stream(StreamSpec(burst=(40, 10))), _burst),
    "several": (several, _several),
    "ssrc_change": (lambda r: merge(rtp_stream(StreamSpec(count=100)), rtp_stream(
        StreamSpec(count=100, ssrc=0x55, start_us=2_000_000, seq0=7, ts0=99))),
        _ssrc_change),
    "marker_ts_jump": (lambda r: rtp_stream(StreamSpec(ts_jumps={50: 800}, markers={50})),
                       _marker_jump),
    "ts_backwards": (lambda r: rtp_stream(StreamSpec(ts_jumps={60: -200_000})), _backwards_ts),
    "noise": (lambda r: merge(rtp_stream(StreamSpec(jitter_us=2000), r), noise(r)), _noise),
    "jitter": (lambda r: rtp_stream(StreamSpec(jitter_us=9000), r), _jitter),
    "call": (call, _call),
}


@needs_tshark
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_streams_like_tshark(name: str, tmp_path: Path) -> None:
    build, check = SCENARIOS[name]
    pcap = write_pcap(tmp_path / f"{name}.pcap", build(random.Random(name)))
    check(assert_like_tshark(pcap))


@needs_tshark
def test_mixed_payloads_linktypes_and_fast_writer(tmp_path: Path) -> None:
    """Video/44.1 kHz clocks (integer ms division), dynamic PTs (no clock: no jitter), comfort
    noise, IPv6, Linux cooked capture, and the struct-written pcap."""
    r = random.Random(9)
    caps = [rtp_stream(StreamSpec(pt=34, clock=90000, ptime_ms=40, jitter_us=3000), r),
            rtp_stream(StreamSpec(pt=10, clock=44100, ssrc=5, jitter_us=3000), r),
            rtp_stream(StreamSpec(pt=96, ssrc=6, jitter_us=3000), r),
            rtp_stream(StreamSpec(ssrc=7, pt_changes={i: 13 for i in range(30, 40)}), r),
            rtp_stream(StreamSpec(src="2001:db8::1", dst="2001:db8::2", ssrc=8,
                                  jitter_us=2000), r)]
    frames = merge(*caps)
    streams = assert_like_tshark(write_pcap(tmp_path / "sll.pcap", frames, link="sll"))
    dyn = next(s for s in streams.values() if s.ssrc == 6)
    assert dyn.min_jitter_ms is None and dyn.max_jitter_ms == 0.0
    v4 = [f for f in frames if ":" not in f.src]
    assert_like_tshark(write_pcap_fast(tmp_path / "fast.pcap", v4))


@needs_tshark
def test_comparison_catches_a_wrong_figure(tmp_path: Path) -> None:
    """The check is not a tautology: nudging one figure by 1 us makes it fail."""
    pcap = write_pcap(tmp_path / "j.pcap", rtp_stream(StreamSpec(jitter_us=5000),
                                                      random.Random(3)))
    ours = analyze_pcap(pcap)
    assert differences(tshark_streams(pcap), ours) == []
    ours[0].mean_jitter_ms += 0.001
    assert len(differences(tshark_streams(pcap), ours)) == 1


def test_heuristic_rejects_what_wireshark_rejects() -> None:
    rng = random.Random(1)
    ok = rtp_packet(1, 160, 9)
    assert rtp_header(ok) is not None and rtp_header(ok[:12]) is not None
    assert rtp_header(ok[:11]) is None  # shorter than the fixed header
    assert rtp_header(rtcp_noise(0, "a", 1, "b", 2, 5).payload) is None  # RR: PT 201
    assert rtp_header(rtp_packet(1, 1, 9, pt=72)) is None  # RTCP conflict range
    assert rtp_header(rtp_packet(1, 1, 9, pt=78, marker=True)) is None  # -> RTCP (206)
    assert rtp_header(rtp_packet(1, 1, 9, pt=78)) is not None
    assert rtp_header(stun_noise(0, "a", 1, "b", 2, rng).payload) is None  # version 0
    assert rtp_header(sip_noise(0, "a", 1, "b", 2).payload) is None  # "O": version 1
    bad_pad = bytearray(rtp_packet(1, 1, 9, pad=4))
    bad_pad[-1] = 0
    assert rtp_header(bytes(bad_pad)) is None
    assert rtp_header(rtp_packet(1, 1, 9, pad=4)) is not None
    assert rtp_header(rtp_packet(1, 1, 9, csrc=(1, 2, 3), payload=b"")[:20]) is None
    assert port_claimed(40000, 53) and port_claimed(123, 40000)
    assert not port_claimed(4000, 4000) and not port_claimed(40000, 5060)


def test_reader_and_stream_paths_agree(tmp_path: Path) -> None:
    """analyze_pcap is rtp_streams over the one reader's records."""
    frames = merge(rtp_stream(StreamSpec(jitter_us=4000, lost={7}), random.Random(2)),
                   noise(random.Random(4)))
    pcap = write_pcap_fast(tmp_path / "x.pcap", frames)
    a, b = analyze_pcap(pcap), rtp_streams(read_udp(pcap))
    assert [s.as_dict() for s in a] == [s.as_dict() for s in b]
    assert a[0].series.epoch_s[0] == pytest.approx(1_700_000_000 + frames[0].t_us / 1e6)


def test_outputs_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pcap = write_pcap(tmp_path / "c.pcap", rtp_stream(StreamSpec(lost={3})))
    streams = analyze_pcap(pcap)
    d = streams_json(streams)["streams"][0]
    assert set(d) == {"ssrc", "src", "dst", "payload_type", "packets", "expected", "lost",
                      "loss_pct", "seq_errors", "min_delta_ms", "mean_delta_ms",
                      "max_delta_ms", "min_jitter_ms", "mean_jitter_ms", "max_jitter_ms"}
    assert (d["src"], d["dst"], d["lost"], d["expected"]) == (A, B, 1, 200)
    s = streams[0].series
    assert len(s.time_s) == len(s.seq) == len(s.delta_ms) == len(s.jitter_ms) == 199
    table = format_streams(streams)
    assert "0x11223344" in table and "g711U" in table and "1 (0.5%)" in table
    parser = argparse.ArgumentParser()
    cmd_analyze.register(parser.add_subparsers())
    args = parser.parse_args(["analyze", str(pcap), "--json"])
    assert args.func(args) == 0 and '"lost": 1' in capsys.readouterr().out
    args = parser.parse_args(["analyze", str(pcap), "--sdp-only"])  # no SDP: no stream
    assert args.func(args) == 0 and "no RTP streams" in capsys.readouterr().out
    for bad in (tmp_path / "missing.pcap", tmp_path / "junk.pcap"):
        if bad.name == "junk.pcap":
            bad.write_bytes(b"\x0a\x0d\x0d\x0a" + bytes(40))
        args = parser.parse_args(["analyze", str(bad)])
        with pytest.raises(ValueError, match="missing|pcapng"):
            args.func(args)
