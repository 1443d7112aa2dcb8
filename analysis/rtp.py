"""RTP streams of a capture, with the figures `tshark -z rtp,streams` prints.

Pure functions over packets: `analyze_pcap` reads a classic pcap with a small `struct`
reader (Ethernet, 802.1Q, Linux cooked v1/v2, raw IP, BSD loopback; IPv4 and IPv6; UDP),
`analyze_packets` takes already-parsed UDP records. RTP is recognised the way Wireshark
4.0's `rtp_udp` heuristic recognises it (`rtp_header`), packets are grouped the way its RTP
tap groups them (source and destination address and port, plus SSRC; a payload type change
stays in the stream, an SSRC change starts a new one), and the statistics are those of
`analysis.rtpstats` (Wireshark's `rtppacket_analyse`).

UDP ports whose own dissector takes the packet first are skipped (a table measured on
tshark 4.0.17). Not modelled: other heuristics that could claim a version-2 packet first,
conversations set up by other protocols (SDP: dynamic payload types get a name and clock
rate only if the caller passes `dynamic`), IP reassembly (fragments are skipped), pcapng.
"""
from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis import rtpstats
from analysis.rtpstats import DynamicPayloads, StreamStats, payload_name

# UDP ports whose own dissector claims an RTP packet before the heuristics run, in tshark
# 4.0.17 (measured: one PCMU packet to/from every port 1-65535 of an otherwise silent host).
# UDP tries the lower port first, then the higher; a dissector may accept only one direction.
_CLAIMED_PORTS = frozenset((
    7, 13, 19, 37, 49, 53, 67, 68, 69, 111, 123, 137, 138, 173, 213, 269, 319, 320, 389, 427,
    434, 464, 496, 500, 513, 514, 520, 521, 524, 525, 546, 547, 664, 701, 853, 854, 910, 921,
    925, 1001, 1113, 1153, 1194, 1293, 1628, 1629, 1718, 1719, 1745, 1755, 1900, 2099, 2157,
    2221, 2222, 2246, 2268, 2269, 2313, 2345, 2887, 2944, 2945, 2948, 2949, 3000, 3130, 3250,
    3343, 3357, 3389, 3452, 3455, 3544, 3567, 3671, 3784, 3785, 3804, 3863, 4305, 4306, 4307,
    4341, 4342, 4500, 4551, 4555, 4569, 4729, 4754, 4784, 4789, 4790, 4791, 4991, 5031, 5072,
    5094, 5246, 5247, 5353, 5355, 5404, 5405, 5436, 5567, 5678, 5683, 5684, 5868, 6073, 6081,
    6118, 6160, 6635, 6784, 6970, 7074, 7075, 7255, 7275, 7784, 8200, 8600, 8767, 8805, 8848,
    9200, 9201, 9202, 9203, 9214, 9600, 9875, 9877, 9899, 9901, 9956, 10253, 11211, 11273,
    12000, 12001, 12002, 12003, 12004, 12220, 12222, 12223, 13400, 17220, 17500, 17755, 17756,
    19132, 19948, 19999, 23272, 24576, 24577, 25826, 26000, 27500, 27910, 27950, 27951, 27952,
    27953, 27960, 27961, 27962, 27963, 32000, 32512, 34962, 34980, 37008, 41170, 44818, 47000,
    54328, 60001))
CLAIMED_SRC_PORTS = _CLAIMED_PORTS | {8755}  # opensafety takes it only as source port
CLAIMED_DST_PORTS = _CLAIMED_PORTS | {1985, 2029}  # hsrp only as destination port


def port_claimed(sport: int, dport: int) -> bool:
    """True if another dissector takes UDP sport -> dport before tshark's RTP heuristic."""
    return sport in CLAIMED_SRC_PORTS or dport in CLAIMED_DST_PORTS


@dataclass(frozen=True)
class RtpHeader:
    version: int
    marker: bool
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int


_HDR = struct.Struct("!BBHII")


def rtp_header(payload: bytes) -> RtpHeader | None:
    """The RTP header if Wireshark's UDP heuristic (`dissect_rtp_heur`) takes the payload.

    Rejected: fewer than 2 bytes; version 0 (STUN, ZRTP, ...) and 1 and 3 (SIP text, ...);
    payload types 72-76 (RTCP SR/RR/SDES/BYE/APP without the marker bit); CSRC list or header
    extension longer than the packet; a padding count of 0 or longer than the payload. Also
    dropped, as `dissect_rtp` hands it to RTCP: marker bit with payload type 64-95 (every RTCP
    packet type 192-223).
    """
    n = len(payload)
    if n < 12:
        return None  # also covers n < 2; a v2 header needs 12 bytes
    b0, b1, seq, ts, ssrc = _HDR.unpack_from(payload, 0)
    if not _accept(payload, n, b0, b1):
        return None
    return RtpHeader(2, bool(b1 & 0x80), b1 & 0x7F, seq, ts, ssrc)


