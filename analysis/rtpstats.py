"""Per-stream RTP statistics, computed the way Wireshark 4.0's RTP analysis tap does.

This is a re-statement, from reading the source, of `rtppacket_analyse()` in
`ui/tap-rtp-analysis.c` and of `rtpstream_info_calculate()` in `ui/tap-rtp-common.c`
(Wireshark 4.0.x, the tshark installed here). Quirks kept on purpose, because the point is
to print what `tshark -z rtp,streams` prints:

* times are milliseconds relative to the first frame of the capture, as doubles, computed as
  `secs * 1000 + nsecs / 1e6` (`nstime_to_msec`);
* a packet is "in time sequence" when its RTP timestamp is less than 2^31 ticks after *the
  first packet's* timestamp, modulo 2^32 (so a packet that is late but newer than the first
  one still counts, while a backwards jump below the first timestamp flags every later
  packet as a wrong timestamp);
* only in-sequence packets update the arrival time and delta; jitter is RFC 3550's
  J += (|D| - J) / 16 with D measured against the previous in-sequence packet, and the
  clock rate is divided by 1000 in *integer* arithmetic (44100 Hz counts as 44 ticks/ms);
* min/max/mean delta and jitter skip the first packet and packets that carry the marker bit,
  are comfort noise (PT 13/19) or follow comfort noise, or have a wrong timestamp;
* the "mean" is a running mean whose divisor is the number of packets so far minus one,
  whether or not the skipped packets contributed (so skipped packets pull it towards 0);
* "mean jitter" is that running mean of the smoothed jitter values;
* static payload types take their clock from IANA's table; dynamic ones (96-127) take it
  from the a=rtpmap line of the SDP that set up the packet's conversation; without one
  tshark has no clock and computes no jitter (min jitter stays -1); telephone-event never
  gets jitter;
* expected = last seq - first seq + 1 + 65536 * wraps, where the *last* packet is the last
  one received, and lost = expected - received (negative with duplicates), both as C's
  uint32/int32.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# per-packet flags (names as in Wireshark's tap-rtp-analysis.h; values are ours)
FIRST = 0x1
MARKER = 0x2
WRONG_SEQ = 0x4
PT_CHANGE = 0x8
PT_CN = 0x10
FOLLOW_PT_CN = 0x20
WRONG_TIMESTAMP = 0x80
PT_T_EVENT = 0x100

CN_TYPES = (13, 19)

# IANA static payload types -> sampling clock (Hz), Wireshark's clock_map
STATIC_CLOCK: dict[int, int] = {
    0: 8000, 1: 8000, 2: 8000, 3: 8000, 4: 8000, 5: 8000, 6: 16000, 7: 8000, 8: 8000,
    9: 8000, 10: 44100, 11: 44100, 12: 8000, 13: 8000, 14: 90000, 15: 8000, 16: 11025,
    17: 22050, 18: 8000, 19: 8000, 25: 90000, 26: 90000, 28: 90000, 31: 90000, 32: 90000,
    33: 90000, 34: 90000,
}

# encoding names of dynamic payload types -> clock (mimetype_and_clock_map), prefix match
DYNAMIC_CLOCK: tuple[tuple[str, int], ...] = (
    ("AMR", 8000), ("AMR-WB", 16000), ("BMPEG", 90000), ("BT656", 90000), ("DV", 90000),
    ("EVRC", 8000), ("EVRC0", 8000), ("EVRC1", 8000), ("EVRCB", 8000), ("EVRCB0", 8000),
    ("EVRCB1", 8000), ("EVRCWB", 16000), ("EVRCWB0", 16000), ("EVRCWB1", 16000),
    ("EVS", 16000), ("G7221", 16000), ("G726-16", 8000), ("G726-24", 8000),
    ("G726-32", 8000), ("G726-40", 8000), ("G729D", 8000), ("G729E", 8000),
    ("GSM-EFR", 8000), ("H263-1998", 90000), ("H263-2000", 90000), ("H264", 90000),
    ("MP1S", 90000), ("MP2P", 90000), ("MP4V-ES", 90000), ("mpa-robust", 90000),
    ("opus", 48000), ("pointer", 90000), ("raw", 90000), ("red", 1000), ("SMV", 8000),
    ("SMV0", 8000), ("t140", 1000), ("telephone-event", 8000),
)

# dynamic payload types tshark 4.0 names by default (rtp.pt dissector table, no SDP)
DEFAULT_DYNAMIC_NAMES: dict[int, str] = {99: "rtp.rfc2198", 100: "rtpevent", 101: "rtpevent"}

DynamicPayloads = Mapping[int, tuple[str, int]]  # pt -> (encoding name, rate; 0 = unknown)

RTP_SHORT_NAMES: dict[int, str] = {
    0: "g711U", 1: "fs-1016", 2: "g721", 3: "GSM", 4: "g723", 5: "DVI4 8k", 6: "DVI4 16k",
    7: "Exp. from Xerox PARC", 8: "g711A", 9: "g722", 10: "16-bit audio, stereo",
    11: "16-bit audio, monaural", 12: "Qualcomm", 13: "CN", 14: "MPEG-I/II Audio", 15: "g728",
    16: "DVI4 11k", 17: "DVI4 22k", 18: "g729", 19: "CN(old)", 25: "CellB", 26: "JPEG",
    28: "NV", 31: "h261", 32: "MPEG-I/II Video", 33: "MPEG-II streams", 34: "h263",
}


def payload_name(pt: int, dynamic: DynamicPayloads | None = None) -> str:
    """The short payload name tshark's stream table shows."""
    if pt >= 96:
        if dynamic is not None and pt in dynamic:
            return dynamic[pt][0]
        return DEFAULT_DYNAMIC_NAMES.get(pt, f"RTPType-{pt}")
    if 72 <= pt <= 76:
        return "Reserved for RTCP conflict avoidance"
    return RTP_SHORT_NAMES.get(pt, "Unassigned")


