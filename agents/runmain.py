"""What every agent process shares: a one-line usage error, stop on SIGTERM/SIGINT, run,
and always write the JSON report (atomically: a runner may be polling for it)."""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TypeVar


class UsageError(Exception):
    """A bad command line."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, no usage dump, no sys.exit
        raise UsageError(message)


def ipv4(text: str) -> str:
    """An argparse type: an IPv4 address."""
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IPv4 address: {text!r}") from None


def host_port(need_port: bool) -> Callable[[str], str]:
    """An argparse type: IP:PORT (need_port) or IP[:PORT]."""
    def check(text: str) -> str:
        host, sep, port = text.partition(":")
        ipv4(host)
        if need_port and not sep:
            raise argparse.ArgumentTypeError(f"expected IP:PORT, got {text!r}")
        if sep and not (port.isdigit() and 0 < int(port) < 65536):
            raise argparse.ArgumentTypeError(f"bad port in {text!r}")
        return text

    return check


def password(text: str) -> str:
    """An argparse type: a SIP digest password (never echoed back in the error)."""
    if not text or any(c.isspace() or c in "\"'\\" for c in text):
        raise argparse.ArgumentTypeError("bad --password: empty, or has space/quote/backslash")
    return text


def agent_parser(prog: str, description: str, *, ext_help: str, rtp_help: str,
                 pbx_required: bool = False, max_wait: float | None = None,
                 max_wait_help: str, workdir_help: str,
                 ready_help: str = "touched once registered (or at once without --pbx)",
                 stun_help: str, sip_help: str = "SIP UDP port (5060)") -> Parser:
    """The options every agent takes (pjsua2 phone, baresip phone, conference bridge);
    each agent adds its own, and a phone adds `add_phone_options`."""
    p = Parser(prog=prog, description=description)
    add = p.add_argument
    add("--ext", required=True, help=ext_help)
    add("--bind", required=True, type=ipv4, metavar="IP", help="local IPv4 address for SIP and RTP")
    add("--sip-port", type=positive(int), default=5060, metavar="PORT", help=sip_help)
    add("--rtp-port", type=positive(int), default=4000, metavar="PORT", help=rtp_help)
    add("--pbx", required=pbx_required, type=host_port(False), metavar="IP[:PORT]",
        help="registrar/proxy: REGISTER sip:EXT@PBX before anything else")
    add("--password", type=password, metavar="SECRET",
        help="digest password of EXT at the PBX (any realm); without it no credentials")
    add("--stun", type=host_port(True), metavar="IP:PORT", help=stun_help)
    add("--max-wait", type=positive(float), default=max_wait, metavar="S", help=max_wait_help)
    add("--workdir", type=Path, default=Path("."), metavar="DIR", help=workdir_help)
    add("--report", type=Path, metavar="PATH",
        help="JSON report path (<workdir>/<ext>-report.json)")
    add("--ready-file", type=Path, metavar="PATH", help=ready_help)
    return p


def add_phone_options(p: argparse.ArgumentParser, answer_delay: float,
                      duration_help: str, tone_help: str) -> None:
    """A phone's role (--call/--answer/--no-answer) and call options."""
    role = p.add_mutually_exclusive_group(required=True)
    role.add_argument("--call", metavar="TARGET",
                      help="call TARGET: an extension (sip:TARGET@PBX) or a full sip: URI")
    role.add_argument("--answer", action="store_true", help="answer one call: 180, then 200 OK")
    role.add_argument("--no-answer", action="store_true",
                      help="take one call: 180, ring until CANCEL/max-wait")
    p.add_argument("--answer-delay", type=float, default=answer_delay, metavar="S",
                   help=f"--answer: seconds between 180 Ringing and 200 OK ({answer_delay:g})")
    p.add_argument("--duration", type=positive(float), default=10.0, metavar="S",
                   help=duration_help)
    p.add_argument("--tone-hz", type=positive(float), metavar="HZ", help=tone_help)


def check_agent_args(args: argparse.Namespace) -> argparse.Namespace:
    """What every agent checks and fills in after parsing."""
    if args.password is not None and not args.pbx:
        raise UsageError("--password needs --pbx")
    if args.report is None:
        args.report = args.workdir / f"{args.ext}-report.json"
    return args


def check_phone_args(args: argparse.Namespace) -> argparse.Namespace:
    """What every phone agent (pjsua2, baresip) checks and fills in after parsing."""
    if args.call and not args.call.startswith("sip:") and not args.pbx:
        raise UsageError("--call EXT needs --pbx (or give a full sip: URI)")
    if args.answer_delay < 0:
        raise UsageError("--answer-delay must be >= 0")
    if args.tone_hz is not None and args.tone_hz >= 4000:
        raise UsageError("--tone-hz must be below 4000 (8 kHz sampling)")
    if args.max_wait is None:
        args.max_wait = args.duration + 8
    return check_agent_args(args)


class Registering(Protocol):
    """What the registration wait needs of an agent's report."""

    register_code: int | None
    error: str | None


def wait_registered(report: Registering, pump: Callable[[], None], now: Callable[[], float],
                    max_wait: float, stop: threading.Event,
                    gone: Callable[[], bool] = lambda: False) -> bool:
    """Pump until the REGISTER has its first final answer (report.register_code set by the
    agent's callback/event): True on 200; else report.error says why (signal, timeout,
    the UA gone, or the failure code) and False."""
    deadline = now() + max_wait
    while report.register_code is None:
        if stop.is_set():
            report.error = report.error or "stopped by signal before registration"
            return False
        if now() >= deadline or gone():
            report.error = report.error or "registration timed out"
            return False
        pump()
    if report.register_code != 200:
        report.error = f"registration failed: {report.register_code}"
        return False
    return True


def positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type: `kind`, and > 0."""
    def check(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0: {text}")
        return value

    return check


class Runnable(Protocol):
    def run(self) -> None: ...


T = TypeVar("T", bound=Runnable)


def write_json(data: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def install_stop_handlers(stop: threading.Event) -> dict[int, Any]:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}


def agent_main(prog: str, argv: list[str] | None,
               parse: Callable[[list[str] | None], argparse.Namespace],
               build: Callable[[argparse.Namespace, threading.Event], T],
               report: Callable[[T], dict[str, Any]],
               note_error: Callable[[T, str], None],
               errors: tuple[type[BaseException], ...],
               describe: Callable[[BaseException], str] = str) -> int:
    """0 when the agent ran as designed (whatever the call did), 2 for bad arguments,
    1 for an internal failure (the report is still written)."""
    try:
        args = parse(argv)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    stop = threading.Event()
    previous = install_stop_handlers(stop)
    agent = build(args, stop)
    status = 0
    try:
        agent.run()
    except errors as exc:
        text = describe(exc)
        note_error(agent, f"internal: {text}")
        print(f"{prog}: error: {text}", file=sys.stderr)
        status = 1
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    try:
        write_json(report(agent), args.report)
    except OSError as exc:
        print(f"{prog}: error: cannot write report: {exc}", file=sys.stderr)
        return 1
    return status
