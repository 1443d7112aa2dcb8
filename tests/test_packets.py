"""The pcap reader and SIP/SDP parsing, on pcaps and bytes the test makes (no root)."""
from __future__ import annotations

from pathlib import Path

import pytest
from pcapgen import LINKS, Datagram, write_pcap
from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw
from scapy.utils import PcapReader, wrpcap

from analysis.packets import Udp, parse_sdp, parse_sip, read_pcap, read_udp
from analysis.pcap import PcapError

INVITE = (b"INVITE sip:2005@192.168.1.10 SIP/2.0\r\nVia: SIP/2.0/UDP 172.16.10.12:5060\r\n"
          b"Record-Route: <sip:203.0.113.2:5080;lr>, <sip:192.168.1.10;lr>\r\n"
          b"i: abc@1\r\nCSeq: 1 INVITE\r\nc: application/sdp\r\n\r\n"
          b"v=0\r\no=- 1 1 IN IP4 198.51.100.2\r\nc=IN IP4 198.51.100.2\r\n"
          b"m=audio 4000 RTP/AVP 0\r\nm=video 4002 RTP/AVP 96\r\n")


def _frames() -> list:
    eth = Ether(src="00:00:00:00:00:01", dst="00:00:00:00:00:02")
    frames = [
        eth / IP(src="172.16.10.12", dst="192.168.1.10") / UDP(sport=5060, dport=5060) / INVITE,
        eth / ARP(),
        eth / IP(src="1.1.1.1", dst="2.2.2.2") / TCP() / b"x",
        eth / IP(src="198.51.100.2", dst="203.0.113.2") / UDP(sport=4000, dport=4000)
        / Raw(b"\x80\x00\x00\x01" + b"\x00" * 168),
    ]
    frag = eth / IP(src="3.3.3.3", dst="4.4.4.4", flags="MF") / UDP(sport=1, dport=2) / b"abc"
    frames.append(frag)
    for i, f in enumerate(frames):
        f.time = 1000.0 + i * 0.02
    return frames


def test_reader_matches_scapy(tmp_path: Path) -> None:
    path = tmp_path / "t.pcap"
    wrpcap(str(path), _frames())
    ours = read_udp(path)
    theirs = []
    with PcapReader(str(path)) as reader:
        for n, pkt in enumerate(reader, 1):
            if IP in pkt and UDP in pkt and not pkt[IP].flags.MF:
                theirs.append((n, pkt[IP].src, pkt[UDP].sport, bytes(pkt[UDP].payload)))
    assert [(u.frame, u.src, u.sport, u.payload) for u in ours] == theirs
    assert [u.kind for u in ours] == ["sip", "rtp"]
    assert ours[1].time == pytest.approx(1000.06)


def test_fragments_reassembled_at_last_frame(tmp_path: Path) -> None:
    big = Ether() / IP(src="192.168.1.10", dst="192.168.1.25", id=77) / UDP(
        sport=5060, dport=5060) / (INVITE + b"a=x" * 600)
    frames = fragment(big, fragsize=600)
    assert len(frames) >= 3
    path = tmp_path / "f.pcap"
    wrpcap(str(path), [Ether() / ARP(), *reversed(frames)])  # out of order, too
    (udp,) = read_udp(path)
    assert udp.frame == len(frames) + 1 and udp.payload == bytes(big[UDP].payload)
    assert udp.kind == "sip"


def test_media_level_connection_wins() -> None:
    body = ("v=0\r\nc=IN IP4 172.16.10.12\r\nm=audio 4000 RTP/AVP 0\r\n"
            "c=IN IP4 198.51.100.2\r\nm=video 4002 RTP/AVP 96\r\nc=IN IP4 10.9.9.9\r\n")
    sdp = parse_sdp(body)
    assert (sdp.addr, sdp.audio_port, sdp.video_port) == ("198.51.100.2", 4000, 4002)


def test_sip_and_sdp_parsing() -> None:
    pkt = Udp(1, 0.0, "a", 1, "b", 2, INVITE)
    msg = parse_sip(pkt)
    assert msg.is_request and msg.method == "INVITE" and msg.call_id == "abc@1"
    assert msg.headers["record-route"] == ["<sip:203.0.113.2:5080;lr>, <sip:192.168.1.10;lr>"]
    sdp = msg.sdp
    assert sdp is not None and (sdp.addr, sdp.audio_port, sdp.video_port) == (
        "198.51.100.2", 4000, 4002)


def test_not_a_pcap(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    path.write_bytes(b"\x0a\x0d\x0d\x0a" + b"\0" * 40)
    with pytest.raises(PcapError, match="pcapng is not supported, convert it first"):
        read_udp(path)
    path.write_bytes(b"junk" * 10)
    with pytest.raises(ValueError, match="not a classic pcap"):
        read_udp(path)
    assert read_udp(tmp_path / "missing.pcap") == []


@pytest.mark.parametrize("link", list(LINKS))
@pytest.mark.parametrize("nano", [False, True])
def test_link_types_fragments_and_times(tmp_path: Path, link: str, nano: bool) -> None:
    """Every link type, IPv4 and IPv6, datagrams in fragments: records in Wireshark's frame
    numbering (a reassembled datagram at its last fragment), exact relative times."""
    grams = [Datagram(0, "10.0.0.1", 4000, "10.0.0.2", 5000, b"\x80" * 40),
             Datagram(1_500, "2001:db8::1", 4000, "2001:db8::2", 5000, b"v6" * 30),
             Datagram(20_001, "10.0.0.1", 4000, "10.0.0.2", 5000, bytes(range(256)) * 6),
             Datagram(40_000, "2001:db8::2", 5000, "2001:db8::1", 4000, b"f" * 1500),
             Datagram(60_000, "10.0.0.2", 5000, "10.0.0.1", 4000, b"\x00\x01")]
    path = write_pcap(tmp_path / f"{link}.pcap", grams, link=link, mtu=600, nano=nano)
    cap = read_pcap(path)
    with PcapReader(str(path)) as reader:
        n_frames = sum(1 for _ in reader)
    assert cap.frames == n_frames > len(grams)
    got = [(u.src, u.sport, u.dst, u.dport, u.payload) for u in cap.udp]
    assert got == [(g.src, g.sport, g.dst, g.dport, g.payload) for g in grams]
    assert cap.udp[-1].frame == n_frames  # the last datagram is the last frame
    first = grams[0].t_us
    assert [u.rel_ns for u in cap.udp] == [(g.t_us - first) * 1000 for g in grams]
    assert cap.udp[2].frame - cap.udp[1].frame == 3  # 1544 bytes in 3 fragments of <= 600
