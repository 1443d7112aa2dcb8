"""rtpengine in userspace mode (no kernel forwarding table), controlled over the ng protocol.

    rtpengine -f -E -t -1 -i IP -n IP:2223 --port-min .. --port-max .. --config-file=none

Readiness: an ng `ping` (bencoded, over UDP, behind a cookie) answered by `pong`.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from services.daemon import Daemon
from services.host import Host

NG_PORT = 2223


class BencodeError(ValueError):
    pass


def bencode(value: object) -> bytes:
    """Encode str/bytes/int/list/dict (keys sorted, as bencode requires)."""
    if isinstance(value, bool):
        raise BencodeError("bencode has no booleans")
    if isinstance(value, int):
        return f"i{value}e".encode()
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return str(len(value)).encode() + b":" + value
    if isinstance(value, list | tuple):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    raise BencodeError(f"cannot bencode {type(value).__name__}")


def _decode(data: bytes, pos: int) -> tuple[object, int]:
    if pos >= len(data):
        raise BencodeError("truncated bencode")
    head = data[pos:pos + 1]
    if head == b"i":
        end = data.index(b"e", pos)
        return int(data[pos + 1:end]), end + 1
    if head in (b"l", b"d"):
        items: list[object] = []
        pos += 1
        while data[pos:pos + 1] != b"e":
            if pos >= len(data):
                raise BencodeError("unterminated list or dict")
            item, pos = _decode(data, pos)
            items.append(item)
        if head == b"l":
            return items, pos + 1
        if len(items) % 2:
            raise BencodeError("dict with a key and no value")
        return {_text(k): v for k, v in zip(items[::2], items[1::2], strict=True)}, pos + 1
    if head.isdigit():
        colon = data.index(b":", pos)
        size = int(data[pos:colon])
        end = colon + 1 + size
        if end > len(data):
            raise BencodeError("string overruns the data")
        return data[colon + 1:end], end
    raise BencodeError(f"unexpected byte {head!r} at {pos}")


def _text(key: object) -> str:
    if not isinstance(key, bytes):
        raise BencodeError("dict key is not a string")
    return key.decode()


def bdecode(data: bytes) -> object:
    try:
        value, end = _decode(data, 0)
    except (ValueError, IndexError) as exc:
        raise BencodeError(f"bad bencode: {exc}") from None
    if end != len(data):
        raise BencodeError(f"{len(data) - end} trailing bytes after bencode")
    return value


def ng_request(cookie: str, command: dict[str, object]) -> bytes:
    return cookie.encode() + b" " + bencode(command)


def ng_reply(data: bytes, cookie: str) -> dict[str, object]:
    """The reply dict of the ng message carrying ``cookie``."""
    got, sep, body = data.partition(b" ")
    if not sep or got.decode(errors="replace") != cookie:
        raise BencodeError("ng reply with another cookie")
    value = bdecode(body)
    if not isinstance(value, dict):
        raise BencodeError("ng reply is not a dict")
    return value


def ng_ping(ip: str, port: int = NG_PORT, timeout: float = 0.5) -> bool:
    """One ng `ping`; True if `pong` comes back within timeout."""
    cookie = os.urandom(6).hex()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((ip, port))
            sock.send(ng_request(cookie, {"command": "ping"}))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                try:
                    reply = ng_reply(sock.recv(65535), cookie)
                except BencodeError:
                    continue
                return reply.get("result") == b"pong"
        except OSError:
            return False
    return False


@dataclass(frozen=True)
class RtpengineOptions:
    ip: str  # media and control address
    ng_port: int = NG_PORT
    port_min: int = 30000
    port_max: int = 30100
    name: str = "rtpengine"
    log_level: int = 6
    # a phone behind NAT is reached where its packets come from, from the first packet on
    endpoint_learning: str = "immediate"
    delete_delay_s: int = 0  # final per-call statistics at once, not 30 s later

    def __post_init__(self) -> None:
        if not 1024 <= self.port_min < self.port_max <= 65535:
            raise ValueError(f"bad media port range {self.port_min}..{self.port_max}")


class Rtpengine(Daemon):
    """rtpengine in the foreground, logging to stderr (into workdir/<name>.log)."""

    def __init__(self, host: Host, workdir: Path, options: RtpengineOptions) -> None:
        super().__init__(host, workdir)
        self.options = options
        self.name = options.name

    def render(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)  # no config file: all on the command line

    def command(self) -> list[str]:
        o = self.options
        return ["rtpengine", "-f", "-E", "-t", "-1", "-i", o.ip,
                "-n", f"{o.ip}:{o.ng_port}", "--port-min", str(o.port_min),
                "--port-max", str(o.port_max), "-L", str(o.log_level),
                f"--endpoint-learning={o.endpoint_learning}",
                f"--delete-delay={o.delete_delay_s}",
                f"--pidfile={self.workdir / (self.name + '.pid')}", "--config-file=none"]

    def probe(self) -> bool:
        # The probe runs in this process; the daemon is in the host's namespace.
        from services.probe import run_in_host

        return run_in_host(self.host, "ng-ping", self.options.ip, self.options.ng_port,
                           0.5) is not None
