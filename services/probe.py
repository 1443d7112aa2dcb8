"""One-shot network probes, usable in-process or as a CLI inside a namespace.

    python -m services.probe stun HOST PORT [--timeout S] [--bind IP]
    python -m services.probe sip-options HOST PORT [--timeout S] [--bind IP]
    python -m services.probe ng-ping HOST PORT [--timeout S]      (rtpengine's ng protocol)

Success prints one JSON line and exits 0; failure prints one line on stderr and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from services import stunmsg
from services.host import Host

RETRANSMIT_INTERVAL = 0.25  # seconds
T = TypeVar("T")


class ProbeError(Exception):
    """The probe got no usable answer; the message is one line."""


def _transact(host: str, port: int, timeout: float, bind: str | None,
              request: Callable[[str, int], bytes],
              accept: Callable[[bytes], T | None]) -> T:
    """Send ``request(local_ip, local_port)`` over UDP, retransmitting, until ``accept``
    returns a result (None = not ours / not final, keep waiting) or the deadline passes."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            if bind:
                sock.bind((bind, 0))
            sock.connect((host, port))  # connected: ICMP port unreachable is reported
        except OSError as exc:
            raise ProbeError(f"cannot reach {host}:{port}: {exc.strerror or exc}") from exc
        local_ip, local_port = sock.getsockname()[:2]
        payload = request(local_ip, local_port)
        deadline = time.monotonic() + timeout
        next_send = 0.0
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise ProbeError(f"no answer from {host}:{port} within {timeout:g} s")
            try:
                if now >= next_send:
                    sock.send(payload)
                    next_send = now + RETRANSMIT_INTERVAL
                sock.settimeout(max(0.001, min(next_send, deadline) - now))
                data = sock.recv(65535)
            except TimeoutError:
                continue
            except ConnectionRefusedError as exc:
                raise ProbeError(f"{host}:{port} refused (ICMP port unreachable)") from exc
            result = accept(data)
            if result is not None:
                return result


def stun_binding(host: str, port: int, timeout: float = 1.0,
                 bind: str | None = None) -> tuple[str, int]:
    """The (ip, port) the STUN server at host:port sees for us."""
    tid = stunmsg.new_transaction_id()

    def accept(data: bytes) -> tuple[str, int] | None:
        try:
            if stunmsg.parse_message(data).transaction_id != tid:
                return None  # a late answer to someone else
            return stunmsg.parse_binding_response(data, tid)
        except ValueError as exc:
            raise ProbeError(f"bad STUN response from {host}:{port}: {exc}") from exc

    return _transact(host, port, timeout, bind, lambda _ip, _port: stunmsg.binding_request(tid),
                     accept)


def _token() -> str:
    return os.urandom(6).hex()


def _hostport(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def options_request(host: str, port: int, local_ip: str, local_port: int,
                    branch: str, tag: str, call_id: str) -> bytes:
    """A SIP OPTIONS request to the server itself (no user part)."""
    local = _hostport(local_ip, local_port)
    target = _hostport(host, port)
    lines = [
        f"OPTIONS sip:{target} SIP/2.0",
        f"Via: SIP/2.0/UDP {local};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:probe@{local}>;tag={tag}",
        f"To: <sip:{target}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 OPTIONS",
        f"Contact: <sip:probe@{local}>",
        "User-Agent: natlab-probe",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _header(message: str, long_name: str, short_name: str) -> str | None:
    for line in message.split("\r\n")[1:]:
        if not line:
            break
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() in (long_name, short_name):
            return value.strip()
    return None


def sip_options(host: str, port: int, timeout: float = 1.0, bind: str | None = None) -> int:
    """Send SIP OPTIONS over UDP and return the final status code."""
    branch, tag, call_id = "z9hG4bK" + _token(), _token(), _token()

    def request(local_ip: str, local_port: int) -> bytes:
        return options_request(host, port, local_ip, local_port, branch, tag, call_id)

    def accept(data: bytes) -> int | None:
        text = data.decode("utf-8", "replace")
        parts = text.split(" ", 2)
        if len(parts) < 2 or parts[0] != "SIP/2.0" or not parts[1].isdigit():
            return None  # not a response
        if _header(text, "call-id", "i") != call_id:
            return None
        status = int(parts[1])
        return status if status >= 200 else None

    return _transact(host, port, timeout, bind, request, accept)


def run_in_host(host: Host, kind: str, ip: str, port: int,
                timeout: float) -> dict[str, Any] | None:
    """Run this CLI inside ``host`` (its namespace); the JSON result, or None on failure."""
    args = [sys.executable, "-m", "services.probe", kind, ip, str(port), "--timeout", str(timeout)]
    proc = host.popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, cwd=str(Path(__file__).resolve().parent.parent))
    try:
        out, _ = proc.communicate(timeout=timeout + 5.0)  # + interpreter start-up
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None
    if proc.returncode != 0:
        return None
    try:
        result: dict[str, Any] = json.loads(out)
    except ValueError:
        return None
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["stun", "sip-options", "ng-ping"])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds (default 1)")
    parser.add_argument("--bind", default=None, help="local source IP")
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        if args.kind == "stun":
            ip, port = stun_binding(args.host, args.port, args.timeout, args.bind)
            result: dict[str, object] = {"mapped": _hostport(ip, port)}
        elif args.kind == "ng-ping":
            from services.rtpengine import ng_ping

            if not ng_ping(args.host, args.port, args.timeout):
                raise ProbeError(f"no pong from {args.host}:{args.port}")
            result = {"result": "pong"}
        else:
            result = {"status": sip_options(args.host, args.port, args.timeout, args.bind)}
    except (ProbeError, OSError) as exc:
        print(f"{args.kind}: {exc}", file=sys.stderr)
        return 1
    result["rtt_ms"] = round((time.monotonic() - start) * 1000, 3)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
