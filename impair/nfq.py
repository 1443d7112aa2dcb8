"""User-space WAN shaper on an NFQUEUE: delay + jitter and random or bursty (Gilbert) loss.

    python -m impair.nfq --queue N [--delay-ms D] [--jitter-ms J] [--loss-pct P]
                         [--loss-burst B] [--seed S] [--reorder] [--stats FILE]
                         [--reader netlink|libnfq]

Runs inside the namespace whose iptables rule queues the packets. Prints "ready" on stdout
once the queue is bound (start it before inserting the rule: the rule has no --queue-bypass, so
packets queued to an unbound queue are dropped — a dead shaper fails loudly, it never silently
stops impairing). Lost packets get a DROP verdict at once; the others an ACCEPT verdict at
arrival + max(0, N(delay, jitter)). By default the release times are kept in arrival order
within each flow (addresses, protocol and ports: like a real path, a packet never overtakes the
one before it, so with jitter larger than the packet spacing the delay distribution is slightly
skewed up); flows are independent, so concurrent calls do not smooth each other's jitter (one
order for all packets did: 10 calls at once measured 1.9 ms where 2 calls measured 2.3 ms).
--reorder releases each packet at its own time like netem does. Precision: timer slack 1 µs,
SCHED_FIFO (--rt-priority) and a poll loop for the last --spin-us before each release (VM
timer wake-ups are 0.1-2 ms late); --stats gets counters and the lateness of the verdicts
every 2 s and at exit.
SIGTERM/SIGINT: keep releasing held packets on time for at most --drain-s, accept the rest,
write the stats and exit 0.
"""
from __future__ import annotations

import argparse
import ctypes
import heapq
import json
import os
import random
import select
import signal
import socket
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from impair.netlink import Verdict
from impair.profile import Impairment
from impair.reader import READERS, default_reader, open_reader

MAX_ERROR_SAMPLES = 200_000
PERIODIC_SAMPLES = 2_000
PR_SET_TIMERSLACK = 29
MAX_FLOWS = 4096  # flows remembered for their order (older ones are forgotten once released)


class LossModel:
    """Bernoulli (burst 1) or simple Gilbert loss: lost iff the chain is in the bad state."""

    def __init__(self, loss_pct: float, burst: float, rng: random.Random):
        imp = Impairment(loss_pct=loss_pct, loss_burst=burst)
        self.rng = rng
        self.loss = loss_pct / 100
        self.gilbert = imp.bursty
        self.p, self.r = imp.gilbert()
        self.bad = False

    def lost(self) -> bool:
        if not self.gilbert:
            return self.loss > 0 and self.rng.random() < self.loss
        if self.bad:
            self.bad = self.rng.random() >= self.r
        else:
            self.bad = self.rng.random() < self.p
        return self.bad


class DelayModel:
    """Release time of a packet arriving at `now` (seconds, monotonic clock)."""

    def __init__(self, delay_ms: float, jitter_ms: float, rng: random.Random, reorder: bool):
        self.delay = delay_ms / 1000
        self.jitter = jitter_ms / 1000
        self.rng = rng
        self.reorder = reorder
        self.last: dict[bytes, float] = {}  # per flow: the latest release time given

    def release(self, now: float, flow: bytes = b"") -> float:
        d = self.rng.gauss(self.delay, self.jitter) if self.jitter else self.delay
        t = now + max(d, 0.0)
        if not self.reorder:
            t = max(t, self.last.get(flow, 0.0))
            if len(self.last) > MAX_FLOWS:  # forget flows with nothing held any more
                self.last = {k: v for k, v in self.last.items() if v > now}
            self.last[flow] = t
        return t


def flow_key(head: bytes) -> bytes:
    """Protocol, addresses and (UDP/TCP) ports of an IPv4 packet's first bytes; b"": unknown
    (every such packet then shares one order)."""
    if len(head) < 20 or head[0] >> 4 != 4:
        return b""
    ihl = (head[0] & 0x0F) * 4
    ports = head[ihl:ihl + 4] if head[9] in (6, 17) else b""
    return head[9:10] + head[12:20] + ports


class Stats:
    def __init__(self) -> None:
        self.queued = self.accepted = self.dropped = self.missed = 0
        self.max_held = 0
        self.err_sum = self.err_max = self.verdict_sum = self.verdict_max = 0.0
        self.errors: list[float] = []

    def late(self, seconds: float, verdict: float) -> None:
        self.verdict_sum += verdict
        self.verdict_max = max(self.verdict_max, verdict)
        self.err_sum += seconds
        self.err_max = max(self.err_max, seconds)
        if len(self.errors) < MAX_ERROR_SAMPLES:
            self.errors.append(seconds)

    def as_dict(self, overruns: int, final: bool = True) -> dict[str, float | int]:
        """Counters; late_us_*: verdict time minus due time; verdict_us_*: the verdict call
        (the kernel forwards the packet inside it)."""
        # while running: percentiles of the last packets only (sorting 200,000 samples every
        # 2 s would stall the releases for tens of ms)
        errs = sorted(self.errors if final else self.errors[-PERIODIC_SAMPLES:])

        def pct(q: float) -> float:
            return round(errs[min(len(errs) - 1, int(q * len(errs)))] * 1e6, 1) if errs else 0.0

        return {"queued": self.queued, "accepted": self.accepted, "dropped": self.dropped,
                "missed": self.missed, "overruns": overruns, "max_held": self.max_held,
                "late_us_mean": round(self.err_sum / self.accepted * 1e6, 1)
                if self.accepted else 0.0,
                "late_us_p50": pct(0.5), "late_us_p99": pct(0.99),
                "late_us_max": round(self.err_max * 1e6, 1),
                "verdict_us_mean": round(self.verdict_sum / self.accepted * 1e6, 1)
                if self.accepted else 0.0,
                "verdict_us_max": round(self.verdict_max * 1e6, 1)}


