"""A load step's table row, from its folder: calls, RTP loss and jitter, MOS, CPU, conntrack.

Pure: reads what the step wrote (step.json, SIPp's -trace_stat / -trace_counts / -trace_rtt
CSV files under sipp/uac and sipp/uas, the SIPp hosts' and phones' captures) and returns
numbers. Calls: attempted (the UAC's TotalCallCreated), established (200 OK to INVITE
received), completed (SuccessfulCall: the BYE got its 200). Media: every RTP stream that
reached a SIPp host is one direction of one call (its own ports), analysed with the code
`natlab analyze` uses (analysis.rtp: loss and RFC 3550 jitter as tshark computes them); the
one-way delay matches each packet with the sender's capture on (ports, sequence); G.107 MOS
per direction as in the QoS table. A direction of an established call with no stream counts as
100 % loss. The pjsua2 phones' directions come from analysis.qos (their own captures).
The step passes with 100 % of calls completed, 0 % loss on every direction and MOS p5 >= 4.3;
the knee is the largest N of a passing clean-WAN step.
"""
from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from analysis.emodel import compute, from_measurement
from analysis.pcap import Udp, read_udp
from analysis.qos import AUDIO_PTS, CODEC, JITTER_BUFFER_MS, call_qos, one_way_delays
from analysis.rtp import RtpStream, rtp_streams
from analysis.verdict import Subject, Verdict

STEP_FILE = "step.json"
GATE_FILE = "gate.json"
MOS_P5_MIN = 4.3
UAC, UAS = "uac", "uas"


@dataclass
class StreamQ:
    """One direction of one call as its receiver saw it."""
    sender: str  # "uac" / "uas" / an extension
    src: str
    dst: str
    packets: int
    loss_pct: float
    jitter_ms: float  # RFC 3550, mean over the stream (tshark's "Mean Jitter")
    max_jitter_ms: float
    owd_ms: float | None
    mos: float


@dataclass
class StepResult:
    name: str
    calls: int | None
    wan: str
    skipped: str | None = None
    capped: str | None = None  # the knee step ran fewer calls: the WAN shaper's ceiling
    attempted: int = 0
    established: int = 0
    completed: int = 0
    setup_ms: dict[str, float | None] = field(default_factory=dict)  # median, p95
    directions: int = 0  # RTP directions measured (2 per call + phones)
    missing: int = 0  # directions of established calls with no RTP at all
    capture_drops: dict[str, int] = field(default_factory=dict)  # tcpdump: dropped by kernel
    rtp_received: dict[str, int] = field(default_factory=lambda: {"caller": 0, "callee": 0})
    loss_pct: dict[str, float | None] = field(default_factory=dict)  # median, p95, max
    jitter_ms: dict[str, float | None] = field(default_factory=dict)
    mos: dict[str, float | None] = field(default_factory=dict)  # p5, min, phones_min
    cpu_s: dict[str, float] = field(default_factory=dict)
    peak_pct: dict[str, float] = field(default_factory=dict)
    host: dict[str, float] = field(default_factory=dict)
    conntrack: dict[str, Any] = field(default_factory=dict)
    wall_s: float | None = None
    passed: bool = False
    reasons: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return asdict(self)


def quantile(values: list[float], q: float) -> float | None:
    """The q-quantile by linear interpolation (numpy's default); None for no values."""
    if not values:
        return None
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return round(v[lo] + (v[hi] - v[lo]) * (pos - lo), 4)


def spread(values: list[float]) -> dict[str, float | None]:
    return {"median": quantile(values, 0.5), "p95": quantile(values, 0.95),
            "max": round(max(values), 4) if values else None}


def read_stat(path: Path) -> dict[str, str]:
    """The last row of SIPp's -trace_stat CSV (';'-separated, cumulative counters)."""
    rows = [r for r in csv.reader(path.read_text().splitlines(), delimiter=";") if r]
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))


def read_counts(path: Path) -> dict[str, str]:
    """The last row of SIPp's -trace_counts CSV (per scenario message: sent, received...)."""
    return read_stat(path)


def read_rtt(path: Path) -> list[float]:
    """Response times (ms) of SIPp's -trace_rtt CSV."""
    out = []
    for row in csv.reader(path.read_text().splitlines()[1:], delimiter=";"):
        if len(row) >= 2 and row[1]:
            out.append(float(row[1]))
    return out


def capture_drops(log: Path) -> int:
    """'N packets dropped by kernel' of a tcpdump log (0 if absent)."""
    if not log.exists():
        return 0
    for line in log.read_text(errors="replace").splitlines():
        if line.endswith("packets dropped by kernel"):
            return int(line.split()[0])
    return 0


