"""RTP-like UDP load for bench/shaper.py: one sender and one receiver per direction.

    python -m bench.udpload send DST PORT CALLS SECONDS SEED   -> prints "packets seconds"
    python -m bench.udpload recv PORT SECONDS OUT.json          -> prints "ready", writes rows

The sender paces CALLS streams of 172-byte packets (RTP header + 20 ms of G.711), one every
20 ms per stream, each stream at a random phase (seeded), and puts (sequence number, send
time) in each payload. The receiver takes the kernel's arrival timestamp (SO_TIMESTAMPNS,
CLOCK_REALTIME like the sender's time.time(): all namespaces share one clock) and writes
[seq, sent, arrived] rows. Everything runs in one machine, so one-way delays are exact.
"""
from __future__ import annotations

import json
import random
import socket
import struct
import sys
import time

PACKET_BYTES = 172
PERIOD_S = 0.020
SO_TIMESTAMPNS = 35  # asm-generic/socket.h
_HEAD = struct.Struct("!Id")


def send(dst: str, port: int, calls: int, seconds: float, seed: int) -> tuple[int, float]:
    """Packets sent and the time from the first to the last (the rate actually reached)."""
    rng = random.Random(seed)
    phases = sorted(rng.random() * PERIOD_S for _ in range(calls))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    pad = bytes(PACKET_BYTES - _HEAD.size)
    t0 = time.monotonic() + 0.05
    seq, first = 0, 0.0
    for k in range(int(seconds / PERIOD_S)):
        for phase in phases:
            wait = t0 + k * PERIOD_S + phase - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            now = time.time()
            s.sendto(_HEAD.pack(seq, now) + pad, (dst, port))
            first = first or now
            seq += 1
    s.close()
    return seq, time.time() - first


def receive(port: int, seconds: float, out: str) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.bind(("0.0.0.0", port))
    print("ready", flush=True)
    rows: list[tuple[int, float, float]] = []
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        s.settimeout(min(left, 0.5) if rows else left)  # idle 0.5 s after traffic: done
        try:
            data, anc, _, _ = s.recvmsg(2048, 64)
        except TimeoutError:
            if rows:
                break
            continue
        now = time.time()
        for level, kind, raw in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("@qq", raw[:16])
                now = sec + nsec / 1e9
        seq, sent = _HEAD.unpack_from(data)
        rows.append((seq, sent, now))
    with open(out, "w") as f:
        json.dump(rows, f)
    return len(rows)


def main(argv: list[str]) -> int:
    if argv[:1] == ["send"] and len(argv) == 6:
        n, secs = send(argv[1], int(argv[2]), int(argv[3]), float(argv[4]), int(argv[5]))
        print(n, f"{secs:.6f}")
        return 0
    if argv[:1] == ["recv"] and len(argv) == 4:
        receive(int(argv[1]), float(argv[2]), argv[3])
        return 0
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
