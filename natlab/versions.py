"""Versions of what a run used, for the run folder (versions.json)."""
from __future__ import annotations

import importlib.metadata
import platform
import subprocess

PACKAGES = ("kamailio", "coturn", "baresip", "tshark", "tcpdump", "mininet", "linphone-cli",
            "rtpengine-daemon", "sip-tester")


def _deb(package: str) -> str | None:
    try:
        res = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() if res.returncode == 0 and res.stdout.strip() else None


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {p: _deb(p) for p in PACKAGES}
    try:
        out["pjsua2"] = importlib.metadata.version("pjsua2-python")
    except importlib.metadata.PackageNotFoundError:
        out["pjsua2"] = None
    out["kernel"] = platform.release()
    out["python"] = platform.python_version()
    return out
