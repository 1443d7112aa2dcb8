"""QoS rows (analysis.qos) equal tshark's stream figures on the receiver's capture.

Generated captures of a video call and a conference leg, as the phones (and the PBX) would
capture them: SIP with SDP, each RTP stream as sent (sender's capture) and as received 30 ms
later with jitter and loss (receiver's capture). No root; skipped without tshark.
"""
from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest
from pcapgen import Datagram, StreamSpec, merge, rtp_stream, sip_with_sdp, write_pcap
from tshark_check import TSHARK, qos_differences, run_differences

from analysis.packets import read_udp
from analysis.qos import call_qos, conference_qos

needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed")

CALLER, CALLEE, PBX_A, PBX_B = "10.0.1.2", "10.0.2.2", "10.0.1.1", "10.0.2.1"
MEDIA = ("m=audio {port} RTP/AVP 0 101", "a=rtpmap:0 PCMU/8000",
         "a=rtpmap:101 telephone-event/8000", "m=video 4002 RTP/AVP 96", "a=rtpmap:96 VP8/90000")
DELAY_US = 30_000


def _leg(spec: StreamSpec, rng: random.Random) -> tuple[list[Datagram], list[Datagram]]:
    """(as sent, as received) of one stream: 30 ms later, up to 4 ms jitter, some loss."""
    sent = rtp_stream(dataclasses.replace(spec, lost=set(), jitter_us=0), rng)
    got = rtp_stream(dataclasses.replace(spec, start_us=spec.start_us + DELAY_US,
                                         jitter_us=4000), rng)
    return sent, got


def _call_captures(tmp_path: Path) -> tuple[Path, Path]:
    rng = random.Random(5)
    invite = "INVITE sip:2000@pbx SIP/2.0"
    caller_sig = [sip_with_sdp(0, CALLER, 5060, PBX_A, 5060, invite, "c1", "1 INVITE",
                               CALLER, 4000, MEDIA),
                  sip_with_sdp(90_000, PBX_A, 5060, CALLER, 5060, "SIP/2.0 200 OK", "c1",
                               "1 INVITE", CALLEE, 5000, MEDIA)]
    callee_sig = [sip_with_sdp(40_000, PBX_B, 5060, CALLEE, 5060, invite, "c1", "1 INVITE",
                               CALLER, 4000, MEDIA),
                  sip_with_sdp(80_000, CALLEE, 5060, PBX_B, 5060, "SIP/2.0 200 OK", "c1",
                               "1 INVITE", CALLEE, 5000, MEDIA)]
    a_audio = _leg(StreamSpec(src=CALLER, sport=4000, dst=CALLEE, dport=5000, ssrc=0xA1,
                              start_us=100_000, count=300, lost={20, 21, 150},
                              pt_changes={i: 101 for i in range(60, 66)}, markers={0, 60}), rng)
    b_audio = _leg(StreamSpec(src=CALLEE, sport=5000, dst=CALLER, dport=4000, ssrc=0xB1,
                              start_us=110_000, count=300, lost={7}, markers={0}), rng)
    a_video = _leg(StreamSpec(src=CALLER, sport=4002, dst=CALLEE, dport=4002, ssrc=0xA2,
                              start_us=120_000, count=150, pt=96, clock=90000, ptime_ms=40,
                              payload_len=1000, lost={33}), rng)
    b_video = _leg(StreamSpec(src=CALLEE, sport=4002, dst=CALLER, dport=4002, ssrc=0xB2,
                              start_us=130_000, count=150, pt=96, clock=90000, ptime_ms=40,
                              payload_len=1000), rng)
    caller = write_pcap(tmp_path / "p1000.pcap", merge(
        caller_sig, a_audio[0], a_video[0], b_audio[1], b_video[1]))
    callee = write_pcap(tmp_path / "p2000.pcap", merge(
        callee_sig, b_audio[0], b_video[0], a_audio[1], a_video[1]))
    return caller, callee


@needs_tshark
def test_call_rows_equal_tshark(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    caller, callee = _call_captures(tmp_path / "s")
    rows = call_qos("c1", "1000", "2000", CALLER, CALLEE, read_udp(caller), read_udp(callee),
                    video_pt=96)
    assert [(r.sender, r.media) for r in rows] == [("1000", "audio"), ("2000", "audio"),
                                                   ("1000", "video"), ("2000", "video")]
    for r in rows:
        pcap = callee if r.receiver == "2000" else caller
        assert qos_differences(r, pcap) == [], r.row()
        assert qos_differences(r.row(), pcap) == []
        assert r.owd_mean_ms is not None and 30.0 <= r.owd_mean_ms <= 34.0
        assert r.mean_jitter_ms > 0.1  # every stream has a clock (VP8 from the SDP)
    assert [r.lost for r in rows] == [3, 1, 1, 0]
    assert rows[0].packets == 297  # the DTMF packets are in the stream, as in tshark's
    wrong = dataclasses.replace(rows[0], max_jitter_ms=rows[0].max_jitter_ms + 0.002)
    assert len(qos_differences(wrong, callee)) == 1  # the check can fail
    doc = {"scenarios": [{"name": "s", "rows": [r.row() for r in [*rows, wrong]]}]}
    (tmp_path / "qos.json").write_text(json.dumps(doc))
    n, bad = run_differences(tmp_path)  # the whole-run check, as on a run folder
    assert n == 5 and len(bad) == 1 and "max_jitter_ms" in bad[0]


@needs_tshark
def test_conference_rows_equal_tshark(tmp_path: Path) -> None:
    rng = random.Random(6)
    phone_ip, bridge_ip = "10.0.1.5", PBX_A
    up = _leg(StreamSpec(src=phone_ip, sport=4000, dst=bridge_ip, dport=20000, ssrc=0xC1,
                         start_us=50_000, lost={3}), rng)
    down = _leg(StreamSpec(src=bridge_ip, sport=20000, dst=phone_ip, dport=4000, ssrc=0xD1,
                           start_us=60_000, lost={100, 101}), rng)
    phone = write_pcap(tmp_path / "p1005.pcap", merge(up[0], down[1]))
    bridge = write_pcap(tmp_path / "pbx-a.pcap", merge(down[0], up[1]))
    rows = conference_qos("1005", phone_ip, bridge_ip, read_udp(phone), read_udp(bridge))
    assert [(r.sender, r.receiver, r.lost) for r in rows] == [("1005", "bridge", 1),
                                                              ("bridge", "1005", 2)]
    assert qos_differences(rows[0], bridge) == [] and qos_differences(rows[1], phone) == []
