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
    if args.report is None:
        args.report = args.workdir / f"{args.ext}-report.json"
    return args


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
