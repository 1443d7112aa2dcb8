"""WAN impairments measured against what was configured.

    h1 198.51.100.1 ── r-eth0 [r] r-eth1 ── h2 203.0.113.1
                   198.51.100.254   203.0.113.254
                                    ^ impaired egress (toward h2)

Plain `ip netns` namespaces with per-process names; the veths are created inside them, so
nothing appears in the root namespace. A UDP stream carries (seq, send time) and the receiver
takes the kernel's arrival timestamp: all namespaces share one clock.
"""
from __future__ import annotations

import json
import math
import os
import random
import re
import select
import socket
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import requires_root
from stats import binomial_interval, z_value

from bench.shaper import NsNode  # the ip-netns node apply() drives, shared with the bench
from impair import Applied, Impairment, apply, has_netem
from impair.apply import ImpairError, netem_command
from impair.netlink import (
    Attr,
    Error,
    MsgType,
    Packet,
    Verdict,
    attr,
    message,
    parse,
    verdict_msg,
)
from impair.nfq import DelayModel, LossModel, flow_key
from impair.nfq import main as nfq_main
from impair.reader import READERS

PREFIX = f"imp{os.getpid() % 100000}"
H2_ADDR = "203.0.113.1"
EGRESS = "r-eth1"
PORT = 40000

SENDER = r"""
import socket, struct, sys, time
dst, port, n, gap, size = sys.argv[1], *map(float, sys.argv[2:])
port, n, size = int(port), int(n), int(size)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
t0 = time.monotonic() + 0.02
for i in range(n):
    d = t0 + i * gap - time.monotonic()
    if d > 0:
        time.sleep(d)
    s.sendto(struct.pack("!Id", i, time.time()).ljust(size, b"\0"), (dst, port))
"""

RECEIVER = r"""
import json, socket, struct, sys, time
port, n, limit, idle = map(float, sys.argv[1:5])
port, n, out = int(port), int(n), sys.argv[5]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
SO_TIMESTAMPNS = 35  # asm-generic/socket.h; kernel arrival time, CLOCK_REALTIME
s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
s.bind(("0.0.0.0", port))
print("ready", flush=True)
rows, end = [], time.monotonic() + limit
while len(rows) < n:
    left = end - time.monotonic()
    if left <= 0:
        break
    s.settimeout(min(left, idle) if rows else left)
    try:
        data, anc, _, addr = s.recvmsg(65535, 64)
    except socket.timeout:
        break
    now = time.time()
    for level, kind, raw in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = struct.unpack("@qq", raw[:16])
            now = sec + nsec / 1e9
    seq, sent = struct.unpack_from("!Id", data)
    rows.append((seq, sent, now, len(data), addr[1]))
with open(out, "w") as f:
    json.dump(rows, f)
"""


@dataclass
class Lab:
    h1: NsNode
    r: NsNode
    h2: NsNode
    tmp: Path
    base_ms: float = 0.0  # one-way delay h1 → h2 without impairment


