"""Where a daemon runs: anything with a name and a ``popen`` (a Mininet host fits)."""

from __future__ import annotations

import subprocess
from typing import Any, Protocol

from natlab import spawn


class Host(Protocol):
    """A place to run commands, e.g. a Mininet node (its ``popen`` enters the node's namespace)."""

    name: str

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]: ...


class LocalHost:
    """Runs commands in the current network namespace (tests, loopback)."""

    def __init__(self, name: str = "local") -> None:
        self.name = name

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        # Like Mininet's `mnexec -d`: own session, so a terminal's Ctrl-C is not forwarded.
        kwargs.setdefault("start_new_session", True)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return spawn.popen(args, **kwargs)  # dies with natlab, as on a Mininet host
