"""Synthetic RTP captures for the analysis tests and the benchmark.

A capture is a list of `Datagram`s (one UDP datagram each, time in integer microseconds so the
pcap timestamps are exact). `rtp_stream` builds one RTP stream with the impairments the tests
need (loss, duplicates, reordering, bursts, jitter, marker bits, timestamp jumps); the
`*_noise` helpers build UDP payloads that are not RTP, `sip_with_sdp` a SIP message with an
SDP. `write_pcap` writes them with scapy (Ethernet, 802.1Q, QinQ, Linux cooked v1/v2, raw IP,
BSD loopback; optional IP fragments and nanosecond timestamps); `write_pcap_fast` writes
the same bytes with `struct` for captures too large for scapy.
"""
from __future__ import annotations

import random
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether, Loopback
from scapy.packet import Packet, Raw
from scapy.utils import EDecimal, PcapWriter

EPOCH_US = 1_700_000_000 * 1_000_000  # first packet time: a fixed, realistic epoch


@dataclass(frozen=True)
class Datagram:
    t_us: int
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


def rtp_packet(seq: int, ts: int, ssrc: int, pt: int = 0, marker: bool = False,
               payload: bytes = b"\xff" * 160, csrc: Sequence[int] = (),
               ext_words: int | None = None, pad: int = 0) -> bytes:
    """One RTP packet (RFC 3550 header + payload), optionally with CSRCs, extension, padding."""
    b0 = 0x80 | (0x20 if pad else 0) | (0x10 if ext_words is not None else 0) | len(csrc)
    hdr = struct.pack("!BBHII", b0, (0x80 if marker else 0) | pt, seq & 0xFFFF,
                      ts & 0xFFFFFFFF, ssrc)
    hdr += b"".join(struct.pack("!I", c) for c in csrc)
    if ext_words is not None:
        hdr += struct.pack("!HH", 0xBEDE, ext_words) + b"\x00" * (4 * ext_words)
    tail = (b"\x00" * (pad - 1) + bytes([pad])) if pad else b""
    return hdr + payload + tail


@dataclass
class StreamSpec:
    """One RTP stream; indices refer to the packet's position in the sent sequence."""

    src: str = "10.0.0.1"
    sport: int = 40000
    dst: str = "10.0.0.2"
    dport: int = 40002
    ssrc: int = 0x11223344
    count: int = 200
    start_us: int = 0
    ptime_ms: int = 20
    pt: int = 0
    clock: int = 8000
    seq0: int = 1000
    ts0: int = 160000
    lost: set[int] = field(default_factory=set)
    duplicated: set[int] = field(default_factory=set)
    swapped: set[int] = field(default_factory=set)  # packet i is sent after packet i+1
    markers: set[int] = field(default_factory=set)
    ts_jumps: dict[int, int] = field(default_factory=dict)  # from packet i on, add ticks
    gaps_us: dict[int, int] = field(default_factory=dict)  # packet i (and the rest) later by us
    burst: tuple[int, int] | None = None  # (first, n): n packets held, then 50 us apart
    jitter_us: int = 0  # uniform random extra delay, 0..jitter_us
    pt_changes: dict[int, int] = field(default_factory=dict)  # packet i uses this PT
    payload_len: int = 160


def rtp_stream(spec: StreamSpec, rng: random.Random | None = None) -> list[Datagram]:
    """Datagrams of one stream, in arrival order."""
    rng = rng or random.Random(1)
    step_ticks = spec.clock * spec.ptime_ms // 1000
    out: list[tuple[int, int, bytes]] = []  # (arrival_us, order, payload)
    extra_ts = 0
    extra_us = 0
    for i in range(spec.count):
        extra_ts += spec.ts_jumps.get(i, 0)
        extra_us += spec.gaps_us.get(i, 0)
        if i in spec.lost:
            continue
        pkt = rtp_packet(spec.seq0 + i, spec.ts0 + i * step_ticks + extra_ts, spec.ssrc,
                         spec.pt_changes.get(i, spec.pt), i in spec.markers,
                         bytes([i & 0xFF]) * spec.payload_len)
        t = spec.start_us + i * spec.ptime_ms * 1000 + extra_us
        if spec.jitter_us:
            t += rng.randint(0, spec.jitter_us)
        if spec.burst and spec.burst[0] <= i < spec.burst[0] + spec.burst[1]:
            first, n = spec.burst
            t = spec.start_us + (first + n) * spec.ptime_ms * 1000 + extra_us - (first + n - i) * 50
        order = 2 * i + (3 if i in spec.swapped else 0)
        out.append((t, order, pkt))
        if i in spec.duplicated:
            out.append((t + 300, order + 1, pkt))
    # arrival order: swapped packets go after their successor; times stay non-decreasing
    out.sort(key=lambda x: x[1])
    times = sorted(t for t, _, _ in out)
    return [Datagram(t, spec.src, spec.sport, spec.dst, spec.dport, p)
            for t, (_, _, p) in zip(times, out, strict=True)]


