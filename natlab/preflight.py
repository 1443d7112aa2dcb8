"""Checks before anything starts: root, the tools, and the kernel features the testbed uses."""
from __future__ import annotations

import os
import shutil
import subprocess

from natlab.errors import InputError

TOOLS = ("mnexec", "kamailio", "turnserver", "tcpdump", "brctl", "iptables", "ip", "ifconfig",
         "sysctl", "unshare")


class PreflightError(InputError):
    """Not root, a missing tool or kernel feature: nothing was started."""


def _kernel_check(args: list[str], what: str) -> None:
    """Run a command in a throwaway network namespace; failure means a missing kernel feature."""
    res = subprocess.run(["unshare", "--net", *args], capture_output=True, text=True, timeout=10)
    if res.returncode != 0:
        first = (res.stderr or res.stdout).strip().splitlines()[:1]
        raise PreflightError(f"kernel lacks {what}: {' '.join(args)}: {first[0] if first else '?'}")


def preflight(needs: dict[str, str] | None = None) -> None:
    """Root, the tools every run uses, and `needs` (tool -> the scenario that needs it)."""
    if os.geteuid() != 0:
        raise PreflightError("natlab needs root (network namespaces, bridges): run it with sudo")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise PreflightError(f"missing tools: {', '.join(missing)} (run: sudo make setup)")
    for tool, who in (needs or {}).items():
        if shutil.which(tool) is None:
            raise PreflightError(f"{who} needs {tool}, which is not installed "
                                 "(run: sudo make setup)")
    if not os.path.exists("/proc/self/ns/net"):
        raise PreflightError("kernel lacks network namespaces")
    _kernel_check(["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-j", "MASQUERADE"],
                  "iptables NAT (MASQUERADE)")
    _kernel_check(["iptables", "-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED",
                   "-j", "ACCEPT"], "the conntrack match")
    _kernel_check(["ip", "link", "add", "natlab-pf0", "type", "veth", "peer", "name", "natlab-pf1"],
                  "veth pairs")
