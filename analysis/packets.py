"""Read a pcap into typed UDP records, and parse the SIP messages among them.

Frame numbers are 1-based, as Wireshark shows them, so a report can point at a frame.
"""
from __future__ import annotations

import re
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path

from analysis.rtp import rtp_header

SIP_METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "PRACK", "UPDATE",
               "INFO", "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH")
STUN_COOKIE = b"\x21\x12\xa4\x42"


@dataclass(frozen=True)
class Udp:
    frame: int
    time: float
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes

    @property
    def kind(self) -> str:
        """sip | stun | rtp | rtcp | udp, guessed from the payload like Wireshark heuristics."""
        p = self.payload
        if p.startswith(b"SIP/2.0 ") or p.split(b" ", 1)[0].decode(errors="replace") in SIP_METHODS:
            return "sip"
        if len(p) >= 20 and p[4:8] == STUN_COOKIE and p[0] & 0xC0 == 0:
            return "stun"
        if len(p) >= 12 and p[0] >> 6 == 2 and 200 <= p[1] <= 204:
            return "rtcp"
        return "rtp" if rtp_header(p) is not None else "udp"  # tshark's rtp_udp heuristic


@dataclass(frozen=True)
class Sdp:
    addr: str | None  # c= connection address
    audio_port: int | None  # m=audio port
    video_port: int | None = None


@dataclass
class SipMessage:
    pkt: Udp
    first_line: str
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: str = ""

    @property
    def is_request(self) -> bool:
        return not self.first_line.startswith("SIP/2.0")

    @property
    def method(self) -> str:
        """Request method, or the CSeq method for a response."""
        if self.is_request:
            return self.first_line.split(" ", 1)[0]
        return self.header("cseq").split()[-1] if self.header("cseq") else ""

    @property
    def status(self) -> int | None:
        if self.is_request:
            return None
        return int(self.first_line.split()[1])

    @property
    def summary(self) -> str:
        if self.is_request:
            return f"{self.method} {self.first_line.split()[1]}"
        return f"{self.first_line[8:]} ({self.method})"

    def header(self, name: str) -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else ""

    @property
    def call_id(self) -> str:
        return self.header("call-id")

    @property
    def sdp(self) -> Sdp | None:
        if "application/sdp" not in self.header("content-type").lower() or not self.body:
            return None
        return parse_sdp(self.body)


_COMPACT = {"i": "call-id", "m": "contact", "v": "via", "f": "from", "t": "to",
            "c": "content-type", "l": "content-length"}


def parse_sip(pkt: Udp) -> SipMessage:
    text = pkt.payload.decode(errors="replace")
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    msg = SipMessage(pkt=pkt, first_line=lines[0], body=body)
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        key = _COMPACT.get(key, key)
        msg.headers.setdefault(key, []).append(value.strip())
    return msg


def parse_sdp(body: str) -> Sdp:
    """Address and ports of the first audio and video m-lines; a media-level c= line
    overrides the session-level one for its m= section (RFC 4566)."""
    session = audio_addr = None
    audio = video = None
    section = "session"
    for line in body.splitlines():
        if m := re.match(r"m=(\w+) (\d+) ", line):
            section = m.group(1)
            if section == "audio" and audio is None:
                audio = int(m.group(2))
                section = "first-audio"
            elif section == "video" and video is None:
                video = int(m.group(2))
        elif line.startswith("c=IN IP4 "):
            if section == "session":
                session = line.split()[2]
            elif section == "first-audio":
                audio_addr = line.split()[2]
    return Sdp(addr=audio_addr or session, audio_port=audio, video_port=video)


_LINK_OFFSET = {1: 14, 113: 16, 276: 20, 101: 0, 12: 0}  # Ethernet, SLL, SLL2, raw IP


def read_udp(path: Path) -> list[Udp]:
    """Every IPv4 UDP datagram in a pcap (classic format, as tcpdump writes it), fragments
    reassembled, with its Wireshark frame number (a reassembled datagram takes the frame of
    its last fragment, as Wireshark shows it). A plain struct reader: ~50x faster than scapy."""
    out: list[Udp] = []
    if not path.exists() or path.stat().st_size < 24:
        return out
    data = path.read_bytes()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a classic pcap file (pcapng is not supported)")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    link = struct.unpack(endian + "I", data[20:24])[0]
    if link not in _LINK_OFFSET:
        raise ValueError(f"{path}: unsupported link type {link}")
    off, rec, frame, size = _LINK_OFFSET[link], struct.Struct(endian + "IIII"), 0, len(data)
    scale = 1e-9 if nano else 1e-6
    pos = 24
    frags: dict[tuple[bytes, int], dict[int, bytes]] = {}  # (addrs, id) -> offset -> data
    ends: dict[tuple[bytes, int], int] = {}  # total length once the last fragment is seen
    while pos + 16 <= size:
        sec, frac, incl, _ = rec.unpack_from(data, pos)
        pos += 16
        pkt = data[pos:pos + incl]
        pos += incl
        frame += 1
        if link == 1 and pkt[12:14] != b"\x08\x00":
            continue
        if link == 113 and pkt[14:16] != b"\x08\x00":
            continue
        ip = pkt[off:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue  # not IPv4 UDP
        ihl = (ip[0] & 0x0F) * 4
        if (ip[6] & 0x3F) or ip[7]:  # a fragment: keep until the datagram is whole
            whole = _reassemble(ip, ihl, frags, ends)
            if whole is None:
                continue
            ip, ihl = whole, 20
        udp_len = int.from_bytes(ip[ihl + 4:ihl + 6], "big")
        out.append(Udp(frame, sec + frac * scale, socket.inet_ntoa(ip[12:16]),
                       int.from_bytes(ip[ihl:ihl + 2], "big"), socket.inet_ntoa(ip[16:20]),
                       int.from_bytes(ip[ihl + 2:ihl + 4], "big"),
                       bytes(ip[ihl + 8:ihl + max(8, udp_len)])))
    return out


def _reassemble(ip: bytes, ihl: int, frags: dict[tuple[bytes, int], dict[int, bytes]],
                ends: dict[tuple[bytes, int], int]) -> bytes | None:
    """Add one fragment; return a synthetic unfragmented IPv4 packet once all data is in."""
    key = (ip[12:20], int.from_bytes(ip[4:6], "big"))
    offset = (int.from_bytes(ip[6:8], "big") & 0x1FFF) * 8
    total = int.from_bytes(ip[2:4], "big")
    data = ip[ihl:total]
    parts = frags.setdefault(key, {})
    parts[offset] = data
    if not ip[6] & 0x20:  # MF clear: the last fragment fixes the length
        ends[key] = offset + len(data)
    end = ends.get(key)
    if end is None:
        return None
    have = 0
    for start in sorted(parts):
        if start > have:
            return None
        have = max(have, start + len(parts[start]))
    if have < end:
        return None
    payload = bytearray(end)
    for start, chunk in parts.items():
        payload[start:start + len(chunk)] = chunk
    del frags[key], ends[key]
    head = bytearray(ip[:20])
    head[0] = 0x45
    head[2:4] = (20 + end).to_bytes(2, "big")
    head[6:8] = b"\x00\x00"
    return bytes(head) + bytes(payload)


def sip_messages(packets: list[Udp]) -> list[SipMessage]:
    return [parse_sip(p) for p in packets if p.kind == "sip"]
