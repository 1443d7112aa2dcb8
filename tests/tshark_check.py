"""tshark's RTP stream table, parsed, for tests that compare natlab's figures with it.

`tshark_streams(pcap)` runs `tshark -q -n -r PCAP [--enable-heuristic rtp_udp] -z
rtp,streams` and returns every row as tshark prints it. `tshark_stream(pcap, src, sport,
dst, dport, ssrc)` gives one stream's packets, lost, mean and max jitter, and
`qos_differences(row, pcap)` compares a QoS row (an `analysis.qos.Direction` or its `row()`
dict from qos.json) with the stream of the receiver's capture it names: every QoS row of a
run should give [] against the receiver's pcap (`run_differences(rundir)` checks a whole run
folder). `assert_like_tshark(pcap)` checks that
`natlab analyze` prints tshark's whole table. Callers skip when `TSHARK` is None.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.rtp import RtpStream, analyze_pcap

TSHARK = shutil.which("tshark")

Key = tuple[str, str, int]  # ("src:port", "dst:port", ssrc)
ROW = re.compile(
    r"^\s*(?P<start>\d+\.\d+)\s+(?P<end>\d+\.\d+)\s+(?P<src>\S+)\s+(?P<sport>\d+)\s+"
    r"(?P<dst>\S+)\s+(?P<dport>\d+)\s+0x(?P<ssrc>[0-9A-F]{8})\s+(?P<payload>.*?)\s+"
    r"(?P<pkts>\d+)\s+(?P<lost>-?\d+)\s+\((?P<pct>\S+)%\)\s+(?P<mind>\S+)\s+(?P<meand>\S+)\s+"
    r"(?P<maxd>\S+)\s+(?P<minj>\S+)\s+(?P<meanj>\S+)\s+(?P<maxj>\S+)\s*(?P<problem>X?)\s*$")
FIELDS = ("start", "end", "payload", "pkts", "lost", "pct", "mind", "meand", "maxd", "minj",
          "meanj", "maxj", "problem")


def tshark_streams(pcap: Path, heuristic: bool = True) -> dict[Key, dict[str, str]]:
    """Every row of tshark's rtp,streams table, keyed by ("src:port", "dst:port", ssrc)."""
    assert TSHARK is not None, "tshark is not installed"
    heur = ["--enable-heuristic", "rtp_udp"] if heuristic else []
    out = subprocess.run([TSHARK, "-q", "-n", "-r", str(pcap), *heur, "-z", "rtp,streams"],
                         capture_output=True, text=True, check=True, timeout=300).stdout
    assert "RTP Streams" in out, out
    rows: dict[Key, dict[str, str]] = {}
    for line in out.splitlines():
        m = ROW.match(line)
        if m:
            g = m.groupdict()
            rows[(f"{g['src']}:{g['sport']}", f"{g['dst']}:{g['dport']}",
                  int(g["ssrc"], 16))] = {k: g[k] for k in FIELDS}
    return rows


@dataclass(frozen=True)
class TsharkStream:
    packets: int
    lost: int
    mean_jitter_ms: float
    max_jitter_ms: float


def tshark_stream(pcap: Path, src: str, sport: int, dst: str, dport: int, ssrc: int,
                  heuristic: bool = True) -> TsharkStream | None:
    """tshark's packets, lost, mean and max jitter (ms, 3 decimals) of one stream."""
    row = tshark_streams(pcap, heuristic).get((f"{src}:{sport}", f"{dst}:{dport}", ssrc))
    if row is None:
        return None
    return TsharkStream(int(row["pkts"]), int(row["lost"]), float(row["meanj"]),
                        float(row["maxj"]))


