"""Benchmark: `natlab analyze` (analysis.pcap reader + analysis.rtp.rtp_streams, the path the
QoS table uses too) against tshark's RTP stream statistics.

One synthetic capture (20 jittery PCMU streams of 10,000 packets with some loss, plus 20,000
non-RTP datagrams), analysed by both on the same file, wall clock, best of 3. Also checks that
both print the same stream table (every figure). Writes results/bench/rtp_speed.json.
"""
from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the capture generator lives with the tests

from pcapgen import (  # noqa: E402
    Datagram,
    StreamSpec,
    merge,
    random_noise,
    rtp_stream,
    stun_noise,
    write_pcap_fast,
)
from tshark_check import differences, tshark_streams  # noqa: E402

from analysis.rtp import analyze_pcap  # noqa: E402

STREAMS, PER_STREAM, NOISE, ROUNDS = 20, 10_000, 20_000, 3
TSHARK_ARGS = ["-q", "--enable-heuristic", "rtp_udp", "-z", "rtp,streams"]


def capture(path: Path) -> int:
    rng = random.Random(2024)
    streams = [rtp_stream(StreamSpec(src=f"10.0.{i}.1", sport=16384 + 2 * i,
                                     dst=f"10.1.{i}.1", dport=20000 + 2 * i, ssrc=0x100 + i,
                                     count=PER_STREAM, start_us=i * 997, jitter_us=4000,
                                     lost={rng.randrange(PER_STREAM) for _ in range(30)}), rng)
               for i in range(STREAMS)]
    noise: list[Datagram] = []
    for k in range(NOISE):
        t = k * PER_STREAM * 20_000 // NOISE
        if k % 2:
            noise.append(stun_noise(t, "10.9.0.1", 3478, "10.9.0.2", 50000, rng))
        else:
            noise.append(random_noise(t, "10.9.0.3", 41001, "10.9.0.4", 41003, rng,
                                      first_byte=rng.choice((0x00, 0x45, 0x17))))
    frames = merge(*streams, noise)
    write_pcap_fast(path, frames)
    return len(frames)


def best_of(fn: Callable[[], object]) -> tuple[float, object]:
    times, result = [], None
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main() -> int:
    tshark = shutil.which("tshark")
    out = ROOT / "results" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / "rtp_speed.pcap"
        frames = capture(pcap)
        ours_s, streams = best_of(lambda: analyze_pcap(pcap))
        assert isinstance(streams, list)
        rtp_packets = sum(s.packets for s in streams)
        figures: dict[str, object] = {
            "packets": frames, "rtp_packets": rtp_packets, "streams": len(streams),
            "rounds": ROUNDS, "ours_s": round(ours_s, 3),
            "ours_packets_per_s": round(frames / ours_s)}
        if tshark:
            cmd = [tshark, "-r", str(pcap), *TSHARK_ARGS]
            ts_s, proc = best_of(lambda: subprocess.run(cmd, capture_output=True, text=True,
                                                        check=True))
            assert isinstance(proc, subprocess.CompletedProcess)
            figures.update({
                "tshark_s": round(ts_s, 3), "tshark_packets_per_s": round(frames / ts_s),
                "speedup": round(ts_s / ours_s, 2),
                "same_streams": differences(tshark_streams(pcap), streams) == []})
    (out / "rtp_speed.json").write_text(json.dumps(figures, indent=2) + "\n")
    line = (f"rtp analysis: {frames} packets, {len(streams)} streams: ours {ours_s:.3f} s "
            f"({figures['ours_packets_per_s']} packets/s)")
    if tshark:
        line += (f", tshark {figures['tshark_s']} s ({figures['tshark_packets_per_s']} packets/s)"
                 f", x{figures['speedup']}, same streams: {figures['same_streams']}")
    print(f"{line} -> {out / 'rtp_speed.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
