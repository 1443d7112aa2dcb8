"""What every agent process shares: a one-line usage error, stop on SIGTERM/SIGINT, run,
and always write the JSON report (atomically: a runner may be polling for it)."""
from __future__ import annotations

import argparse
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