def _accept(buf: bytes | memoryview, n: int, b0: int, b1: int, off: int = 0) -> bool:
    """Heuristic checks on the n-byte UDP payload at buf[off:], first two bytes b0, b1."""
    if b0 >> 6 != 2:
        return False
    pt = b1 & 0x7F
    if 72 <= pt <= 76 or (b1 & 0x80 and 64 <= pt <= 95):
        return False
    hlen = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if n - hlen < 4:
            return False
        hlen += 4 + 4 * int.from_bytes(buf[off + hlen + 2:off + hlen + 4], "big")
    if n < hlen:
        return False
    if b0 & 0x20:
        pad = buf[off + n - 1]
        if pad == 0 or n - hlen < pad:
            return False
    return True


@dataclass
class RtpSeries:
    """Per-packet values of one stream, in arrival order (for plots)."""

    time_s: list[float] = field(default_factory=list)  # since the capture's first frame
    seq: list[int] = field(default_factory=list)
    timestamp: list[int] = field(default_factory=list)
    payload_type: list[int] = field(default_factory=list)
    marker: list[bool] = field(default_factory=list)
    delta_ms: list[float] = field(default_factory=list)
    jitter_ms: list[float] = field(default_factory=list)
    flags: list[int] = field(default_factory=list)  # rtpstats.WRONG_SEQ | ...
    names: dict[int, str] = field(default_factory=dict)  # payload type -> tshark's name


