"""Read a pcap into typed UDP records, and parse the SIP messages among them.

Frame numbers are 1-based, as Wireshark shows them, so a report can point at a frame.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from scapy.layers.inet import IP, UDP
from scapy.utils import PcapReader

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
        if len(p) >= 12 and p[0] >> 6 == 2:
            return "rtcp" if 200 <= p[1] <= 204 else "rtp"
        return "udp"


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
    addr = audio = video = None
    for line in body.splitlines():
        if line.startswith("c=IN IP4 ") and addr is None:
            addr = line.split()[2]
        elif m := re.match(r"m=(audio|video) (\d+) ", line):
            if m.group(1) == "audio" and audio is None:
                audio = int(m.group(2))
            elif m.group(1) == "video" and video is None:
                video = int(m.group(2))
    return Sdp(addr=addr, audio_port=audio, video_port=video)


def read_udp(path: Path) -> list[Udp]:
    """Every IPv4 UDP datagram in a pcap, with its Wireshark frame number."""
    out: list[Udp] = []
    if not path.exists() or path.stat().st_size == 0:
        return out
    with PcapReader(str(path)) as reader:
        for frame, pkt in enumerate(reader, start=1):
            if IP in pkt and UDP in pkt:
                ip, udp = pkt[IP], pkt[UDP]
                out.append(Udp(frame, float(pkt.time), ip.src, int(udp.sport), ip.dst,
                               int(udp.dport), bytes(udp.payload)))
    return out


def sip_messages(packets: list[Udp]) -> list[SipMessage]:
    return [parse_sip(p) for p in packets if p.kind == "sip"]
