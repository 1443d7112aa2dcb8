"""The SIPp load generator's files and command lines, and its STUN step.

SIPp (Debian's sip-tester 3.6.1) runs the project's own scenarios in agents/sipp/: a UAC in
LAN2 calls a UAS in LAN1 through both PBXs (digest auth with -au/-ap), each call sending
G.711 from media.pcap (`play_pcap_audio`) from its own port ([auto_media_port]: -mp + 4 per
call). SIPp has no STUN, so before the calls this module's `map` command (run inside the
SIPp host's namespace) sends a STUN Binding from every media port the calls will use and
prints the mapped addresses: the router's public address goes into the SDP (-key public_ip),
and the run refuses to go on unless every port is mapped to itself (SIPp can only advertise
[auto_media_port], so the NAT must preserve ports, as Linux MASQUERADE does without
--random-fully).

    python -m agents.sippload map --bind 172.16.10.200 --stun 192.0.2.10:3478 \\
        --ports 20000 20004 20008
"""
from __future__ import annotations

import argparse
import json
import math
import socket
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from services import stunmsg

SCENARIO_DIR = Path(__file__).resolve().parent / "sipp"
SIPP = "sipp"
MEDIA_FILE = "media.pcap"  # the scenarios play it from SIPp's working directory
MEDIA_PORT = 20000  # -mp: the first call's RTP port; call n uses MEDIA_PORT + 4 (n - 1)
PORT_STEP = 4  # SIPp's [auto_media_port] stride
PTIME_MS = 20
SAMPLE_RATE = 8000
STUN_TIMEOUT_S = 1.0


def media_ports(calls: int, base: int = MEDIA_PORT) -> list[int]:
    """The RTP ports SIPp's [auto_media_port] gives calls 1..calls (it wraps at 10000)."""
    return [base + (PORT_STEP * n) % 10000 for n in range(calls)]


def ulaw(sample: int) -> int:
    """One 16-bit linear sample as a G.711 mu-law byte (ITU-T G.711, biased segments)."""
    sign = 0x80 if sample < 0 else 0
    mag = min(abs(sample), 32635) + 0x84
    exponent = 7
    while exponent > 0 and not mag & (0x4000 >> (7 - exponent)):
        exponent -= 1
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def tone_payloads(hz: int, packets: int) -> list[bytes]:
    """G.711 mu-law frames of 20 ms of a sine of hz (a 1-s period repeats)."""
    per_second = [ulaw(round(0.3 * 32767 * math.sin(2 * math.pi * hz * i / SAMPLE_RATE)))
                  for i in range(SAMPLE_RATE)]
    frame = SAMPLE_RATE * PTIME_MS // 1000
    second = bytes(per_second)
    frames = [second[i:i + frame] for i in range(0, SAMPLE_RATE, frame)]
    return [frames[i % len(frames)] for i in range(packets)]


