"""Read a classic pcap into UDP datagrams, numbered and timed as Wireshark shows them.

One reader for all of natlab's analysis. Formats: classic pcap, microsecond and nanosecond
timestamps, either byte order (pcapng: a one-line error saying how to convert). Link types:
Ethernet (with 802.1Q/802.1ad/QinQ tags), Linux cooked v1 and v2, raw IP (DLT 12, 14, 101,
228, 229) and BSD loopback (DLT 0 and 108). IPv4 and IPv6; fragments are reassembled, and
a reassembled datagram takes the frame number and time of the fragment that completed it,
as Wireshark shows it. Every frame counts for the frame number, UDP or not.

`Udp.rel_ns` is the exact integer time since the capture's first frame (Wireshark's
frame.time_relative): RTP statistics use it so that they print what tshark prints.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from natlab.errors import InputError

SIP_METHODS = frozenset((
    "INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "PRACK", "UPDATE", "INFO",
    "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH"))
STUN_COOKIE = b"\x21\x12\xa4\x42"


class PcapError(InputError, ValueError):
    """A capture file that cannot be read (one line; also a ValueError for older callers)."""


class Udp(NamedTuple):
    """One UDP datagram of a capture (reassembled if it came in IP fragments)."""

    frame: int  # 1-based, as Wireshark numbers frames
    time: float  # epoch seconds
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes
    rel_ns: int = 0  # ns since the capture's first frame (exact)

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
        from analysis.rtp import rtp_header  # rtp imports this module
        return "rtp" if rtp_header(p) is not None else "udp"  # tshark's rtp_udp heuristic


@dataclass
class Capture:
    """The UDP datagrams of one pcap file, in Wireshark's order."""

    path: Path
    frames: int = 0  # all frames, UDP or not
    start: float = 0.0  # epoch seconds of the first frame
    udp: list[Udp] = field(default_factory=list)


_MAGIC = {b"\xd4\xc3\xb2\xa1": ("<", 1000), b"\xa1\xb2\xc3\xd4": (">", 1000),
          b"\x4d\x3c\xb2\xa1": ("<", 1), b"\xa1\xb2\x3c\x4d": (">", 1)}
_VLAN = frozenset((0x8100, 0x88A8, 0x9100))
# link type -> (offset of the EtherType, or -1: look at the IP version nibble; L3 offset)
_LINKS: dict[int, tuple[int, int]] = {1: (12, 14), 113: (14, 16), 276: (0, 20), 101: (-1, 0),
                                      12: (-1, 0), 14: (-1, 0), 228: (-1, 0), 229: (-1, 0),
                                      0: (-1, 4), 108: (-1, 4)}
# IPv4 header without options + UDP header: version/ihl, total length, flags/fragment,
# protocol, source + destination address, source port, destination port, UDP length
_IP4_UDP = struct.Struct("!BxHxxHxB2x8sHHH")
_IP4 = struct.Struct("!BxHHHxB")  # version/ihl, total length, id, flags/fragment, protocol
_UDP = struct.Struct("!HHH")
FragKey = tuple[bytes, int]  # source and destination address, identification


@dataclass
class _Frags:
    """Fragments waiting for the rest of their datagram (offset -> data)."""

    parts: dict[FragKey, dict[int, bytes]] = field(default_factory=dict)
    ends: dict[FragKey, int] = field(default_factory=dict)
    proto: dict[FragKey, int] = field(default_factory=dict)  # IPv6: next header of offset 0

    def add(self, key: FragKey, offset: int, data: bytes, last: bool) -> bytes | None:
        """Add one fragment's data; the whole payload once every byte is in, else None."""
        parts = self.parts.setdefault(key, {})
        parts[offset] = data
        if last:
            self.ends[key] = offset + len(data)
        end = self.ends.get(key)
        if end is None:
            return None
        have = 0
        for start in sorted(parts):
            if start > have:
                return None
            have = max(have, start + len(parts[start]))
        if have < end:
            return None
        whole = bytearray(end)
        for start, chunk in parts.items():
            whole[start:start + len(chunk)] = chunk[:max(0, end - start)]
        del self.parts[key], self.ends[key]
        return bytes(whole)