def stun_noise(t_us: int, src: str, sport: int, dst: str, dport: int,
               rng: random.Random) -> Datagram:
    """A STUN Binding Request (first byte 0x00: RTP version 0)."""
    body = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + rng.randbytes(12)
    return Datagram(t_us, src, sport, dst, dport, body)


def rtcp_noise(t_us: int, src: str, sport: int, dst: str, dport: int, ssrc: int) -> Datagram:
    """An RTCP Receiver Report with one report block (second byte 201)."""
    block = struct.pack("!IIIIII", 0x11223344, 0, 1000, 0, 0, 0)
    rr = struct.pack("!BBHI", 0x81, 201, 7, ssrc) + block
    return Datagram(t_us, src, sport, dst, dport, rr)


def sip_noise(t_us: int, src: str, sport: int, dst: str, dport: int) -> Datagram:
    text = (f"OPTIONS sip:{dst} SIP/2.0\r\nVia: SIP/2.0/UDP {src}:{sport}\r\n"
            "Max-Forwards: 70\r\nCall-ID: x@y\r\nCSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n")
    return Datagram(t_us, src, sport, dst, dport, text.encode())


def random_noise(t_us: int, src: str, sport: int, dst: str, dport: int,
                 rng: random.Random, first_byte: int | None = None) -> Datagram:
    body = bytearray(rng.randbytes(rng.randint(1, 60)))
    if first_byte is not None:
        body[0] = first_byte
    return Datagram(t_us, src, sport, dst, dport, bytes(body))


PCMU_DTMF = ("m=audio {port} RTP/AVP 0 101", "a=rtpmap:0 PCMU/8000",
             "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16", "a=sendrecv")


def sip_with_sdp(t_us: int, src: str, sport: int, dst: str, dport: int, first_line: str,
                 call_id: str, cseq: str, media_ip: str, media_port: int,
                 media: Sequence[str] = PCMU_DTMF) -> Datagram:
    """A SIP INVITE or 200 OK whose SDP has these media lines ({port}: media_port; default
    PCMU + telephone-event) under a session-level c= media_ip."""
    ip = "IP6" if ":" in media_ip else "IP4"
    sdp = (f"v=0\r\no=- 1 1 IN {ip} {media_ip}\r\ns=natlab\r\nc=IN {ip} {media_ip}\r\n"
           "t=0 0\r\n" + "".join(line.format(port=media_port) + "\r\n" for line in media))
    head = (f"{first_line}\r\nVia: SIP/2.0/UDP {src}:{sport};branch=z9hG4bK{call_id}\r\n"
            f"From: <sip:1002@{src}>;tag=a\r\nTo: <sip:2005@{dst}>\r\nCall-ID: {call_id}\r\n"
            f"CSeq: {cseq}\r\nContact: <sip:1002@{src}:{sport}>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n")
    return Datagram(t_us, src, sport, dst, dport, (head + sdp).encode())


@dataclass(frozen=True)
class ArpFrame:
    """A non-IP frame (ARP who-has); only write_pcap(link="ether") writes it."""

    t_us: int
    src: str
    dst: str


Frame = TypeVar("Frame", Datagram, ArpFrame, "Datagram | ArpFrame")


def merge(*captures: Iterable[Frame]) -> list[Frame]:
    """Interleave datagram lists by time (stable: equal times keep argument order)."""
    tagged = [(d.t_us, k, j, d) for k, cap in enumerate(captures) for j, d in enumerate(cap)]
    tagged.sort(key=lambda x: (x[0], x[1], x[2]))
    return [d for _, _, _, d in tagged]