def write_media(path: Path, seconds: float, hz: int = 440, ssrc: int = 0x4E41544C) -> int:
    """An Ethernet pcap of one PCMU RTP stream, 50 packets/s for `seconds` (what SIPp's
    play_pcap_audio sends; it rewrites addresses and ports). Returns the packet count."""
    n = int(seconds * 1000 / PTIME_MS)
    frame = SAMPLE_RATE * PTIME_MS // 1000
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, payload in enumerate(tone_payloads(hz, n)):
        rtp = struct.pack("!BBHII", 0x80, 0, i & 0xFFFF, i * frame, ssrc) + payload
        udp = struct.pack("!HHHH", 6000, 6000, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
                         bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])) + udp
        eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + ip
        t_us = i * PTIME_MS * 1000
        out.append(struct.pack("<IIII", t_us // 1_000_000, t_us % 1_000_000, len(eth), len(eth)))
        out.append(eth)
    path.write_bytes(b"".join(out))
    return n


@dataclass(frozen=True)
class SippSide:
    """One SIPp instance: its host address, extension, password and public address."""
    ip: str
    ext: str
    password: str
    public_ip: str
    pbx: str  # ip:port of its PBX


def _common(side: SippSide, workdir: Path, timeout_s: float) -> list[str]:
    return ["-i", side.ip, "-mi", side.ip, "-mp", str(MEDIA_PORT),
            "-key", "public_ip", side.public_ip, "-key", "caller", side.ext,
            "-au", side.ext, "-ap", side.password,
            "-nostdin", "-trace_stat", "-stf", str(workdir / "stat.csv"), "-fd", "1",
            "-trace_counts", "-trace_err", "-timeout", f"{int(timeout_s)}s",
            "-timeout_error", "-max_recv_loops", "10000", "-max_sched_loops", "10000"]


def register_args(side: SippSide, workdir: Path, contact_port: int) -> list[str]:
    """REGISTER side.ext at its PBX (Contact: the SIPp instance on contact_port); exits."""
    return [SIPP, side.pbx, "-sf", str(SCENARIO_DIR / "register.xml"), "-i", side.ip,
            "-p", str(contact_port + 1), "-key", "caller", side.ext,
            "-key", "contact_port", str(contact_port), "-au", side.ext, "-ap", side.password,
            "-m", "1", "-nostdin", "-timeout", "5s", "-timeout_error",
            "-trace_err", "-error_file", str(workdir / "register-errors.log")]


def uas_args(side: SippSide, workdir: Path, calls: int, port: int, timeout_s: float) -> list[str]:
    return [SIPP, "-sf", str(SCENARIO_DIR / "uas.xml"), "-p", str(port), "-s", side.ext,
            "-m", str(calls), *_common(side, workdir, timeout_s)]


def uac_args(side: SippSide, workdir: Path, callee: str, calls: int, rate: float,
             hold_ms: int, port: int, timeout_s: float) -> list[str]:
    return [SIPP, side.pbx, "-sf", str(SCENARIO_DIR / "uac.xml"), "-p", str(port),
            "-s", callee, "-m", str(calls), "-l", str(calls), "-r", f"{rate:g}",
            "-d", str(hold_ms), "-trace_rtt", "-rtt_freq", "1",
            *_common(side, workdir, timeout_s)]


def map_ports(bind: str, stun: tuple[str, int], ports: list[int],
              timeout: float = STUN_TIMEOUT_S) -> list[tuple[int, str, int]]:
    """(local port, mapped ip, mapped port) of a STUN Binding from each port; a port with no
    answer raises OSError (one line)."""
    out = []
    for port in ports:
        tid = stunmsg.new_transaction_id()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((bind, port))
            sock.connect(stun)
            deadline = time.monotonic() + timeout
            answer = None
            while answer is None and time.monotonic() < deadline:
                sock.send(stunmsg.binding_request(tid))
                sock.settimeout(0.25)
                try:
                    data = sock.recv(2048)
                except TimeoutError:
                    continue
                if stunmsg.parse_message(data).transaction_id == tid:
                    answer = stunmsg.parse_binding_response(data, tid)
            if answer is None:
                raise OSError(f"no STUN answer from {stun[0]}:{stun[1]} for port {port}")
            out.append((port, answer[0], answer[1]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.sippload",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    mp = sub.add_parser("map", help="STUN Binding from each port; JSON lines out")
    mp.add_argument("--bind", required=True)
    mp.add_argument("--stun", required=True, help="IP:PORT")
    mp.add_argument("--ports", type=int, nargs="+", required=True)
    args = parser.parse_args(argv)
    host, _, port = args.stun.rpartition(":")
    try:
        rows = map_ports(args.bind, (host, int(port)), args.ports)
    except (OSError, ValueError) as exc:
        print(f"sippload: {exc}", file=sys.stderr)
        return 1
    for local, ip, mapped in rows:
        print(json.dumps({"port": local, "mapped_ip": ip, "mapped_port": mapped}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