def clock_rate(pt: int, dynamic: DynamicPayloads | None = None) -> tuple[int, bool]:
    """(clock in Hz or 0 when tshark cannot know it, is-telephone-event) for a payload type."""
    if pt < 96:
        return STATIC_CLOCK.get(pt, 0), False
    if dynamic is None or pt not in dynamic:
        name, rate = DEFAULT_DYNAMIC_NAMES.get(pt, ""), 0
        if not name:
            return 0, False
    else:
        name, rate = dynamic[pt]
    if name.lower().startswith("telephone-event"):
        return 0, True
    if rate:
        return rate, False
    low = name.lower()
    for mime, clock in reversed(DYNAMIC_CLOCK):
        if low.startswith(mime.lower()):
            return clock, False
    return 0, False


@dataclass
class StreamStats:
    """What tshark's RTP tap knows about one stream once every packet has been seen."""

    packets: int = 0
    start_seq: int = 0
    stop_seq: int = 0
    cycles: int = 0
    seq_errors: int = 0
    problem: bool = False
    min_delta: float = -1.0
    mean_delta: float = 0.0
    max_delta: float = 0.0
    min_jitter: float = -1.0
    mean_jitter: float = 0.0
    max_jitter: float = 0.0
    # per packet, in arrival order
    delta_ms: list[float] = field(default_factory=list)
    jitter_ms: list[float] = field(default_factory=list)
    flags: list[int] = field(default_factory=list)

    @property
    def expected(self) -> int:
        """Sequence span, C uint32 arithmetic (huge if the last packet is older than the first)."""
        return (self.stop_seq + self.cycles * 65536 - self.start_seq + 1) & 0xFFFFFFFF

    @property
    def lost(self) -> int:
        """expected - received as C int32 (negative with duplicates)."""
        v = (self.expected - self.packets) & 0xFFFFFFFF
        return v - (1 << 32) if v & 0x80000000 else v

    @property
    def lost_pct(self) -> float:
        if not self.expected:
            return 0.0
        v = (self.lost * 100) & 0xFFFFFFFF  # int32 multiply in C
        return (v - (1 << 32) if v & 0x80000000 else v) / self.expected