def read_pcap(path: Path) -> Capture:
    """Every UDP datagram of a classic pcap file. Raises PcapError on a file it cannot read."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise PcapError(f"cannot read {path}: {e.strerror or e}") from None
    return parse_pcap(raw, str(path), path)


def read_udp(path: Path) -> list[Udp]:
    """The UDP datagrams of a pcap; [] if the file is missing or holds no packet (a capture
    that never started)."""
    path = Path(path)
    if not path.exists() or path.stat().st_size < 24:
        return []
    return read_pcap(path).udp


def _header(raw: bytes, name: str) -> tuple[str, int, int]:
    """(byte order, ns per timestamp fraction unit, link type) of a classic pcap."""
    magic = raw[:4]
    if magic == b"\x0a\x0d\x0d\x0a":
        raise PcapError(f"{name}: pcapng is not supported, convert it first: "
                        "editcap -F pcap IN OUT")
    if len(raw) < 24 or magic not in _MAGIC:
        raise PcapError(f"{name}: not a classic pcap file")
    endian, mult = _MAGIC[magic]
    link = struct.unpack_from(endian + "I", raw, 20)[0] & 0x0FFFFFFF
    if link not in _LINKS:
        raise PcapError(f"{name}: unsupported link type {link}")
    return endian, mult, link


def parse_pcap(raw: bytes, name: str = "capture", path: Path | None = None) -> Capture:
    """The UDP datagrams of pcap file bytes: one tight loop; fragments take a slower path."""
    endian, mult, link = _header(raw, name)
    cap = Capture(path or Path(name))
    et_off, l3_off = _LINKS[link]
    rec_unpack = struct.Struct(endian + "IIII").unpack_from
    ip4_unpack, udp_unpack = _IP4_UDP.unpack_from, _UDP.unpack_from
    vlan = _VLAN
    pairs: dict[bytes, tuple[str, str]] = {}  # address bytes (src + dst) -> text
    frags = _Frags()
    out = cap.udp
    new = tuple.__new__
    end = len(raw)
    off = 24
    frame = 0
    t0 = -1
    while off + 16 <= end:
        sec, frac, caplen, _ = rec_unpack(raw, off)
        p = off + 16
        off = stop = p + caplen
        if stop > end:
            break  # cut short in the middle of a packet
        frame += 1
        ns = sec * 1_000_000_000 + frac * mult
        if t0 < 0:
            t0 = ns
        if et_off >= 0:
            if caplen < l3_off:
                continue
            et = raw[p + et_off] << 8 | raw[p + et_off + 1]
            q = p + l3_off
            while et in vlan and link == 1 and q + 4 <= stop:
                et = raw[q + 2] << 8 | raw[q + 3]
                q += 4
        else:
            q = p + l3_off
            if q >= stop:
                continue
            et = (0x0800, 0x86DD)[raw[q] >> 4 == 6]
        if et == 0x0800 and q + 28 <= stop:
            vihl, total, frag, proto, sd, sport, dport, ulen = ip4_unpack(raw, q)
            if vihl == 0x45 and proto == 17 and not frag & 0x3FFF:  # the common case
                u = q + 20
                ipend = q + total if q + total < stop else stop
                raw_dgram = raw
                if u + 8 > ipend:
                    continue
            else:
                found = _ip4_udp(raw, q, stop, frags)
                if found is None:
                    continue
                raw_dgram, u, ipend, sd = found
                sport, dport, ulen = udp_unpack(raw_dgram, u)
        elif et == 0x86DD or et == 0x0800:
            found = _ip6_udp(raw, q, stop, frags) if et == 0x86DD else _ip4_udp(
                raw, q, stop, frags)
            if found is None:
                continue
            raw_dgram, u, ipend, sd = found
            sport, dport, ulen = udp_unpack(raw_dgram, u)
        else:
            continue
        pair = pairs.get(sd)
        if pair is None:
            half = len(sd) // 2
            pair = pairs[sd] = (_addr(sd[:half]), _addr(sd[half:]))
        src, dst = pair
        pend = u + ulen if 8 <= ulen and u + ulen < ipend else ipend
        out.append(new(Udp, (frame, ns / 1e9, src, sport, dst, dport, raw_dgram[u + 8:pend],
                             ns - t0)))
    cap.frames = frame
    cap.start = t0 / 1e9 if t0 >= 0 else 0.0
    return cap


def _ip4_udp(raw: bytes, q: int, stop: int, frags: _Frags
             ) -> tuple[bytes, int, int, bytes] | None:
    """(buffer, UDP offset, end of IP payload, src + dst) of an IPv4 UDP datagram with
    options or in fragments (reassembled once complete)."""
    if q + 20 > stop:
        return None
    vihl, total, ident, frag, proto = _IP4.unpack_from(raw, q)
    if proto != 17 or vihl >> 4 != 4:
        return None
    ipend = min(q + total, stop)
    u = q + (vihl & 0x0F) * 4
    sd = raw[q + 12:q + 20]
    if frag & 0x3FFF:  # a fragment: keep it until the datagram is whole
        whole = frags.add((sd, ident), (frag & 0x1FFF) * 8, raw[u:ipend], not frag & 0x2000)
        if whole is None or len(whole) < 8:
            return None
        return whole, 0, len(whole), sd
    return (raw, u, ipend, sd) if u + 8 <= ipend else None


def _ip6_udp(raw: bytes, q: int, stop: int, frags: _Frags
             ) -> tuple[bytes, int, int, bytes] | None:
    """(buffer, UDP offset, end of IP payload, src + dst) of an IPv6 UDP datagram, reassembled
    from fragments once complete."""
    if q + 40 > stop or raw[q] >> 4 != 6:
        return None
    ipend = min(q + 40 + (raw[q + 4] << 8 | raw[q + 5]), stop)
    nxt, u = raw[q + 6], q + 40
    sd = raw[q + 8:q + 40]
    while nxt in (0, 43, 60, 44):  # hop-by-hop, routing, destination options, fragment
        if u + 8 > ipend:
            return None
        if nxt == 44:
            offmf = raw[u + 2] << 8 | raw[u + 3]
            if offmf & 0xFFF9:  # offset or more-fragments set: a real fragment
                key = (sd, int.from_bytes(raw[u + 4:u + 8], "big"))
                offset = offmf & 0xFFF8
                if offset == 0:
                    frags.proto[key] = raw[u]
                whole = frags.add(key, offset, raw[u + 8:ipend], not offmf & 1)
                if whole is None or frags.proto.pop(key, None) != 17 or len(whole) < 8:
                    return None
                return whole, 0, len(whole), sd
            nxt, u = raw[u], u + 8
        else:
            nxt, u = raw[u], u + 8 + raw[u + 1] * 8
    if nxt != 17 or u + 8 > ipend:
        return None
    return raw, u, ipend, sd


def _addr(raw: bytes) -> str:
    if len(raw) == 4:
        return f"{raw[0]}.{raw[1]}.{raw[2]}.{raw[3]}"
    return str(ipaddress.IPv6Address(raw))
