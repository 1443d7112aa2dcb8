"""QoS of a call, per direction: the paper's columns, true one-way delay, jitter, loss, R, MOS.

The paper (Table 4.1) took Wireshark's RTP stream analysis at the receiver: Total Paket,
Total delay (the sum of inter-arrival deltas), Paket Loss, "Delay" = Total delay / packets
(so really the mean packet spacing, ~20 ms = ptime) and Jitter (mean RFC 3550 jitter). We
compute the same from the receiving phone's capture, with the code `natlab analyze` uses
(`analysis.rtp.rtp_streams`): every row's packets, lost and mean/max jitter are those
`tshark -q --enable-heuristic rtp_udp -z rtp,streams` prints for that stream of the
receiver's capture. We add what "delay" should have meant:
the one-way network delay of every packet, by matching (SSRC, sequence) between the sender's
and the receiver's capture (all namespaces share one clock).
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from analysis.emodel import (
    burst_ratio,
    compute,
    from_measurement,
    jitter_buffer_loss,
    paper_formula,
)
from analysis.pcap import Udp
from analysis.rtp import RtpStream, rtp_streams

JITTER_BUFFER_MS = 40.0  # fixed buffer (2 packets of 20 ms) for the G.107 late-loss model
CODEC = "g711"


@dataclass
class Direction:
    """One RTP direction of a call, as the receiver saw it."""
    call: str
    sender: str  # extension
    receiver: str
    packets: int
    lost: int
    loss_pct: float
    total_delay_s: float  # paper: sum of inter-arrival deltas
    paper_delay_ms: float  # paper: total delay / packets (mean spacing)
    mean_jitter_ms: float
    max_jitter_ms: float
    owd_min_ms: float | None
    owd_mean_ms: float | None
    owd_max_ms: float | None
    late_pct: float  # beyond the fixed jitter buffer
    burst_ratio: float
    r_g107: float | None  # G.107 is a speech model: None for video
    mos_g107: float | None
    r_paper: float
    mos_paper: float
    media: str = "audio"
    src: str = ""  # the tshark stream of the receiver's capture: "addr:port"
    dst: str = ""
    ssrc: int = 0
    series: dict[str, list[float]] = field(default_factory=dict, repr=False)

    def row(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("series")
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


AUDIO_PTS = (0, 8)  # PCMU, PCMA: the audio streams of the QoS table


def _ip(hostport: str) -> str:
    return hostport.rsplit(":", 1)[0]


def _media(streams: list[RtpStream], video_pt: int | None) -> list[RtpStream]:
    """Streams whose first packet is of the wanted media (video_pt, else PCMU/PCMA)."""
    pts = (video_pt,) if video_pt is not None else AUDIO_PTS
    return [s for s in streams if s.payload_type in pts]


def one_way_delays(sent: list[RtpStream], received: RtpStream) -> list[float]:
    """Per received packet, arrival minus departure (ms), matched on (SSRC, seq)."""
    departure: dict[tuple[int, int], float] = {}
    for s in sent:
        for seq, t in zip(s.series.seq, s.series.epoch_s, strict=True):
            departure.setdefault((s.ssrc, seq), t)
    out = []
    for seq, t in zip(received.series.seq, received.series.epoch_s, strict=True):
        t0 = departure.get((received.ssrc, seq))
        if t0 is not None:
            out.append((t - t0) * 1000.0)
    return out


def _lost_flags(stats_seqs: list[int]) -> list[bool]:
    """Loss pattern over the sequence span (True = lost), for the burst ratio."""
    if not stats_seqs:
        return []
    ext, last, cycles = [], stats_seqs[0], 0
    for s in stats_seqs:
        if s < last and last - s > 30000:
            cycles += 1
        last = s
        ext.append(s + cycles * 65536)
    got = set(ext)
    return [n not in got for n in range(min(ext), max(ext) + 1)]


def direction(call: str, sender: str, receiver: str, sent_streams: list[RtpStream],
              recv_streams: list[RtpStream], sender_ip: str, receiver_ip: str,
              video_pt: int | None = None, ssrc_from: str = "sender") -> Direction | None:
    """One direction, from the RTP streams (`analysis.rtp.rtp_streams`) of the sender's and
    the receiver's capture. The row is one tshark stream of the receiver's capture: its SSRC
    is the first one the sender sent (ssrc_from="sender") or the first one the receiver got
    ("receiver": for a sender with many streams, e.g. a bridge); of several streams with that
    SSRC (other ports), the one with most packets."""
    recv_all = [s for s in _media(recv_streams, video_pt) if _ip(s.dst) == receiver_ip]
    sent_all = [s for s in _media(sent_streams, video_pt) if _ip(s.src) == sender_ip]
    if not recv_all:
        return None
    ssrc = sent_all[0].ssrc if ssrc_from == "sender" and sent_all else recv_all[0].ssrc
    cands = [s for s in recv_all if s.ssrc == ssrc]
    if not cands:
        return None
    st = max(cands, key=lambda s: s.packets)
    owd = one_way_delays([s for s in sent_all if s.ssrc == ssrc], st)
    loss = max(0.0, st.loss_pct)
    late = jitter_buffer_loss(owd, JITTER_BUFFER_MS) if owd else 0.0
    flags = _lost_flags(st.series.seq)
    br = burst_ratio(flags) if any(flags) and not all(flags) else 1.0
    owd_mean = statistics.fmean(owd) if owd else 0.0
    g107 = None if video_pt is not None else compute(from_measurement(
        CODEC, owd_mean, loss, burst_ratio=br, jitter_buffer_ms=JITTER_BUFFER_MS,
        late_loss_pct=late))
    total_delay_s = sum(st.series.delta_ms[1:]) / 1000.0
    paper_delay = total_delay_s * 1000.0 / st.packets
    # the paper's own formula with its d (mean spacing); its video R used Ie = 10
    paper = paper_formula(paper_delay, loss / 100.0, 10.0 if video_pt is not None else 0.0)
    t0 = st.series.time_s[0]
    return Direction(
        call=call, sender=sender, receiver=receiver, packets=st.packets, lost=st.lost,
        loss_pct=loss, total_delay_s=total_delay_s, paper_delay_ms=paper_delay,
        mean_jitter_ms=st.mean_jitter_ms, max_jitter_ms=st.max_jitter_ms,
        owd_min_ms=min(owd) if owd else None, owd_mean_ms=owd_mean if owd else None,
        owd_max_ms=max(owd) if owd else None, late_pct=late, burst_ratio=br,
        r_g107=g107.R if g107 else None, mos_g107=g107.MOS if g107 else None,
        r_paper=paper.R, mos_paper=paper.MOS, media="video" if video_pt is not None else "audio",
        src=st.src, dst=st.dst, ssrc=st.ssrc,
        series={"t_s": [t - t0 for t in st.series.time_s], "jitter_ms": st.series.jitter_ms,
                "delta_ms": st.series.delta_ms, "owd_ms": owd})


def call_qos(call: str, caller: str, callee: str, caller_ip: str, callee_ip: str,
             caller_pkts: list[Udp], callee_pkts: list[Udp],
             video_pt: int | None = None) -> list[Direction]:
    """Both directions of one call from the two phones' captures (`read_udp` of p<ext>.pcap,
    each read once by the caller)."""
    a, b = rtp_streams(caller_pkts), rtp_streams(callee_pkts)
    out = []
    legs = ((caller, callee, a, b, caller_ip, callee_ip),
            (callee, caller, b, a, callee_ip, caller_ip))
    for pt in (None,) if video_pt is None else (None, video_pt):
        for snd, rcv, s_st, r_st, s_ip, r_ip in legs:
            d = direction(call, snd, rcv, s_st, r_st, s_ip, r_ip, pt)
            if d is not None:
                out.append(d)
    return out


def conference_qos(participant: str, participant_ip: str, bridge_ip: str,
                   phone_pkts: list[Udp], bridge_pkts: list[Udp]) -> list[Direction]:
    """A participant's two directions with the bridge (captured on its PBX's interface)."""
    phone, bridge = rtp_streams(phone_pkts), rtp_streams(bridge_pkts)
    legs = [direction(participant, participant, "bridge", phone, bridge, participant_ip,
                      bridge_ip, ssrc_from="sender"),
            direction(participant, "bridge", participant, bridge, phone, bridge_ip,
                      participant_ip, ssrc_from="receiver")]
    return [d for d in legs if d is not None]


def averages(rows: list[Direction]) -> dict[str, Any]:
    keys = ["packets", "lost", "loss_pct", "total_delay_s", "paper_delay_ms", "mean_jitter_ms",
            "max_jitter_ms", "owd_min_ms", "owd_mean_ms", "owd_max_ms", "late_pct",
            "r_g107", "mos_g107", "r_paper", "mos_paper"]
    out: dict[str, Any] = {"call": "average", "sender": "", "receiver": "",
                           "media": rows[0].media if rows else "audio"}
    for k in keys:
        vals = [getattr(r, k) for r in rows if getattr(r, k) is not None]
        out[k] = round(statistics.fmean(vals), 4) if vals else None
    return out
