"""RTP streams of a capture, with the figures `tshark -z rtp,streams` prints.

Pure functions over `analysis.pcap.Udp` records (the one pcap reader). A packet is RTP when
it belongs to a conversation an SDP earlier in the capture announced (as Wireshark's SDP
dissector sets them up; the SDP's a=rtpmap lines name dynamic payload types and give their
clock rate), or, by default, when Wireshark 4.0's `rtp_udp` heuristic takes it
(`rtp_header`; tshark's `--enable-heuristic rtp_udp`). Packets are grouped the way its RTP
tap groups them (source and destination address and port, plus SSRC; a payload type change
stays in the stream, an SSRC change starts a new one), and the statistics are those of
`analysis.rtpstats` (Wireshark's `rtppacket_analyse`). `natlab analyze` and the QoS table
(`analysis.qos`) both use `rtp_streams`.

UDP ports whose own dissector takes the packet first are skipped by the heuristic (a table
measured on tshark 4.0.17); an SDP conversation wins over them. Not modelled: other
heuristics that could claim a version-2 packet first, conversations set up by anything but
SDP in SIP (e.g. H.245, RTSP), SDP bodies Wireshark would not see (SIP over TCP).
"""
from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis import rtpstats
from analysis.packets import parse_sip
from analysis.pcap import SIP_METHODS, Udp, read_pcap
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
    epoch_s: list[float] = field(default_factory=list)  # arrival, epoch seconds


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

StreamKey = tuple[str, int, str, int, int]  # src, sport, dst, dport, ssrc
# per packet: (ns since the first frame, seq, timestamp, second header byte, payload map of
# the SDP conversation it belongs to or None, epoch seconds)
Row = tuple[int, int, int, int, DynamicPayloads | None, float]
_RTCP = "rtcp"  # an SDP-announced RTCP port: its conversation is not RTP


def _build(key: StreamKey, rows: list[Row]) -> RtpStream:
    rels, seqs, stamps, b1s, maps, epochs = (list(c) for c in zip(*rows, strict=True))
    # ms as tshark computes them from (secs, nsecs): nstime_to_msec
    times = [s * 1000.0 + ns / 1000000 for s, ns in (divmod(r, 1_000_000_000) for r in rels)]
    pts = [b & 0x7F for b in b1s]
    markers = [bool(b & 0x80) for b in b1s]
    dyn = None if maps.count(None) == len(maps) else maps
    st: StreamStats = rtpstats.analyse(times, seqs, stamps, pts, markers, dynamics=dyn)
    src, sport, dst, dport, ssrc = key
    names: dict[int, str] = {}
    if dyn is None:
        names = {pt: payload_name(pt) for pt in sorted(set(pts))}
    else:
        for pt, m in zip(pts, maps, strict=True):
            if pt not in names:
                names[pt] = payload_name(pt, m)
    series = RtpSeries([t / 1000.0 for t in times], seqs, stamps, pts, markers,
                       st.delta_ms, st.jitter_ms, st.flags, names, epochs)
    return RtpStream(
        ssrc=ssrc, src=f"{src}:{sport}", dst=f"{dst}:{dport}", payload_type=pts[0],
        packets=st.packets, expected=st.expected, lost=st.lost, loss_pct=st.lost_pct,
        seq_errors=st.seq_errors,
        min_delta_ms=None if st.min_delta == -1 else st.min_delta,
        mean_delta_ms=st.mean_delta, max_delta_ms=st.max_delta,
        min_jitter_ms=None if st.min_jitter == -1 else st.min_jitter,
        mean_jitter_ms=st.mean_jitter, max_jitter_ms=st.max_jitter, series=series)