def _write_stats(path: Path | None, data: dict[str, Any]) -> None:
    if path is not None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data) + "\n")
        tmp.replace(path)


def _fine_timers(rt_priority: int) -> bool:
    """Timer slack 1 µs instead of 50 µs, and SCHED_FIFO so a busy CPU does not delay the
    releases (best effort; the kernel's RT throttling still leaves 5 % to others).
    Returns whether the real-time priority was granted."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if rt_priority <= 0:
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(rt_priority))
    except (OSError, AttributeError):
        return False
    return True


def run(args: argparse.Namespace) -> int:
    seed = random.randrange(1 << 31) if args.seed is None else args.seed
    # independent streams: the loss pattern depends only on the seed and the packet order
    loss = LossModel(args.loss_pct, args.loss_burst, random.Random(f"{seed}/loss"))
    delay = DelayModel(args.delay_ms, args.jitter_ms, random.Random(f"{seed}/delay"),
                       args.reorder)
    try:
        q = open_reader(args.reader, args.queue, args.maxlen)
    except OSError as e:
        print(f"impair.nfq: cannot bind queue {args.queue}: {e}", file=sys.stderr)
        return 1
    realtime = _fine_timers(args.rt_priority)
    spin = args.spin_us / 1e6
    wake_r, wake_w = socket.socketpair()
    for s in (wake_r, wake_w):
        s.setblocking(False)
    stopping: list[float] = []  # the drain deadline once a stop signal arrived

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not stopping:
            stopping.append(time.monotonic() + args.drain_s)

    old_fd = signal.set_wakeup_fd(wake_w.fileno())
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stats = Stats()
    held: list[tuple[float, int, Any]] = []  # (release time, arrival order, reader's handle)
    next_id: int | None = None
    last_write = time.monotonic()
    print("ready", flush=True)
    try:
        while True:
            now = time.monotonic()
            if stopping and (not held or now >= stopping[0]):
                break
            # sleep until `spin` before the next release, then poll (select 0) until it is due:
            # timer wake-ups on a VM are late by 0.1-1 ms, a poll loop by a few µs
            timeout = max(0.0, held[0][0] - now - spin) if held else 1.0
            if stopping:
                timeout = min(timeout, max(0.0, stopping[0] - now))
            ready, _, _ = select.select([q.fileno(), wake_r.fileno()], [], [], timeout)
            if wake_r.fileno() in ready:
                wake_r.recv(512)
            if q.fileno() in ready:
                arrival = time.monotonic()
                for packet_id, handle, head in q.receive():
                    if next_id is not None and packet_id > next_id:
                        stats.missed += packet_id - next_id  # kernel dropped them
                    next_id = packet_id + 1
                    stats.queued += 1
                    if loss.lost():
                        q.verdict(handle, Verdict.DROP)
                        stats.dropped += 1
                    else:
                        due = delay.release(arrival, flow_key(head))
                        heapq.heappush(held, (due, stats.queued, handle))
                stats.max_held = max(stats.max_held, len(held))
            now = time.monotonic()
            while held and held[0][0] <= now:
                due, _, handle = heapq.heappop(held)
                t = time.monotonic()
                q.verdict(handle, Verdict.ACCEPT)  # the kernel forwards it inside this call
                stats.accepted += 1
                stats.late(t - due, time.monotonic() - t)
            if args.stats and now - last_write > 2.0:
                _write_stats(args.stats, stats.as_dict(q.overruns, final=False)
                             | {"realtime": realtime, "reader": args.reader})
                last_write = now
        for _, _, handle in sorted(held, key=lambda h: h[:2]):  # drain deadline passed:
            q.verdict(handle, Verdict.ACCEPT)  # let the rest through now
            stats.accepted += 1
        _write_stats(args.stats, stats.as_dict(q.overruns) | {"realtime": realtime,
                                                                   "reader": args.reader})
    finally:
        signal.set_wakeup_fd(old_fd)
        q.close()
        wake_r.close()
        wake_w.close()
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m impair.nfq", description=__doc__.split("\n")[0])
    ap.add_argument("--queue", type=int, required=True, help="NFQUEUE number to bind")
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--jitter-ms", type=float, default=0.0, help="std of the delay (normal)")
    ap.add_argument("--loss-pct", type=float, default=0.0)
    ap.add_argument("--loss-burst", type=float, default=1.0, help="mean burst (1 = Bernoulli)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--reorder", action="store_true", help="allow reordering (netem-like)")
    ap.add_argument("--maxlen", type=int, default=8192, help="kernel queue length (packets)")
    ap.add_argument("--drain-s", type=float, default=2.0)
    ap.add_argument("--spin-us", type=float, default=300.0,
                    help="poll instead of sleeping this long before a release")
    ap.add_argument("--rt-priority", type=int, default=10, help="SCHED_FIFO priority, 0 = off")
    ap.add_argument("--reader", choices=READERS, default=None,
                    help="queue reader: natlab's netlink client or libnetfilter_queue")
    ap.add_argument("--stats", type=Path, default=None, help="write counters as JSON here")
    args = ap.parse_args(argv)
    args.reader = args.reader or default_reader()
    # the same validation as apply() (raises ValueError)
    Impairment(args.delay_ms, args.jitter_ms, args.loss_pct, args.loss_burst)
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as e:  # argparse: --help or a usage error (already printed)
        return e.code if isinstance(e.code, int) else 2
    except ValueError as e:
        print(f"impair.nfq: {e}", file=sys.stderr)
        return 2
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