# link name -> pcap link type (DLT)
LINKS = {"ether": 1, "vlan": 1, "qinq": 1, "sll": 113, "sll2": 276, "raw": 101, "null": 0}


def _l3(d: Datagram, mtu: int | None) -> list[Packet]:
    """The IP packet(s) of a datagram: fragments if it does not fit in `mtu` bytes."""
    payload = UDP(sport=d.sport, dport=d.dport) / Raw(d.payload)
    if ":" in d.src:
        pkt6 = IPv6(src=d.src, dst=d.dst) / payload
        if mtu is None or len(pkt6) <= mtu:
            return [pkt6]
        whole = IPv6(src=d.src, dst=d.dst) / IPv6ExtHdrFragment(id=d.t_us & 0xFFFFFFFF) / payload
        return list(fragment6(whole, mtu))
    pkt4 = IP(src=d.src, dst=d.dst, id=d.t_us & 0xFFFF) / payload
    if mtu is None or len(pkt4) <= mtu:
        return [pkt4]
    return list(fragment(pkt4, fragsize=(mtu - 20) // 8 * 8))


def _frame(l3: Packet, link: str) -> Packet:
    ethertype = 0x86DD if isinstance(l3, IPv6) else 0x0800
    if link == "sll":
        return CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, src=b"\x02" * 6 + b"\0\0",
                           proto=ethertype) / l3
    if link == "sll2":
        return CookedLinuxV2(proto=ethertype, ifindex=2, lladdrtype=1, pkttype=0, lladdrlen=6,
                             src=b"\x02" * 6 + b"\0\0") / l3
    if link == "raw":
        return l3
    if link == "null":
        return Loopback(type=24 if ethertype == 0x86DD else 2) / l3
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    if link == "vlan":
        return eth / Dot1Q(vlan=7) / l3
    if link == "qinq":
        return eth / Dot1AD(vlan=100) / Dot1Q(vlan=7) / l3
    return eth / l3


def write_pcap(path: Path, datagrams: Iterable[Datagram | ArpFrame], link: str = "ether",
               mtu: int | None = None, nano: bool = False) -> Path:
    """Write with scapy. link: a LINKS name ("vlan": 802.1Q-tagged Ethernet, "qinq": 802.1ad +
    802.1Q, "sll"/"sll2": Linux cooked v1/v2, "raw": raw IP, "null": BSD loopback); an address
    with ":" makes the datagram IPv6; a datagram longer than `mtu` goes out in IP fragments
    (1 us apart, the last one at the datagram's time); nano: nanosecond timestamps."""
    with PcapWriter(str(path), linktype=LINKS[link], sync=False, nano=nano) as w:
        for d in datagrams:
            frames: list[Packet]
            if isinstance(d, ArpFrame):
                frames = [Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff") / ARP(
                    psrc=d.src, pdst=d.dst)]
            else:
                frames = [_frame(p, link) for p in _l3(d, mtu)]
            for k, pkt in enumerate(frames):
                t_us = EPOCH_US + d.t_us - (len(frames) - 1 - k)
                pkt.time = EDecimal(t_us) / EDecimal(1_000_000)
                w.write(pkt)
    return path


def _ip_checksum(hdr: bytes) -> int:
    s = sum(struct.unpack("!10H", hdr))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def write_pcap_fast(path: Path, datagrams: Iterable[Datagram]) -> Path:
    """Same frames as write_pcap(link="ether"), built with struct (UDP checksum 0)."""
    eth = bytes.fromhex("020000000002" "020000000001" "0800")
    addr_cache: dict[str, bytes] = {}

    def aton(a: str) -> bytes:
        if a not in addr_cache:
            addr_cache[a] = bytes(int(x) for x in a.split("."))
        return addr_cache[a]

    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        chunks: list[bytes] = []
        for d in datagrams:
            udp_len = 8 + len(d.payload)
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0, 64, 17, 0,
                             aton(d.src), aton(d.dst))
            ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
            frame = eth + ip + struct.pack("!HHHH", d.sport, d.dport, udp_len, 0) + d.payload
            sec, usec = divmod(EPOCH_US + d.t_us, 1_000_000)
            chunks.append(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
            if len(chunks) >= 4096:
                f.write(b"".join(chunks))
                chunks.clear()
        f.write(b"".join(chunks))
    return path
