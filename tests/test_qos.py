"""QoS end to end: calls across the NATs on an impaired WAN; measured must equal configured.

The bounds come from the configuration and the sample size (tests/stats.py): the one-way
delay is d plus the mean of n normal draws, the RFC 3550 mean jitter is the value the
configured N(0, sigma^2) per-packet delay gives with the sender's own timing (read from its
capture), and the lost count is binomial.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers import requires_root
from stats import binomial_interval, mean_jitter, mean_of_normal

from analysis.packets import read_udp
from analysis.rtp import rtp_header
from topology.plan import Plan

pytestmark = requires_root

SCENARIO = """description = "qos test"
stun = true
trunk = "nat-aware"
expect = "works"
duration_s = {duration}
qos = true
wan = {wan}
"""
PTIME_MS = 20.0  # PCMU, the agents' packet spacing
RTP_CLOCK_KHZ = 8
# What the testbed adds beyond the configured draw: the clean path (veths, two routers) and
# the shaper's scheduling error. Its mean is in the shaper's stats (late_us_mean); its spread
# reached 1.5 ms sd on this VM under load (owd sd 2.5 ms for 2 ms configured, 102_qos runs).
PATH_MS = 0.5
SCHEDULING_SD_MS = 1.5


def _run(tmp_path: Path, name: str, wan: str, duration: int = 6) -> tuple[dict[str, Any], Path]:
    path = tmp_path / f"{name}.toml"
    path.write_text(SCENARIO.format(wan=wan, duration=duration))
    res = subprocess.run([sys.executable, "-m", "natlab", "run", "--scenario", str(path),
                          "--results", str(tmp_path / "results")], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    latest = tmp_path / "results" / "latest"
    qos = json.loads((latest / "qos.json").read_text())
    summary = json.loads((latest / "summary.json").read_text())
    assert summary["scenarios"][0]["verdict"] == "works", summary["scenarios"][0]["explanation"]
    (scenario,) = qos["scenarios"]
    assert len(scenario["rows"]) == 2  # both directions
    assert (latest / "qos.csv").read_text().count("\n") == 4  # header, 2 rows, average
    return scenario, latest / name


def _address(plan: Plan, ext: str) -> str:
    return next(lan.phones[ext] for lan in plan.lans if ext in lan.phones)


def sender_terms(scdir: Path, plan: Plan, sender: str, receiver: str) -> list[float]:
    """A_k (ms) for consecutive received packets: departure step minus RTP timestamp step,
    from the sender's capture (PCMU, the SSRC the sender sent first)."""
    src, dst = _address(plan, sender), _address(plan, receiver)

    def rtp(pcap: Path, outbound: bool) -> list[tuple[float, int, int, int]]:
        out = []
        for p in read_udp(pcap):
            h = rtp_header(p.payload) if p.kind == "rtp" else None
            mine = p.src == src if outbound else p.dst == dst  # the far end is NATed
            if h is not None and h.payload_type == 0 and mine:
                out.append((p.time, h.ssrc, h.seq, h.timestamp))
        return out

    sent = rtp(scdir / f"p{sender}.pcap", True)
    ssrc = sent[0][1]
    departure = {seq: (t, ts) for t, s, seq, ts in sent if s == ssrc}
    seqs = [seq for _, s, seq, _ in rtp(scdir / f"p{receiver}.pcap", False) if s == ssrc]
    terms = []
    for a, b in zip(seqs, seqs[1:], strict=False):
        (t0, ts0), (t1, ts1) = departure[a], departure[b]
        terms.append((t1 - t0) * 1000 - ((ts1 - ts0) & 0xFFFFFFFF) / RTP_CLOCK_KHZ)
    return terms


def shaper_late_ms(scdir: Path, plan: Plan, receiver: str) -> float:
    """Mean lateness of the shaper on the core's link toward the receiver's LAN."""
    router = next(lan.router_name for lan in plan.lans if receiver in lan.phones)
    (stats,) = (scdir / "wan" / f"core-{router}").glob("impair-*.json")
    return float(json.loads(stats.read_text())["late_us_mean"]) / 1000


def test_delay_and_jitter_as_configured(tmp_path: Path, plan: Plan) -> None:
    delay, sigma = 40.0, 2.0
    sc, scdir = _run(tmp_path, "901_qos_delay", f"{{ delay_ms = {delay:g}, "
                                                f"jitter_ms = {sigma:g} }}")
    assert f"delay {delay:g}" in sc["mechanism"]
    for row in sc["rows"]:
        n = row["packets"]
        assert row["loss_pct"] == 0.0 and n >= 290
        owd = mean_of_normal(delay, sigma, n)
        late = shaper_late_ms(scdir, plan, row["receiver"])
        assert owd.lo <= row["owd_mean_ms"] <= owd.hi + late + PATH_MS, (row, owd, late)
        terms = sender_terms(scdir, plan, row["sender"], row["receiver"])
        assert len(terms) == n - 1
        low = mean_jitter(sigma, n, PTIME_MS, terms)
        high = mean_jitter(math.hypot(sigma, SCHEDULING_SD_MS), n, PTIME_MS, terms)
        print(f"\n{row['sender']}->{row['receiver']}: jitter {row['mean_jitter_ms']:.3f} ms, "
              f"expected {low.mean:.3f} (sd {low.sd:.3f}), bound [{low.lo:.3f}, {high.hi:.3f}]"
              f"; owd {row['owd_mean_ms']:.3f} ms, shaper late {late:.3f} ms")
        assert low.lo <= row["mean_jitter_ms"] <= high.hi, (row, low, high)
        # the paper's "delay" is the mean arrival spacing: (n - 1) steps of PTIME over n
        # packets; the first and last transit differ by N(0, 2 sigma^2)
        spread = 3.3 * math.sqrt(2) * math.hypot(sigma, SCHEDULING_SD_MS) / n
        assert abs(row["paper_delay_ms"] - PTIME_MS * (n - 1) / n) <= spread + 0.01 * PTIME_MS
        assert 4.0 < row["mos_g107"] < 4.45 and row["r_paper"] > 93.0


def test_loss_within_binomial_spread(tmp_path: Path) -> None:
    # 12 s (~600 packets a way): with 300 the verdict's "95 % of what 10 % loss lets
    # through" bar is only ~2.6 binomial sd away, and the call failed about once in 100 runs
    p = 0.10
    sc, _ = _run(tmp_path, "902_qos_loss", f"{{ loss_pct = {100 * p:g} }}", duration=12)
    for row in sc["rows"]:
        # lost = sequence span - received; the span's first and last packets arrived by
        # definition, the n - 2 between them were each dropped with probability p
        span = row["packets"] + row["lost"]
        lo, hi = binomial_interval(span - 2, p)
        print(f"\n{row['sender']}->{row['receiver']}: lost {row['lost']} of {span}, "
              f"99.9 % interval [{lo}, {hi}]")
        assert lo <= row["lost"] <= hi, row
        assert row["owd_mean_ms"] < 5.0
        assert row["mos_g107"] < 4.0  # 10 % loss costs G.711 (PLC) about 25 R points