def analyse(times_ms: Sequence[float], seqs: Sequence[int], stamps: Sequence[int],
            pts: Sequence[int], markers: Sequence[bool],
            dynamic: DynamicPayloads | None = None,
            dynamics: Sequence[DynamicPayloads | None] | None = None) -> StreamStats:
    """Run rtppacket_analyse over one stream's packets (arrival order). Dynamic payload
    types are named and clocked by `dynamic`, or per packet by `dynamics` (the payload map
    of the SDP conversation each packet belonged to)."""
    st = StreamStats()
    n = len(times_ms)
    if n == 0:
        return st
    delta_out = st.delta_ms
    jitter_out = st.jitter_ms
    flags_out = st.flags
    clocks: dict[int, tuple[int, bool]] = {}  # pt -> clock, with one map for the stream
    map_clocks: dict[tuple[int, int], tuple[int, bool]] = {}  # (pt, id(map)) -> clock

    # first packet
    t0 = times_ms[0]
    start_seq = seq_num = stop_seq = seqs[0]
    first_ts = stamps[0]
    last_time = t0
    last_nominal = 0.0
    cur_pt = pts[0]
    delta = 0.0
    jitter = 0.0
    max_delta = 0.0
    min_delta = -1.0
    mean_delta = 0.0
    min_jitter = -1.0
    max_jitter = 0.0
    mean_jitter = 0.0
    cycles = 0
    under = False
    sequence = 0
    problem = False
    total = 1
    delta_out.append(0.0)
    jitter_out.append(0.0)
    flags_out.append(FIRST | (MARKER if markers[0] else 0))

    for i in range(1, n):
        now = times_ms[i]
        seq = seqs[i]
        ts = stamps[i]
        pt = pts[i]
        flags = 0
        span = ts - first_ts
        in_seq = 0 <= span < 0x80000000 or (span < 0 and 0xFFFFFFFF + span < 0x80000000)
        if not in_seq:
            flags = WRONG_TIMESTAMP
        if in_seq:
            if seq < start_seq and not under:
                cycles += 1
                under = True
            elif seq == 0 and stop_seq == 65535 and not under:
                cycles += 1
                under = True
            elif seq > start_seq and under:
                under = False
        if in_seq and (seq_num + 1 == seq or (seq_num == 65535 and seq == 0)):
            seq_num = seq
        elif in_seq and (seq_num + 1 < seq or seq_num - seq > 0xFF00):
            seq_num = seq
            sequence += 1
            flags |= WRONG_SEQ
        elif seq_num + 1 > seq:
            sequence += 1
            flags |= WRONG_SEQ
        if pt in CN_TYPES:
            flags |= PT_CN
        if cur_pt in CN_TYPES:
            flags |= FOLLOW_PT_CN
        if pt != cur_pt:
            flags |= PT_CHANGE
        cur_pt = pt
        if dynamics is None:
            ct = clocks.get(pt)
            if ct is None:
                ct = clocks[pt] = clock_rate(pt, dynamic)
        else:
            dyn = dynamics[i]
            ck = (pt, id(dyn))
            ct = map_clocks.get(ck)
            if ct is None:
                ct = map_clocks[ck] = clock_rate(pt, dyn)
        clock, t_event = ct
        if t_event:
            flags |= PT_T_EVENT
        current_jitter = 0.0
        if in_seq:
            if clock:
                nominal = float(span & 0xFFFFFFFF) / (clock // 1000)
                expected_time = last_time + (nominal - last_nominal)
                current_diff = abs(now - expected_time)
                jitter = current_jitter = (15 * jitter + current_diff) / 16
                delta = now - last_time
                last_nominal = nominal
            else:
                delta = now - last_time
        if markers[i]:
            flags |= MARKER
        if not flags & (MARKER | PT_CN | WRONG_TIMESTAMP | FOLLOW_PT_CN):
            if delta > max_delta:
                max_delta = delta
            if min_delta == -1 or delta < min_delta:
                min_delta = delta
            mean_delta = (mean_delta * (total - 1) + delta) / total
            if clock:
                if jitter > max_jitter:
                    max_jitter = jitter
                mean_jitter = (mean_jitter * (total - 1) + current_jitter) / total
                if min_jitter == -1 or jitter < min_jitter:
                    min_jitter = jitter
        if in_seq:
            last_time = now
        stop_seq = seq
        total += 1
        if flags & (WRONG_TIMESTAMP | WRONG_SEQ):
            problem = True
        delta_out.append(delta)
        jitter_out.append(jitter)
        flags_out.append(flags)

    st.packets = total
    st.start_seq, st.stop_seq, st.cycles = start_seq, stop_seq, cycles
    st.seq_errors, st.problem = sequence, problem
    st.min_delta, st.mean_delta, st.max_delta = min_delta, mean_delta, max_delta
    st.min_jitter, st.mean_jitter, st.max_jitter = min_jitter, mean_jitter, max_jitter
    return st