def _one(folder: Path, pattern: str) -> Path | None:
    found = sorted(folder.glob(pattern))
    return found[-1] if found else None


def established_calls(counts: dict[str, str]) -> int:
    """200 OKs to the INVITE the UAC received: the counts column of its 200 response."""
    cols = [k for k in counts if k.endswith("_200_Recv")]
    return int(counts[cols[0]]) if cols else 0


def _int(stat: dict[str, str], key: str) -> int:
    try:
        return int(stat.get(key, "0") or 0)
    except ValueError:
        return 0


def _port(hostport: str) -> int:
    return int(hostport.rsplit(":", 1)[1])


def sipp_directions(sender: str, sent_pkts: list[Udp], recv_pkts: list[Udp],
                    sender_ip: str, receiver_ip: str) -> list[StreamQ]:
    """Every RTP stream that reached receiver_ip, matched to the sender's own stream by ports
    (the NATs preserve them: the STUN step checked it)."""
    sent = {(_port(s.src), _port(s.dst)): s for s in rtp_streams(sent_pkts)
            if s.src.rsplit(":", 1)[0] == sender_ip and s.payload_type in AUDIO_PTS}
    out = []
    for st in rtp_streams(recv_pkts):
        if st.dst.rsplit(":", 1)[0] != receiver_ip or st.payload_type not in AUDIO_PTS:
            continue
        mine = sent.get((_port(st.src), _port(st.dst)))
        out.append(_quality(sender, st, one_way_delays([mine], st) if mine else []))
    return out


def _quality(sender: str, st: RtpStream, owd: list[float]) -> StreamQ:
    loss = max(0.0, st.loss_pct)
    mean_owd = statistics.fmean(owd) if owd else 0.0
    r = compute(from_measurement(CODEC, mean_owd, loss, jitter_buffer_ms=JITTER_BUFFER_MS))
    return StreamQ(sender, st.src, st.dst, st.packets, round(loss, 4),
                   round(st.mean_jitter_ms, 4), round(st.max_jitter_ms, 4),
                   round(mean_owd, 4) if owd else None, round(r.MOS, 4))


Packets = Callable[[str], list[Udp]]


def _reader(folder: Path) -> Packets:
    cache: dict[str, list[Udp]] = {}

    def packets(name: str) -> list[Udp]:
        if name not in cache:
            path = folder / f"{name}.pcap"
            cache[name] = read_udp(path) if path.exists() else []
        return cache[name]
    return packets


def analyse_step(folder: Path, packets: Packets | None = None) -> StepResult:
    """The step's row. `packets(name)` gives a capture's datagrams (default: read
    <folder>/<name>.pcap once)."""
    step = json.loads((folder / STEP_FILE).read_text())
    res = StepResult(folder.name, step.get("calls"), str(step.get("wan", "clean")),
                     step.get("skipped"), step.get("capped"))
    if res.skipped or res.calls is None:
        return res
    packets = packets or _reader(folder)
    sipp = step.get("sipp", {})
    uac_dir = folder / "sipp" / UAC
    stat = read_stat(uac_dir / "stat.csv") if (uac_dir / "stat.csv").exists() else {}
    counts_file = _one(uac_dir, "*_counts.csv")
    rtt_file = _one(uac_dir, "*_rtt.csv")
    res.attempted = _int(stat, "TotalCallCreated")
    res.completed = _int(stat, "SuccessfulCall(C)")
    res.established = established_calls(read_counts(counts_file)) if counts_file else 0
    setup = read_rtt(rtt_file) if rtt_file else []
    res.setup_ms = {"median": quantile(setup, 0.5), "p95": quantile(setup, 0.95)}
    streams: list[StreamQ] = []
    if UAC in sipp and UAS in sipp:
        a, b = sipp[UAC], sipp[UAS]
        pa, pb = packets(f"p{a['ext']}"), packets(f"p{b['ext']}")
        for sender, s_pkts, r_pkts, s_ip, r_ip in ((UAC, pa, pb, a["ip"], b["ip"]),
                                                   (UAS, pb, pa, b["ip"], a["ip"])):
            got = sipp_directions(sender, s_pkts, r_pkts, s_ip, r_ip)
            res.missing += max(0, res.established - len(got))
            streams += got
    phone_mos = []
    for ph in step.get("phones", []):
        for d in call_qos(f"{ph['caller']}-{ph['callee']}", ph["caller"], ph["callee"],
                          ph["caller_ip"], ph["callee_ip"], packets(f"p{ph['caller']}"),
                          packets(f"p{ph['callee']}")):
            streams.append(StreamQ(d.sender, d.src, d.dst, d.packets, round(d.loss_pct, 4),
                                   round(d.mean_jitter_ms, 4), round(d.max_jitter_ms, 4),
                                   d.owd_mean_ms, round(d.mos_g107 or 0.0, 4)))
            phone_mos.append(d.mos_g107 or 0.0)
        res.missing += max(0, 2 - sum(s.sender in (ph["caller"], ph["callee"]) for s in streams))
    losses = [s.loss_pct for s in streams] + [100.0] * res.missing
    moss = [s.mos for s in streams] + [1.0] * res.missing
    res.directions = len(streams)
    res.rtp_received = {"caller": sum(s.packets for s in streams if s.sender == UAS),
                        "callee": sum(s.packets for s in streams if s.sender == UAC)}
    res.loss_pct = spread(losses)
    res.jitter_ms = {**spread([s.jitter_ms for s in streams]),
                     "max_of_max": round(max((s.max_jitter_ms for s in streams), default=0), 4)}
    res.mos = {"p5": quantile(moss, 0.05), "min": round(min(moss), 4) if moss else None,
               "phones_min": round(min(phone_mos), 4) if phone_mos else None}
    usage = step.get("usage", {})
    res.cpu_s, res.peak_pct = usage.get("cpu_s", {}), usage.get("peak_pct", {})
    res.host, res.wall_s = usage.get("host", {}), usage.get("wall_s")
    res.conntrack = step.get("conntrack", {})
    hosts = [f"p{s['ext']}" for s in sipp.values()] + \
        [f"p{ph[r]}" for ph in step.get("phones", []) for r in ("caller", "callee")]
    res.capture_drops = {h: n for h in hosts
                         if (n := capture_drops(folder / f"{h}.tcpdump.log"))}
    _judge(res)
    return res