@dataclass
class RtpStream:
    """One RTP stream, Wireshark's figures. min_* is None where tshark prints -1 (no packet
    qualified); expected/lost keep tshark's uint32/int32 arithmetic."""

    ssrc: int
    src: str
    dst: str
    payload_type: int
    packets: int
    expected: int
    lost: int
    loss_pct: float
    seq_errors: int
    min_delta_ms: float | None
    mean_delta_ms: float
    max_delta_ms: float
    min_jitter_ms: float | None
    mean_jitter_ms: float
    max_jitter_ms: float
    series: RtpSeries = field(default_factory=RtpSeries, repr=False, compare=False)

    def as_dict(self, series: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {k: getattr(self, k) for k in _DICT_FIELDS}
        if series:
            s = self.series
            d["series"] = {"time_s": s.time_s, "seq": s.seq, "timestamp": s.timestamp,
                           "delta_ms": s.delta_ms, "jitter_ms": s.jitter_ms}
        return d

    @property
    def problem(self) -> bool:
        """tshark's "Problems?" X: a wrong sequence number or timestamp somewhere."""
        bad = rtpstats.WRONG_SEQ | rtpstats.WRONG_TIMESTAMP
        return any(f & bad for f in self.series.flags)

    @property
    def start_s(self) -> float:
        return self.series.time_s[0] if self.series.time_s else 0.0

    @property
    def end_s(self) -> float:
        return self.series.time_s[-1] if self.series.time_s else 0.0

    def payload_names(self) -> str:
        """All payload types seen, by number, joined as tshark joins them."""
        return ", ".join(self.series.names[p] for p in sorted(self.series.names))


_DICT_FIELDS = ("ssrc", "src", "dst", "payload_type", "packets", "expected", "lost",
                "loss_pct", "seq_errors", "min_delta_ms", "mean_delta_ms", "max_delta_ms",
                "min_jitter_ms", "mean_jitter_ms", "max_jitter_ms")

StreamKey = tuple[str, int, str, int, int]
# per stream, per packet: (ms since the first frame, seq, timestamp, second header byte)
Rows = list[tuple[float, int, int, int]]


def _build(key: StreamKey, rows: Rows, dynamic: DynamicPayloads | None) -> RtpStream:
    times, seqs, stamps, b1s = (list(c) for c in zip(*rows, strict=True))
    pts = [b & 0x7F for b in b1s]
    markers = [bool(b & 0x80) for b in b1s]
    st: StreamStats = rtpstats.analyse(times, seqs, stamps, pts, markers, dynamic)
    src, sport, dst, dport, ssrc = key
    series = RtpSeries([t / 1000.0 for t in times], seqs, stamps, pts, markers,
                       st.delta_ms, st.jitter_ms, st.flags,
                       {p: payload_name(p, dynamic) for p in set(pts)})
    return RtpStream(
        ssrc=ssrc, src=f"{src}:{sport}", dst=f"{dst}:{dport}", payload_type=pts[0],
        packets=st.packets, expected=st.expected, lost=st.lost, loss_pct=st.lost_pct,
        seq_errors=st.seq_errors,
        min_delta_ms=None if st.min_delta == -1 else st.min_delta,
        mean_delta_ms=st.mean_delta, max_delta_ms=st.max_delta,
        min_jitter_ms=None if st.min_jitter == -1 else st.min_jitter,
        mean_jitter_ms=st.mean_jitter, max_jitter_ms=st.max_jitter, series=series)


def analyze_packets(records: Iterable[tuple[float, str, int, str, int, bytes]],
                    start: float | None = None,
                    dynamic: DynamicPayloads | None = None) -> list[RtpStream]:
    """Streams among (time_s, src, sport, dst, dport, udp_payload) records, in capture order.

    Times are made relative to `start` (default: the first record), as tshark makes them
    relative to the first frame; with float epoch times the last digit of a 3-decimal ms
    figure can differ from tshark's, `analyze_pcap` is exact.
    """
    streams: dict[StreamKey, Rows] = {}
    t0 = start
    for t, src, sport, dst, dport, payload in records:
        if t0 is None:
            t0 = t
        hdr = rtp_header(payload)
        if hdr is None or port_claimed(sport, dport):
            continue
        key = (src, sport, dst, dport, hdr.ssrc)
        rows = streams.get(key)
        if rows is None:
            rows = streams[key] = []
        rows.append(((t - t0) * 1000.0, hdr.seq, hdr.timestamp, payload[1]))
    return [_build(k, v, dynamic) for k, v in streams.items()]


def analyze_pcap(path: Path, dynamic: DynamicPayloads | None = None) -> list[RtpStream]:
    """Streams of a pcap file, in the order their first packet appears."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    rows_by_key = _pcap_rtp_rows(raw, str(path))
    out = []
    for (src, sport, dst, dport, ssrc), rows in rows_by_key.items():
        out.append(_build((_addr(src), sport, _addr(dst), dport, ssrc), rows, dynamic))
    return out


_REC_LE, _REC_BE = struct.Struct("<IIII"), struct.Struct(">IIII")
_IP4 = struct.Struct("!BxHxxHxB2x4s4s")  # ver/ihl, total length, flags/frag, proto, src, dst
_UDP = struct.Struct("!HHH")
_RTP_REST = struct.Struct("!HII")  # seq, timestamp, ssrc
_VLAN = (0x8100, 0x88A8, 0x9100)
# link type -> (offset of the EtherType or -1 = look at the IP version nibble, L3 offset)
_LINKS: dict[int, tuple[int, int]] = {1: (12, 14), 113: (14, 16), 276: (0, 20), 101: (-1, 0),
                                      12: (-1, 0), 14: (-1, 0), 228: (-1, 0), 229: (-1, 0),
                                      0: (-1, 4), 108: (-1, 4)}
RawKey = tuple[bytes, int, bytes, int, int]


def _pcap_header(raw: bytes, name: str) -> tuple[struct.Struct, int, int]:
    """(record header struct, ns per timestamp fraction unit, link type) of a pcap file."""
    magic = raw[:4]
    if magic == b"\x0a\x0d\x0d\x0a":
        raise ValueError(f"{name}: pcapng is not supported (editcap -F pcap IN OUT converts it)")
    formats = {b"\xd4\xc3\xb2\xa1": (_REC_LE, 1000), b"\xa1\xb2\xc3\xd4": (_REC_BE, 1000),
               b"\x4d\x3c\xb2\xa1": (_REC_LE, 1), b"\xa1\xb2\x3c\x4d": (_REC_BE, 1)}
    if len(raw) < 24 or magic not in formats:
        raise ValueError(f"{name}: not a pcap file")
    rec, mult = formats[magic]
    link = (struct.unpack_from("<I" if rec is _REC_LE else ">I", raw, 20)[0]) & 0x0FFFFFFF
    if link not in _LINKS:
        raise ValueError(f"{name}: unsupported link type {link}")
    return rec, mult, link


def _pcap_rtp_rows(raw: bytes, name: str) -> dict[RawKey, Rows]:
    """RTP packets of a pcap grouped by stream: one tight loop over the raw file bytes."""
    rec, mult, link = _pcap_header(raw, name)
    et_off, l3_off = _LINKS[link]
    rec_unpack, ip4_unpack, udp_unpack = rec.unpack_from, _IP4.unpack_from, _UDP.unpack_from
    rtp_unpack = _RTP_REST.unpack_from
    claimed_src, claimed_dst = CLAIMED_SRC_PORTS, CLAIMED_DST_PORTS
    streams: dict[RawKey, Rows] = {}
    end = len(raw)
    off = 24
    sec0 = ns0 = -1
    while off + 16 <= end:
        sec, frac, caplen, _ = rec_unpack(raw, off)
        p = off + 16
        off = stop = p + caplen
        if stop > end:
            break  # cut short in the middle of a packet
        if sec0 < 0:
            sec0, ns0 = sec, frac * mult
        if et_off >= 0:
            if caplen < l3_off:
                continue
            et = raw[p + et_off] << 8 | raw[p + et_off + 1]
            q = p + l3_off
            while et in _VLAN and link == 1 and q + 4 <= stop:
                et = raw[q + 2] << 8 | raw[q + 3]
                q += 4
        else:
            q = p + l3_off
            if q >= stop:
                continue
            et = {4: 0x0800, 6: 0x86DD}.get(raw[q] >> 4, 0)
        if et == 0x0800:
            if q + 20 > stop:
                continue
            vihl, total, frag, proto, src, dst = ip4_unpack(raw, q)
            if proto != 17 or frag & 0x3FFF or vihl >> 4 != 4:
                continue  # not UDP, or a fragment (tshark would reassemble)
            ipend = min(q + total, stop)
            u = q + (vihl & 0x0F) * 4
        elif et == 0x86DD:
            found = _ip6_udp(raw, q, stop)
            if found is None:
                continue
            u, ipend, src, dst = found
        else:
            continue
        if u + 20 > ipend:
            continue
        sport, dport, ulen = udp_unpack(raw, u)
        if sport in claimed_src or dport in claimed_dst:
            continue
        pl = u + 8
        n = min(ulen - 8, ipend - pl)
        b0 = raw[pl]
        b1 = raw[pl + 1]
        if n < 12 or b0 & 0xC0 != 0x80:
            continue
        if b0 & 0x30 or 64 <= b1 & 0x7F <= 95 or n < 12 + 4 * (b0 & 0x0F):
            if not _accept(raw, n, b0, b1, pl):
                continue
        seq, ts, ssrc = rtp_unpack(raw, pl + 2)
        dsec = sec - sec0
        dns = frac * mult - ns0
        if dsec > 0 and dns < 0:
            dsec -= 1
            dns += 1_000_000_000
        elif dsec < 0 and dns > 0:
            dsec += 1
            dns -= 1_000_000_000
        key = (src, sport, dst, dport, ssrc)
        rows = streams.get(key)
        if rows is None:
            rows = streams[key] = []
        rows.append((dsec * 1000.0 + dns / 1000000, seq, ts, b1))
    return streams


def _ip6_udp(raw: bytes, q: int, stop: int) -> tuple[int, int, bytes, bytes] | None:
    """(UDP offset, end of IP payload, src, dst) of an unfragmented IPv6 UDP packet."""
    if q + 40 > stop or raw[q] >> 4 != 6:
        return None
    ipend = min(q + 40 + (raw[q + 4] << 8 | raw[q + 5]), stop)
    nxt, u = raw[q + 6], q + 40
    while nxt in (0, 43, 60, 44):  # hop-by-hop, routing, destination options, fragment
        if u + 8 > ipend:
            return None
        if nxt == 44:
            if (raw[u + 2] << 8 | raw[u + 3]) & 0xFFF9:
                return None  # offset or more-fragments set: a real fragment
            nxt, u = raw[u], u + 8
        else:
            nxt, u = raw[u], u + 8 + raw[u + 1] * 8
    if nxt != 17:
        return None
    return u, ipend, raw[q + 8:q + 24], raw[q + 24:q + 40]


def _addr(raw: bytes) -> str:
    if len(raw) == 4:
        return f"{raw[0]}.{raw[1]}.{raw[2]}.{raw[3]}"
    return str(ipaddress.IPv6Address(raw))


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def format_streams(streams: Iterable[RtpStream]) -> str:
    """A table like tshark's `-z rtp,streams` (streams in capture order; tshark lists the
    newest first)."""
    head = (f"{'Start':>10} {'End':>10} {'Source':>21} {'Destination':>21} {'SSRC':>10} "
            f"{'Payload':>8} {'Pkts':>6} {'Lost':>14} {'SeqErr':>6} "
            f"{'Min/Mean/Max Delta(ms)':>26} {'Min/Mean/Max Jitter(ms)':>24} Problems?")
    lines = [head]
    for s in streams:
        lost = f"{s.lost} ({s.loss_pct:.1f}%)"
        delta = f"{_ms(s.min_delta_ms)}/{s.mean_delta_ms:.3f}/{s.max_delta_ms:.3f}"
        jit = f"{_ms(s.min_jitter_ms)}/{s.mean_jitter_ms:.3f}/{s.max_jitter_ms:.3f}"
        lines.append(f"{s.start_s:10.6f} {s.end_s:10.6f} {s.src:>21} {s.dst:>21} "
                     f"0x{s.ssrc:08X} {s.payload_names():>8} {s.packets:6d} {lost:>14} "
                     f"{s.seq_errors:6d} {delta:>26} {jit:>24} {'X' if s.problem else ''}".rstrip())
    return "\n".join(lines)


def streams_json(streams: Iterable[RtpStream]) -> dict[str, Any]:
    return {"streams": [s.as_dict() for s in streams]}