def _sdp_conversations(pkt: Udp, convs: dict[tuple[str, int], DynamicPayloads | str]) -> None:
    """Add the RTP (and RTCP) conversations an SDP in this SIP message announces, as
    Wireshark's SDP dissector sets them up: one per m= address and port, with that m= line's
    a=rtpmap payload types; a later SDP for the same address and port replaces it."""
    msg = parse_sip(pkt)
    sdp = msg.sdp
    if sdp is None:
        return
    for m in sdp.media:
        if not m.is_rtp or not m.port or m.addr is None:
            continue
        addr = _norm(m.addr)
        convs[(addr, m.port)] = {pt: (r.name, r.clock) for pt, r in m.rtpmap.items()}
        rtcp = m.rtcp if m.rtcp is not None else m.port + 1
        if rtcp != m.port:
            convs[(_norm(m.rtcp_addr) if m.rtcp_addr else addr, rtcp)] = _RTCP


def _norm(addr: str) -> str:
    """An SDP address as the reader prints it (IPv6 compressed)."""
    if ":" in addr:
        try:
            return str(ipaddress.IPv6Address(addr))
        except ValueError:
            return addr
    return addr


def rtp_streams(packets: Iterable[Udp], heuristic: bool = True) -> list[RtpStream]:
    """RTP streams among a capture's UDP datagrams (capture order, the whole capture: SIP/SDP
    early in it sets up conversations), in the order their first packet appears.

    A packet is RTP if it belongs to an SDP-announced conversation (its destination address
    and port, else its source, was an m= line's; that SDP's a=rtpmap lines name its dynamic
    payload types and give their clock), or else, with `heuristic` (tshark's
    `--enable-heuristic rtp_udp`), if the rtp_udp heuristic takes it and no other dissector
    owns its ports.
    """
    streams: dict[StreamKey, list[Row]] = {}
    convs: dict[tuple[str, int], DynamicPayloads | str] = {}
    claimed_src, claimed_dst = CLAIMED_SRC_PORTS, CLAIMED_DST_PORTS
    unpack = _RTP_REST.unpack_from
    for u in packets:
        _, epoch, src, sport, dst, dport, p, rel = u
        n = len(p)
        if n < 12:
            continue
        b0 = p[0]
        b1 = p[1]
        if b0 & 0xC0 != 0x80:
            if 0x41 <= b0 <= 0x5A and b"\r\n\r\n" in p and _is_sip(p):
                _sdp_conversations(u, convs)
            continue
        dyn: DynamicPayloads | str | None = None
        if convs:
            dyn = convs.get((dst, dport))
            if dyn is None:
                dyn = convs.get((src, sport))
        if dyn is None:
            if not heuristic or sport in claimed_src or dport in claimed_dst:
                continue
            if b0 & 0x30 or 64 <= b1 & 0x7F <= 95 or n < 12 + 4 * (b0 & 0x0F):
                if not _accept(p, n, b0, b1):
                    continue
        elif dyn is _RTCP or (b1 & 0x80 and 64 <= b1 & 0x7F <= 95) or n < 12 + 4 * (b0 & 0x0F):
            continue  # RTCP's conversation, or RTCP multiplexed on the RTP port (RFC 5761)
        seq, ts, ssrc = unpack(p, 2)
        key = (src, sport, dst, dport, ssrc)
        rows = streams.get(key)
        if rows is None:
            rows = streams[key] = []
        rows.append((rel, seq, ts, b1, dyn, epoch))  # type: ignore[arg-type]  # not _RTCP
    return [_build(k, v) for k, v in streams.items()]


def _is_sip(p: bytes) -> bool:
    return p.startswith(b"SIP/2.0 ") or p.split(b" ", 1)[0].decode(errors="replace") in SIP_METHODS


def analyze_pcap(path: Path, heuristic: bool = True) -> list[RtpStream]:
    """Streams of a pcap file (`tshark -q [--enable-heuristic rtp_udp] -z rtp,streams`);
    raises PcapError (a ValueError) with one line on a file it cannot read."""
    return rtp_streams(read_pcap(Path(path)).udp, heuristic)


_RTP_REST = struct.Struct("!HII")  # seq, timestamp, ssrc


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
