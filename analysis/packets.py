"""SIP messages of a capture, over the one pcap reader (`analysis.pcap`) and the one SDP
parser (`analysis.sdp`); `Udp`, `read_udp`, `Sdp` and `parse_sdp` are re-exported here.

Frame numbers are 1-based, as Wireshark shows them, so a report can point at a frame.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from analysis.pcap import SIP_METHODS, STUN_COOKIE, Capture, Udp, read_pcap, read_udp
from analysis.sdp import Sdp, parse_sdp

__all__ = ["SIP_METHODS", "STUN_COOKIE", "Capture", "Sdp", "SipMessage", "Udp", "parse_sdp",
           "parse_sip", "read_pcap", "read_udp", "sip_messages"]


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


def sip_messages(packets: list[Udp]) -> list[SipMessage]:
    return [parse_sip(p) for p in packets if p.kind == "sip"]


def unwrap_turn(packets: list[Udp]) -> list[Udp]:
    """RTP relayed by TURN travels in ChannelData (RFC 8656 §12: a 4-byte header, channel
    0x4000-0x7FFF and length, then the peer's datagram). Such a packet is given its inner RTP
    as payload, keeping its frame, time and outer addresses, so a relayed call's RTP counts on
    the phone's own capture. Wireshark shows these as "ChannelData TURN Message"."""
    from analysis.rtp import rtp_header  # rtp imports this module's records

    out = []
    for p in packets:
        data = p.payload
        if (len(data) >= 16 and 0x40 <= data[0] <= 0x7F
                and int.from_bytes(data[2:4], "big") <= len(data) - 4):
            inner = data[4:4 + int.from_bytes(data[2:4], "big")]
            if rtp_header(inner) is not None:
                p = p._replace(payload=inner)
        out.append(p)
    return out
