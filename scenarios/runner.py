"""Run one scenario: topology → captures → services → agents → teardown. Analysis comes later.

Each scenario gets a fresh network (fresh conntrack tables) and fresh daemons, so scenarios
cannot leak state into each other. Every wait has a deadline.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capture.tcpdump import start_captures
from scenarios.model import Scenario
from services.coturn import Coturn, CoturnOptions
from services.daemon import Daemon
from services.kamailio import Kamailio, PbxOptions, TrunkMode
from topology.net import Network
from topology.plan import Lan, Plan, phone_name
from topology.router import PortForward

STUN_PORT = 3478
READY_TIMEOUT = 10.0
CALLEE_GRACE = 1.0  # after the caller is done, the callee gets this long to finish


class RunError(RuntimeError):
    pass


@dataclass
class RawRun:
    """What one scenario left on disk, before analysis."""
    scenario: Scenario
    dir: Path
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)  # caller/callee -> report
    pcaps: dict[str, Path] = field(default_factory=dict)  # "r1-lan" -> path
    seconds: float = 0.0


def pbx_options(plan: Plan, lan: Lan, trunk: str) -> PbxOptions:
    peer = plan.other(lan)
    return PbxOptions(name=lan.pbx_name, lan_ip=lan.pbx, public_ip=lan.wan_ip,
                      local_prefix=lan.prefix, peer_prefix=peer.prefix,
                      peer_public_ip=peer.wan_ip, trunk=TrunkMode(trunk))


def port_forwards(plan: Plan, trunk: str) -> dict[str, PortForward | None]:
    out: dict[str, PortForward | None] = {}
    for lan in plan.lans:
        port = pbx_options(plan, lan, trunk).forwarded_port()
        out[lan.name] = PortForward(port, lan.pbx) if port else None
    return out


def agent_args(plan: Plan, sc: Scenario, ext: str, role: str, workdir: Path) -> list[str]:
    lan = plan.lan_of(ext)
    tone = plan.call.caller_tone_hz if role == "caller" else plan.call.callee_tone_hz
    args = [sys.executable, "-m", "agents.sipagent", "--ext", ext, "--bind", lan.phones[ext],
            "--pbx", f"{lan.pbx}:5060", "--duration", str(sc.duration_s),
            "--tone-hz", str(tone), "--workdir", str(workdir),
            "--report", str(workdir / f"{role}.json"),
            "--ready-file", str(workdir / f"{role}.ready")]
    args += ["--call", sc.callee] if role == "caller" else ["--answer"]
    args += ["--max-wait", str(sc.duration_s + 8)]
    if sc.stun:
        args += ["--stun", f"{plan.servers.stun}:{STUN_PORT}"]
    return args


def _wait_file(path: Path, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise RunError(f"{what} exited ({proc.returncode}) before it was ready; see its log")
        if time.monotonic() > deadline:
            raise RunError(f"{what} not ready after {timeout:.0f}s")
        time.sleep(0.02)


def _end(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait for an agent; past the deadline ask it to finish (on SIGTERM it hangs up and
    writes its report within ~2 s), and kill it only if it does not."""
    for sig, wait in ((None, timeout), (signal.SIGTERM, 8.0), (signal.SIGKILL, 3.0)):
        if sig is not None and proc.poll() is None:
            os.kill(proc.pid, sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _start_agent(host: Any, args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as fh:
        proc: subprocess.Popen[bytes] = host.popen(args, stdout=fh, stderr=subprocess.STDOUT)
    return proc


def _daemons(net: Network, plan: Plan, sc: Scenario, outdir: Path) -> list[Daemon]:
    daemons: list[Daemon] = [Coturn(net.stun, outdir / "stun",
                                    CoturnOptions(listen_ips=(plan.servers.stun,), port=STUN_PORT))]
    for lan in plan.lans:
        daemons.append(Kamailio(net.host(lan.pbx_name), outdir / lan.pbx_name,
                                pbx_options(plan, lan, sc.trunk)))
    return daemons


def capture_points(plan: Plan, sc: Scenario) -> list[tuple[str, str, str]]:
    """(node, interface, pcap name): both sides of both routers, both PBXs, both phones."""
    points = []
    for lan in plan.lans:
        for side in ("lan", "wan"):
            name = f"{lan.router_name}-{side}"
            points.append((lan.router_name, name, name))
        points.append((lan.pbx_name, f"{lan.pbx_name}-eth0", lan.pbx_name))
    for ext in (sc.caller, sc.callee):
        points.append((phone_name(ext), f"{phone_name(ext)}-eth0", phone_name(ext)))
    return points


def start_services(stack: ExitStack, net: Network, plan: Plan, sc: Scenario,
                   outdir: Path) -> list[Daemon]:
    """STUN server and both PBXs: render, check, start, then wait until each answers."""
    daemons = _daemons(net, plan, sc, outdir)
    for d in daemons:
        d.workdir.mkdir(parents=True, exist_ok=True)
        d.render()
        d.check()
        stack.callback(d.stop)
        d.start()
    for d in daemons:
        d.wait_ready(READY_TIMEOUT)
    return daemons


def run_scenario(plan: Plan, sc: Scenario, outdir: Path) -> RawRun:
    outdir.mkdir(parents=True, exist_ok=True)
    raw = RawRun(scenario=sc, dir=outdir)
    started = time.monotonic()
    with Network(plan, port_forwards(plan, sc.trunk)) as net, ExitStack() as stack:
        specs = []
        for node, intf, key in capture_points(plan, sc):
            raw.pcaps[key] = outdir / f"{key}.pcap"
            specs.append((net.host(node), intf, raw.pcaps[key]))
        for cap in start_captures(specs):
            stack.callback(cap.stop)
        start_services(stack, net, plan, sc, outdir)
        agents = outdir / "agents"
        agents.mkdir(exist_ok=True)
        callee = _start_agent(net.phone(sc.callee),
                              agent_args(plan, sc, sc.callee, "callee", agents),
                              agents / "callee.log")
        stack.callback(_end, callee, 0.1)
        _wait_file(agents / "callee.ready", callee, READY_TIMEOUT, f"callee agent {sc.callee}")
        caller = _start_agent(net.phone(sc.caller),
                              agent_args(plan, sc, sc.caller, "caller", agents),
                              agents / "caller.log")
        stack.callback(_end, caller, 0.1)
        _end(caller, sc.duration_s + 20)
        _end(callee, CALLEE_GRACE)
    loaded = load_raw(sc, outdir)
    loaded.seconds = time.monotonic() - started
    return loaded


def load_raw(sc: Scenario, outdir: Path) -> RawRun:
    """A scenario's outputs as found on disk (agent reports and pcaps)."""
    raw = RawRun(scenario=sc, dir=outdir)
    for role in ("caller", "callee"):
        path = outdir / "agents" / f"{role}.json"
        if path.exists():
            raw.reports[role] = json.loads(path.read_text())
    raw.pcaps = {p.stem: p for p in sorted(outdir.glob("*.pcap"))}
    return raw
