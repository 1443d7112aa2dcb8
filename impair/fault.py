"""Faults injected into a running testbed: a router reboot, a PBX restart, coturn down, a WAN
link down. Each is bounded in time, touches only the emulation's own nodes, and writes what it
did (every command, its exit code, epoch times) to the scenario's fault.json, which is all the
analysis (analysis.fault) reads.

    router-reboot   r1/r2: forwarding off, rules and conntrack flushed, rules reapplied,
                    after down_s conntrack flushed again and forwarding back on
    pbx-restart     pbx1/pbx2: kamailio killed (SIGKILL), after down_s started again
    coturn-down     the STUN/TURN server stopped before the phones start
    wan-link-down   the core's link toward r1/r2 down for down_s, then up
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FILE = "fault.json"
WHATS = ("router-reboot", "pbx-restart", "coturn-down", "wan-link-down")
DEFAULT_DOWN_S = {"router-reboot": 1.0, "pbx-restart": 0.5, "coturn-down": 0.0,
                  "wan-link-down": 2.0}
CMD_TIMEOUT_S = 10.0
PROBE_TIMEOUT_S = 2.0  # a sipsak OPTIONS probe
FLUSH = ("iptables -F", "iptables -X", "iptables -t nat -F", "iptables -t nat -X",
         "iptables -t raw -F", "iptables -t raw -X")


@dataclass(frozen=True)
class FaultSpec:
    """What the scenario asks for: `fault = { what = "router-reboot", target = "r1", at_s = 4 }`."""
    what: str
    target: str  # r1 | r2 (router, link), pbx1 | pbx2, stun (coturn)
    at_s: float  # seconds after the round's phones start (0 for coturn-down: before)
    down_s: float  # how long the fault lasts


@dataclass
class Step:
    t: float  # epoch seconds when it ran
    node: str
    cmd: str
    rc: int
    out: str = ""  # first line of its output, if any
    probe: bool = False  # an observation (its exit code is a finding), not part of the fault


@dataclass
class FaultLog:
    """fault.json: the fault as it happened."""
    what: str
    target: str
    at_s: float
    down_s: float
    planned: float = 0.0  # epoch seconds the fault was due
    start: float | None = None  # epoch seconds of its first action
    restored: float | None = None  # epoch seconds the last restoring action finished
    steps: list[Step] = field(default_factory=list)
    error: str | None = None

    def save(self, folder: Path) -> None:
        (folder / FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")


class Injector:
    """Runs one fault in a thread (or at once for coturn-down) and records it."""

    def __init__(self, spec: FaultSpec, net: Any, daemons: list[Any], folder: Path,
                 probe: tuple[str, str] | None = None):
        """`probe`: (host, SIP URI) asked by OPTIONS before and after a PBX restart (does the
        PBX still know the phone? sipsak's exit code and the PBX capture say)."""
        self.spec, self.net, self.daemons, self.folder = spec, net, daemons, folder
        self.probe = probe
        self.log = FaultLog(spec.what, spec.target, spec.at_s, spec.down_s)
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()

    def schedule(self) -> None:
        """coturn-down happens now; the others at_s from now, in a thread."""
        self.log.planned = time.time() + self.spec.at_s
        if self.spec.what == "coturn-down":
            self._run()
            return
        self._thread = threading.Thread(target=self._run, name="natlab-fault", daemon=True)
        self._thread.start()

    def finish(self, timeout: float = 30.0) -> None:
        """Wait for the fault to be over (restored), then write fault.json."""
        if self._thread is not None:
            if time.time() < self.log.planned:
                self._cancel.set()  # the round ended first: no fault
            self._thread.join(timeout)
            if self._thread.is_alive():
                self.log.error = self.log.error or f"fault still running after {timeout:g} s"
        self.log.save(self.folder)

    def _run(self) -> None:
        if self._cancel.wait(max(0.0, self.log.planned - time.time())):
            self.log.error = "the round ended before the fault was due"
            return
        try:
            {"router-reboot": self._router_reboot, "pbx-restart": self._pbx_restart,
             "coturn-down": self._coturn_down, "wan-link-down": self._link_down,
             }[self.spec.what]()
        except Exception as exc:  # recorded; the analysis reports it
            self.log.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__

    def _sh(self, node: Any, cmd: str, probe: bool = False) -> int:
        """One command in a node's namespace, recorded with its exit code."""
        t = time.time()
        if self.log.start is None and not probe:
            self.log.start = t
        proc = node.popen(["sh", "-c", cmd], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out, _ = proc.communicate(timeout=CMD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        text = out.decode(errors="replace").strip().splitlines()
        self.log.steps.append(Step(t, node.name, cmd, proc.returncode, text[0] if text else "",
                                   probe))
        return proc.returncode

    def _note(self, node: str, what: str) -> None:
        t = time.time()
        if self.log.start is None:
            self.log.start = t
        self.log.steps.append(Step(t, node, what, 0))

    def _sleep_until(self, t: float) -> None:
        time.sleep(max(0.0, t - time.time()))

    def _router_reboot(self) -> None:
        lan = next(lan for lan in self.net.plan.lans if lan.router_name == self.spec.target)
        node = self.net.host(lan.router_name)
        rules = self.net.rules[lan.name]
        self._sh(node, "sysctl -qw net.ipv4.ip_forward=0")
        back = (self.log.start or time.time()) + self.spec.down_s
        for cmd in FLUSH:
            self._sh(node, cmd)
        if rules.nft:
            self._sh(node, "nft delete table ip natlab")
        self._sh(node, "conntrack -F")
        for cmd in rules.commands:  # the router boots with its configured rules
            self._sh(node, cmd)
        if rules.nft:
            with tempfile.NamedTemporaryFile("w", prefix=f"natlab-{node.name}-",
                                             suffix=".nft") as f:
                f.write(rules.nft)
                f.flush()
                self._sh(node, f"nft -f {f.name}")
        self._sleep_until(back)
        self._sh(node, "conntrack -F")  # what came in while it was down leaves no state
        self._sh(node, "sysctl -qw net.ipv4.ip_forward=1")
        self.log.restored = time.time()

    def _pbx_restart(self) -> None:
        pbx = next(d for d in self.daemons if d.name == self.spec.target)
        pid = pbx.pid
        if pid is None:
            raise RuntimeError(f"{self.spec.target} is not running")
        self._options()
        self._note(self.spec.target, f"kill -KILL -{pid} (kamailio and its children)")
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while pbx.running and time.monotonic() < deadline:
            time.sleep(0.01)
        self._sleep_until((self.log.start or time.time()) + self.spec.down_s)
        self._note(self.spec.target, " ".join(pbx.command()))
        pbx.start()
        pbx.wait_ready(10.0)
        self._note(self.spec.target, f"ready (SIP OPTIONS answered), pid {pbx.pid}")
        self.log.restored = time.time()
        self._options()

    def _options(self) -> None:
        if self.probe is not None:
            host, uri = self.probe
            self._sh(self.net.host(host), f"timeout {PROBE_TIMEOUT_S:g} sipsak -s {uri}",
                     probe=True)

    def _coturn_down(self) -> None:
        stun = next(d for d in self.daemons if d.name == "coturn")
        pid = stun.pid
        self._note(stun.host.name, f"kill -TERM {pid} (turnserver)")
        stun.stop()
        self._note(stun.host.name, "turnserver stopped" if not stun.running else
                   "turnserver still running")

    def _link_down(self) -> None:
        core = self.net.host("core")
        intf = f"core-{self.spec.target}"
        self._sh(core, f"ip link set {intf} down")
        self._sleep_until((self.log.start or time.time()) + self.spec.down_s)
        self._sh(core, f"ip link set {intf} up")
        self.log.restored = time.time()