def _judge(res: StepResult) -> None:
    n = res.calls or 0
    if res.completed < n:
        res.reasons.append(f"{res.completed} of {n} calls completed (established "
                           f"{res.established}, attempted {res.attempted})")
    worst = res.loss_pct.get("max")
    if worst is None or worst > 0:
        res.reasons.append(f"RTP loss up to {worst} % ({res.missing} direction(s) with no RTP)")
    if res.capture_drops:
        res.reasons.append("the captures missed packets (" + ", ".join(
            f"{h} {n}" for h, n in res.capture_drops.items()) + "): loss is an upper bound")
    p5 = res.mos.get("p5")
    if p5 is None or p5 < MOS_P5_MIN:
        res.reasons.append(f"MOS p5 {p5} < {MOS_P5_MIN}")
    res.passed = not res.reasons


def gate(res: StepResult) -> dict[str, Any]:
    """What the next step needs to know of this one (the ramp stops at the first failure)."""
    return {"name": res.name, "calls": res.calls, "wan": res.wan,
            "passed": None if res.skipped else res.passed}


def verdict(subject: Subject, res: StepResult) -> Verdict:
    if res.skipped:
        text, state = f"Load step not run ({res.skipped}).", "skipped"
    elif res.passed:
        text, state = (f"{res.calls} simultaneous calls: all completed, no RTP loss, "
                       f"MOS p5 {res.mos.get('p5')}."), "works"
    else:
        text, state = f"{res.calls} simultaneous calls: " + "; ".join(res.reasons) + ".", "fails"
    if res.capped:
        text += f" The step was {res.capped}."
    return Verdict.of(subject, verdict=state, rtp_received=dict(res.rtp_received),
                      rtp_sent={"caller": 0, "callee": 0},
                      checks={} if res.skipped else {"all_completed": res.completed >= (
                          res.calls or 0), "no_loss": res.loss_pct.get("max") == 0,
                          "mos_p5": (res.mos.get("p5") or 0) >= MOS_P5_MIN},
                      explanation=text, evidence=res.reasons, load=res.row())


def knee(rows: list[dict[str, Any]]) -> int | None:
    """The largest N of a passing clean-WAN step."""
    ok = [int(r["calls"]) for r in rows if r.get("passed") and r.get("wan") == "clean"]
    return max(ok) if ok else None


def earlier_steps(folder: Path) -> list[dict[str, Any]]:
    """Gates of the load steps that ran before this one in the same run folder (their
    gate.json, written when the next step starts)."""
    out = []
    for other in sorted(folder.parent.iterdir()):
        if other.name >= folder.name or not (other / STEP_FILE).exists():
            continue
        gate_file = other / GATE_FILE
        if gate_file.exists():
            out.append(json.loads(gate_file.read_text()))
    return out