@dataclass(frozen=True)
class Rx:
    seqs: list[int]
    sent: list[float]
    delays_ms: list[float]
    arrivals: list[float]
    sizes: list[int]
    ports: list[int]  # UDP source ports seen

    def shaped_delays_ms(self) -> list[float]:
        """Without packet 0, which skips the shaper under nat_safe (first packet of a flow)."""
        return [d for q, d in zip(self.seqs, self.delays_ms, strict=True) if q != 0]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def stream(lab: Lab, n: int, gap_s: float, size: int = 64, idle_s: float = 1.0) -> Rx:
    """n UDP packets h1 → h2, `gap_s` apart; what arrived, in arrival order."""
    out = lab.tmp / f"rx-{random.randrange(1 << 30)}.json"
    py = sys.executable
    limit = n * gap_s + 3.0
    rx = lab.h2.popen([py, "-c", RECEIVER, str(PORT), str(n), str(limit), str(idle_s),
                       str(out)], stdout=subprocess.PIPE, text=True)
    tx: subprocess.Popen[Any] | None = None
    try:
        assert rx.stdout is not None
        assert select.select([rx.stdout], [], [], 5)[0], "receiver not ready"
        assert rx.stdout.readline().strip() == "ready"
        tx = lab.h1.popen([py, "-c", SENDER, H2_ADDR, str(PORT), str(n), str(gap_s),
                           str(size)])
        assert tx.wait(timeout=n * gap_s + 5) == 0
        assert rx.wait(timeout=limit + 2) == 0
    finally:
        for proc in (tx, rx):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        if rx.stdout is not None:
            rx.stdout.close()
    rows = json.loads(out.read_text())
    return Rx([r[0] for r in rows], [r[1] for r in rows], [(r[2] - r[1]) * 1000 for r in rows],
              [r[2] for r in rows], [r[3] for r in rows], [r[4] for r in rows])


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces)")
    names = [f"{PREFIX}{n}" for n in ("h1", "r", "h2")]
    try:
        for n in names:
            _ip("netns", "add", n)
        h1, r, h2 = names
        _ip("-n", h1, "link", "add", "h1-eth0", "type", "veth", "peer", "name", "r-eth0",
            "netns", r)
        _ip("-n", h2, "link", "add", "h2-eth0", "type", "veth", "peer", "name", "r-eth1",
            "netns", r)
        for ns, dev, addr in ((h1, "h1-eth0", "198.51.100.1/24"),
                              (r, "r-eth0", "198.51.100.254/24"),
                              (r, "r-eth1", "203.0.113.254/24"), (h2, "h2-eth0", H2_ADDR + "/24")):
            _ip("-n", ns, "addr", "add", addr, "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", h1, "route", "add", "default", "via", "198.51.100.254")
        _ip("-n", h2, "route", "add", "default", "via", "203.0.113.254")
        subprocess.run(["ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
                       check=True, timeout=10)
        lb = Lab(NsNode(h1), NsNode(r), NsNode(h2), tmp_path_factory.mktemp("impair"))
        stream(lb, 20, 0.005)  # ARP, caches
        lb.base_ms = statistics.fmean(stream(lb, 300, 0.005).delays_ms)
        yield lb
    finally:
        for n in names:
            pids = subprocess.run(["ip", "netns", "pids", n], capture_output=True,
                                  text=True).stdout.split()
            for pid in pids:  # only processes inside our own namespaces
                subprocess.run(["kill", "-9", pid], capture_output=True)
            subprocess.run(["ip", "netns", "del", n], capture_output=True)


@pytest.fixture
def impaired(lab: Lab) -> Iterator[Callable[..., Applied]]:
    """apply() on r's egress toward h2; whatever was applied is stopped afterwards."""
    done: list[Applied] = []

    def _apply(imp: Impairment, **kw: Any) -> Applied:
        done.append(apply(lab.r, EGRESS, imp, lab.tmp, **kw))
        return done[-1]

    try:
        yield _apply
    finally:
        for a in done:
            a.stop()


def report(what: str, **figures: float) -> None:
    print(f"\n{what}: " + ", ".join(f"{k} {v:.4g}" for k, v in figures.items()))


# -- no root needed -------------------------------------------------------------------------

def test_bad_impairment_is_one_line_value_error() -> None:
    for kw in ({"delay_ms": -1}, {"loss_pct": 101}, {"jitter_ms": float("nan")},
               {"loss_burst": 0.5}, {"rate_kbit": 0}, {"loss_pct": 90, "loss_burst": 2}):
        with pytest.raises(ValueError) as err:
            Impairment(**kw)
        assert "\n" not in str(err.value) and next(iter(kw)) in str(err.value)
    with pytest.raises(ValueError, match="unknown impairment key"):
        Impairment.from_dict({"delay_ms": 10, "delay": 3})
    assert Impairment.from_dict({"delay_ms": 10, "rate_kbit": 64}) == Impairment(10, rate_kbit=64)
    assert Impairment().is_none() and not Impairment(loss_pct=1).is_none()


def test_netem_command() -> None:
    imp = Impairment(delay_ms=40, jitter_ms=10, loss_pct=5, loss_burst=4, rate_kbit=256)
    assert netem_command("eth0", imp) == (
        "tc qdisc add dev eth0 root netem limit 10000 delay 40ms 10ms distribution normal "
        "loss gemodel 1.31579% 25% 100% 0% rate 256kbit")
    assert netem_command("e", Impairment(loss_pct=2.5)).endswith("limit 10000 loss random 2.5%")


def test_netlink_messages_round_trip() -> None:
    hdr = attr(Attr.PACKET_HDR, (0x01020304).to_bytes(4, "big") + b"\x08\x00\x04")
    out = attr(Attr.IFINDEX_OUTDEV, (7).to_bytes(4, "big"))
    raw = message(MsgType.PACKET, 9, hdr + out) * 2
    assert list(parse(raw)) == [Packet(0x01020304, 0x0800, 4, 7)] * 2
    v = verdict_msg(9, 5, Verdict.DROP)
    assert v[4:6] == (3 << 8 | 1).to_bytes(2, sys.byteorder)  # NFNL_SUBSYS_QUEUE, VERDICT
    assert v[16:20] == b"\x00\x00\x00\x09" and v[-8:] == bytes([0, 0, 0, 0, 0, 0, 0, 5])
    err = (2).to_bytes(2, sys.byteorder)  # NLMSG_ERROR: -EBUSY for message seq 1
    body = (-16).to_bytes(4, sys.byteorder, signed=True) + raw[:8] + (1).to_bytes(4, sys.byteorder)
    body += bytes(4)
    nl = (16 + len(body)).to_bytes(4, sys.byteorder) + err + bytes(10) + body
    assert list(parse(nl)) == [Error(-16, 1)]
    with pytest.raises(ValueError, match="bad length"):
        list(parse(raw[:-4]))
    head = bytes([0x45]) + bytes(19) + b"\x0f\xa0\x0f\xa0"  # what a copy_range queue sends
    with_head = message(MsgType.PACKET, 9, hdr + out + attr(Attr.PAYLOAD, head))
    assert list(parse(with_head)) == [Packet(0x01020304, 0x0800, 4, 7, head)]


def _udp_head(src: str, sport: int, dst: str, dport: int) -> bytes:
    ip = bytes([0x45, 0, 0, 48, 0, 0, 0, 0, 64, 17, 0, 0])
    return (ip + socket.inet_aton(src) + socket.inet_aton(dst)
            + sport.to_bytes(2, "big") + dport.to_bytes(2, "big"))


def test_flow_order_is_kept_per_flow_only() -> None:
    a = flow_key(_udp_head("203.0.113.2", 4000, "198.51.100.2", 4000))
    b = flow_key(_udp_head("203.0.113.2", 4002, "198.51.100.2", 4002))
    assert a != b and len(a) == 13 and flow_key(b"\x60" + bytes(40)) == b""  # IPv6: one order
    model = DelayModel(10, 5, random.Random(7), reorder=False)
    t = 0.0
    last: dict[bytes, float] = {}
    overtaken = 0
    for i in range(2000):  # two interleaved flows, a packet every 1 ms
        flow = (a, b)[i % 2]
        due = model.release(t, flow)
        assert due >= last.get(flow, 0.0)  # never overtakes its own flow's previous packet
        overtaken += due < max(last.values(), default=0.0)  # may overtake the other flow's
        last[flow] = due
        t += 0.001
    assert overtaken > 100


def test_gilbert_model_statistics() -> None:
    model = LossModel(5, 4, random.Random(1))
    lost = [model.lost() for _ in range(200_000)]
    bursts = sum(1 for i, x in enumerate(lost) if x and (i == 0 or not lost[i - 1]))
    assert abs(sum(lost) / len(lost) - 0.05) < 0.005
    assert abs(sum(lost) / bursts - 4) < 0.3


def test_shaper_rejects_bad_arguments() -> None:
    assert nfq_main(["--queue", "1", "--delay-ms", "-5"]) == 2
    assert nfq_main(["--queue", "1", "--reader", "bogus"]) == 2


# -- root: real namespaces ------------------------------------------------------------------

@requires_root
def test_has_netem_matches_kernel() -> None:
    probe = subprocess.run(["unshare", "--net", "sh", "-c", "ip link add a type veth peer name b"
                            " && tc qdisc add dev a root netem delay 1ms"], capture_output=True,
                           timeout=10)
    assert has_netem() == (probe.returncode == 0)


@requires_root
@pytest.mark.parametrize("reader", READERS)
def test_delay(lab: Lab, impaired: Callable[..., Applied], reader: str) -> None:
    if reader == "libnfq":
        pytest.importorskip("netfilterqueue")
    a = impaired(Impairment(delay_ms=40), mechanism="nfqueue", reader=reader)
    assert f"reader {reader}" in a.describe()
    rx = stream(lab, 500, 0.005)
    added = statistics.fmean(rx.delays_ms) - lab.base_ms
    a.stop()
    stats = a.stats() or {}
    report(a.describe(), baseline_ms=lab.base_ms, added_ms=added,
           **{k: v for k, v in stats.items() if k.startswith(("late", "verdict"))})
    assert len(rx.seqs) == 500
    assert abs(added - 40) <= 0.05 * 40
    assert stats["accepted"] == 500 and stats["late_us_p50"] < 500  # tails: VM noise
    assert stats["reader"] == reader


@requires_root
def test_jitter(lab: Lab, impaired: Callable[..., Applied]) -> None:
    seed = 11
    impaired(Impairment(delay_ms=40, jitter_ms=10), mechanism="nfqueue", seed=seed)
    rx = stream(lab, 400, 0.020)  # VoIP spacing; FIFO skews less than at tighter spacing
    added = statistics.fmean(rx.delays_ms) - lab.base_ms
    std = statistics.stdev(rx.delays_ms)
    # the shaper's own draws, replayed: separates the FIFO skew from the scheduling error
    model = DelayModel(40, 10, random.Random(f"{seed}/delay"), reorder=False)
    expected = [(model.release(t) - t) * 1000 for t in rx.sent]
    residual = [d - lab.base_ms - e for d, e in zip(rx.delays_ms, expected, strict=True)]
    report("jitter 10 on delay 40", added_ms=added, std_ms=std,
           fifo_model_mean_ms=statistics.fmean(expected),
           fifo_model_std_ms=statistics.stdev(expected),
           late_vs_model_mean_ms=statistics.fmean(residual),
           late_vs_model_p50_ms=statistics.median(residual),
           late_vs_model_p95_ms=sorted(residual)[int(0.95 * len(residual))])
    assert len(rx.seqs) == 400
    assert abs(statistics.median(residual)) < 1.0
    assert rx.seqs == sorted(rx.seqs), "FIFO: no reordering"
    assert abs(added - 40) <= 0.05 * 40
    assert abs(std - 10) <= 0.2 * 10


@requires_root
def test_random_loss(lab: Lab, impaired: Callable[..., Applied]) -> None:
    a = impaired(Impairment(loss_pct=10), mechanism="nfqueue")
    assert a.mechanism == "statistic" and a.proc is None
    n = 2000
    rx = stream(lab, n, 0.001)
    lost = n - len(rx.seqs)
    lo, hi = binomial_interval(n, 0.10)
    report("random loss 10 %", lost=lost, lo=lo, hi=hi)
    assert lo <= lost <= hi


@requires_root
def test_bursty_loss(lab: Lab, impaired: Callable[..., Applied]) -> None:
    n, seed = 5000, 7
    a = impaired(Impairment(loss_pct=5, loss_burst=4), mechanism="nfqueue", seed=seed)
    rx = stream(lab, n, 0.001)
    got = set(rx.seqs)
    lost = [i not in got for i in range(n)]
    bursts = sum(1 for i, x in enumerate(lost) if x and (i == 0 or not lost[i - 1]))
    loss, mean_burst = sum(lost) / n, sum(lost) / max(bursts, 1)
    model = LossModel(5, 4, random.Random(f"{seed}/loss"))  # what the shaper draws
    expected = [model.lost() for _ in range(n)]  # r has no NAT rules: no nat_safe
    # the Gilbert chain's correlation widens the binomial spread by (1 + rho) / (1 - rho)
    p, r = a.imp.gilbert()
    rho = 1 - p - r
    sd = math.sqrt(0.05 * 0.95 / n * (1 + rho) / (1 - rho))
    report("bursty loss 5 % burst 4", loss_pct=100 * loss, mean_burst=mean_burst,
           tolerance_pct=100 * z_value() * sd)
    assert lost == expected, "the loss pattern is the seeded model's"
    assert abs(loss - 0.05) <= z_value() * sd
    assert mean_burst > 2.5


@requires_root
def test_rate(lab: Lab, impaired: Callable[..., Applied]) -> None:
    impaired(Impairment(rate_kbit=256), mechanism="nfqueue")
    rx = stream(lab, 240, 1 / 60, size=1000)  # 60 × 1042 B/s on the wire ≈ 500 kbit/s
    skip = 10  # the TBF burst
    wire = [s + 42 for s in rx.sizes]  # UDP + IP + Ethernet headers: what TBF counts
    secs = rx.arrivals[-1] - rx.arrivals[skip]
    kbit = sum(wire[skip + 1:]) * 8 / secs / 1000
    report("rate 256 kbit", received=len(rx.seqs), wire_kbit=kbit,
           payload_kbit=kbit * 1000 / 1042)
    assert abs(kbit - 256) <= 0.10 * 256


@requires_root
def test_stop_removes_everything(lab: Lab) -> None:
    imp = Impairment(delay_ms=30, jitter_ms=5, loss_pct=5, loss_burst=3, rate_kbit=512)
    a = apply(lab.r, EGRESS, imp, lab.tmp, mechanism="nfqueue")
    try:
        assert a.mechanism == "nfqueue+tbf" and a.proc.poll() is None
        assert "natlab-impair" in lab.r.cmd("iptables -t mangle -S POSTROUTING")
        assert "tbf" in lab.r.cmd(f"tc qdisc show dev {EGRESS}")
        a.check()
    finally:
        a.stop()
    a.stop()  # idempotent
    assert "natlab-impair" not in lab.r.cmd("iptables -t mangle -S POSTROUTING")
    assert "tbf" not in lab.r.cmd(f"tc qdisc show dev {EGRESS}")
    assert a.proc.poll() is not None
    rx = stream(lab, 300, 0.005)
    assert len(rx.seqs) == 300
    assert statistics.fmean(rx.delays_ms) < lab.base_ms + 1


@requires_root
def test_dead_shaper_fails_loudly(lab: Lab, impaired: Callable[..., Applied]) -> None:
    a = impaired(Impairment(delay_ms=5), mechanism="nfqueue")
    a.proc.kill()
    a.proc.wait()
    with pytest.raises(ImpairError, match="shaper exited"):
        a.check()
    rx = stream(lab, 50, 0.005, idle_s=0.5)
    assert rx.seqs == []  # no --queue-bypass: a dead shaper blackholes, it does not hide


@requires_root
def test_second_shaper_on_same_interface_is_refused(lab: Lab,
                                                   impaired: Callable[..., Applied]) -> None:
    first = impaired(Impairment(delay_ms=5), mechanism="nfqueue")
    with pytest.raises(ImpairError, match="not ready.*cannot bind queue"):
        impaired(Impairment(delay_ms=10), mechanism="nfqueue")
    first.check()
    assert lab.r.cmd("iptables -t mangle -S POSTROUTING").count("NFQUEUE") == 1


@requires_root
def test_nat_safe_keeps_one_mapping(lab: Lab, impaired: Callable[..., Applied]) -> None:
    """Symmetric NAT on the impaired node: a held first packet must not split the flow."""
    lab.r.cmd(f"iptables -t nat -A POSTROUTING -o {EGRESS} -j MASQUERADE --random-fully")
    try:
        a = impaired(Impairment(delay_ms=40), mechanism="nfqueue")  # nat_safe: auto → on
        rx = stream(lab, 20, 0.005)
        assert "first packet of a flow not shaped" in a.describe()
        assert len(rx.seqs) == 20 and len(set(rx.ports)) == 1, set(rx.ports)
        assert min(rx.shaped_delays_ms()) > 39
    finally:
        lab.r.cmd("iptables -t nat -F POSTROUTING")


@requires_root
def test_mininet_hosts(tmp_path: Path) -> None:
    """The same on real Mininet hosts (cmd/popen via mnexec), two hosts on one link."""
    from mininet.net import Mininet

    net = Mininet(topo=None, controller=None, build=False, ipBase="192.0.2.0/24")
    try:
        a = net.addHost("imh1", ip="192.0.2.1/24")
        b = net.addHost("imh2", ip="192.0.2.2/24")
        net.addLink(a, b)
        net.build()
        applied = apply(a, "imh1-eth0", Impairment(delay_ms=30, loss_pct=20, loss_burst=2),
                        tmp_path, mechanism="nfqueue")
        try:
            out = a.cmd("ping -n -c 20 -i 0.05 -W 1 192.0.2.2")
        finally:
            applied.stop()
        rtts = [float(m[1]) for m in re.finditer(r"icmp_seq=\d+ .*time=([\d.]+)", out)]
        report(applied.describe(), replies=len(rtts), rtt_ms=statistics.fmean(rtts))
        assert len(rtts) >= 5 and 29 < min(rtts) and statistics.fmean(rtts) < 34
    finally:
        net.stop()
