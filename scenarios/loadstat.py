"""CPU of a load step's processes, read from /proc while the step runs.

Every process of a scenario names a path under its folder on its command line (daemon configs,
pcaps, agent workdirs, SIPp's stat file), so the sampler finds them by that path, names each by
its role ("kamailio pbx1", "sipp uac", "pjsua2 1002", "tcpdump p2900-eth0", "coturn") and reads
utime + stime (/proc/<pid>/stat) once a second. Per role: CPU seconds during the step and the
busiest second (percent of one core; 100 % = one core saturated). Softirq time is host-wide
(/proc/stat): the routers forward in softirq context, which no namespace owns.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

TICK = os.sysconf("SC_CLK_TCK")
INTERVAL_S = 1.0


def _argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _ticks(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def _after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1] if flag in argv[:-1] else "?"


def label(argv: list[str], folder: str) -> str | None:
    """A process's role in the step, or None if it is not one of the step's."""
    if not any(folder in a for a in argv):
        return None
    prog = Path(argv[0]).name
    if prog == "kamailio":
        return f"kamailio {Path(_after(argv, '-f')).parent.name}"
    if prog == "turnserver":
        return "coturn"
    if prog == "sipp":
        return f"sipp {Path(_after(argv, '-sf')).stem}"
    if prog == "tcpdump":
        return f"tcpdump {_after(argv, '-i')}"
    if prog.startswith("python") and "-m" in argv:
        module = _after(argv, "-m").rsplit(".", 1)[-1]
        agent = {"sipagent": "pjsua2", "baresip_agent": "baresip"}.get(module, module)
        return f"{agent} {_after(argv, '--ext')}" if "--ext" in argv else agent
    return prog


def host_times() -> dict[str, float]:
    """Host-wide CPU seconds from /proc/stat: softirq and busy (all but idle and iowait)."""
    vals = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    busy = sum(vals) - vals[3] - vals[4]
    return {"softirq_s": vals[6] / TICK, "busy_s": busy / TICK}


class Sampler:
    """Samples the step's processes in a thread; `stop()` returns the figures."""

    def __init__(self, folder: Path, interval: float = INTERVAL_S):
        self.folder, self.interval = str(folder), interval
        self.first: dict[int, int] = {}  # pid -> ticks when first seen (0 if born later)
        self.last: dict[int, int] = {}
        self.role: dict[int, str] = {}
        self.peak: dict[str, float] = {}  # role -> busiest interval, percent of one core
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = 0.0
        self._host0: dict[str, float] = {}

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._host0 = host_times()
        self._sample(initial=True)
        self._thread.start()

    def _sample(self, initial: bool = False) -> None:
        before = dict(self.last)
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            if pid not in self.role:
                role = label(_argv(pid), self.folder)
                if role is None:
                    continue
                self.role[pid] = role
            ticks = _ticks(pid)
            if ticks is None:
                continue
            self.first.setdefault(pid, ticks if initial else 0)
            self.last[pid] = ticks
        if initial:
            return
        per_role: dict[str, int] = {}
        for pid, ticks in self.last.items():
            gained = ticks - before.get(pid, self.first[pid])
            per_role[self.role[pid]] = per_role.get(self.role[pid], 0) + gained
        for role, gained in per_role.items():
            pct = 100.0 * gained / TICK / self.interval
            self.peak[role] = max(self.peak.get(role, 0.0), pct)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(timeout=5.0)
        wall = time.monotonic() - self._t0
        host = host_times()
        cpu: dict[str, float] = {}
        for pid, ticks in self.last.items():
            role = self.role[pid]
            cpu[role] = cpu.get(role, 0.0) + (ticks - self.first[pid]) / TICK
        return {"wall_s": round(wall, 2),
                "cpu_s": {r: round(v, 2) for r, v in sorted(cpu.items())},
                "peak_pct": {r: round(v, 1) for r, v in sorted(self.peak.items())},
                "host": {k: round(host[k] - self._host0[k], 2) for k in host},
                "cores": os.cpu_count() or 1}
