"""Assertions shared by the tests."""
from __future__ import annotations

import os
import subprocess
from typing import Any

from natlab.guard import leftover_links, our_processes

DAEMONS = "kamailio|turnserver|agents.sipagent|tcpdump"


def ping(host: Any, addr: str) -> bool:
    out = host.cmd(f"ping -c1 -W1 {addr} >/dev/null 2>&1; echo $?")
    return out.strip().endswith("0")


def namespaced_daemons() -> list[str]:
    """Our kinds of process running in a network namespace other than the root one."""
    root_ns = os.readlink("/proc/self/ns/net")
    found = []
    for pid in subprocess.run(["pgrep", "-f", DAEMONS], capture_output=True,
                              text=True).stdout.split():
        try:
            if os.readlink(f"/proc/{pid}/ns/net") != root_ns:
                found.append(pid)
        except OSError:
            continue
    return found


def assert_nothing_left(phones: list[str]) -> None:
    assert leftover_links() == [], f"links left behind: {leftover_links()}"
    procs = our_processes(None, phones)
    assert procs == [], f"namespace shells left behind: {procs}"
    daemons = namespaced_daemons()
    assert daemons == [], f"daemons left behind: {daemons}"