def qos_differences(row: Any, pcap: Path) -> list[str]:
    """[] if a QoS row (Direction or its row() dict) equals tshark's figures for its stream
    in the receiver's capture `pcap`: packets and lost exactly, jitter as tshark prints it
    (3 decimals; a row() dict is already rounded to 4, so it may be off by 0.001)."""
    d = row if isinstance(row, dict) else {k: getattr(row, k) for k in (
        "src", "dst", "ssrc", "packets", "lost", "mean_jitter_ms", "max_jitter_ms")}
    (src, sport), (dst, dport) = (d[k].rsplit(":", 1) for k in ("src", "dst"))
    ts = tshark_stream(pcap, src, int(sport), dst, int(dport), int(d["ssrc"]))
    if ts is None:
        return [f"tshark has no stream {d['src']} -> {d['dst']} SSRC {d['ssrc']:#010x}"]
    out = [f"{k}: ours {d[k]} tshark {getattr(ts, t)}"
           for k, t in (("packets", "packets"), ("lost", "lost")) if d[k] != getattr(ts, t)]
    tol = 0.0 if not isinstance(row, dict) else 0.0011
    for k in ("mean_jitter_ms", "max_jitter_ms"):
        ours = float(f"{d[k]:.3f}") if tol == 0.0 else d[k]
        if abs(ours - getattr(ts, k)) > tol:
            out.append(f"{k}: ours {d[k]} tshark {getattr(ts, k)}")
    return out


def run_differences(rundir: Path) -> tuple[int, list[str]]:
    """Every QoS row of a run folder (qos.json) against tshark on its receiver's capture
    (p<ext>.pcap, or a PBX capture pbx*.pcap for the bridge, anywhere in the scenario's
    folder): (rows checked, one line per row that equals tshark's stream in none of them)."""
    doc = json.loads((rundir / "qos.json").read_text())
    rows, bad = 0, []
    for sc in doc["scenarios"]:
        for r in sc["rows"]:
            rows += 1
            name = "pbx*.pcap" if r["receiver"] == "bridge" else f"p{r['receiver']}.pcap"
            found = [qos_differences(r, p) for p in sorted((rundir / sc["name"]).rglob(name))]
            if not any(f == [] for f in found):
                bad.append(f"{sc['name']} {r['sender']} -> {r['receiver']} {r['media']}: "
                           f"{found or 'no capture'}")
    return rows, bad


def as_printed(s: RtpStream) -> dict[str, str]:
    """Our figures formatted as tshark 4.0's rtp,streams table prints them."""
    def ms(v: float | None) -> str:
        return "-1.000" if v is None else f"{v:.3f}"
    return {"start": f"{s.start_s:.6f}", "end": f"{s.end_s:.6f}", "payload": s.payload_names(),
            "pkts": str(s.packets), "lost": str(s.lost), "pct": f"{s.loss_pct:.1f}",
            "mind": ms(s.min_delta_ms), "meand": ms(s.mean_delta_ms), "maxd": ms(s.max_delta_ms),
            "minj": ms(s.min_jitter_ms), "meanj": ms(s.mean_jitter_ms),
            "maxj": ms(s.max_jitter_ms), "problem": "X" if s.problem else ""}


def differences(theirs: dict[Key, dict[str, str]], ours: list[RtpStream]) -> list[str]:
    mine = {(s.src, s.dst, s.ssrc): as_printed(s) for s in ours}
    diffs = [f"only tshark: {k}" for k in sorted(set(theirs) - set(mine))]
    diffs += [f"only ours: {k}" for k in sorted(set(mine) - set(theirs))]
    for k in sorted(set(theirs) & set(mine)):
        for f in FIELDS:
            if theirs[k][f] != mine[k][f]:
                diffs.append(f"{k} {f}: tshark {theirs[k][f]!r} ours {mine[k][f]!r}")
    return diffs


def assert_like_tshark(pcap: Path, heuristic: bool = True) -> dict[Key, RtpStream]:
    ours = analyze_pcap(pcap, heuristic)
    assert differences(tshark_streams(pcap, heuristic), ours) == []
    assert len(ours) == len({(s.src, s.dst, s.ssrc) for s in ours})
    return {(s.src, s.dst, s.ssrc): s for s in ours}
