"""Run one scenario: topology → captures → services → agents → teardown. Analysis comes later.

Each scenario gets a fresh network (fresh conntrack tables) and fresh daemons, so scenarios
cannot leak state into each other. Every wait has a deadline.
"""
from __future__ import annotations

import json
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capture.tcpdump import start_captures
from scenarios.agentproc import STUN_PORT, call_dir
from scenarios.calls import run_round
from scenarios.model import Call, Scenario
from scenarios.wan import wan_profile
from services.coturn import Coturn, CoturnOptions
from services.daemon import Daemon
from services.kamailio import Kamailio, PbxOptions, RingGroup, TrunkMode
from topology.net import Network
from topology.plan import Lan, Plan, phone_name
from topology.router import PortForward

READY_TIMEOUT = 10.0


@dataclass
class RawRun:
    """What one scenario left on disk, before analysis."""
    scenario: Scenario
    call: Call
    dir: Path
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)  # caller/callee -> report
    pcaps: dict[str, Path] = field(default_factory=dict)  # "r1-lan" -> path
    seconds: float = 0.0


def pbx_options(plan: Plan, lan: Lan, trunk: str, sc: Scenario | None = None) -> PbxOptions:
    peer = plan.other(lan)
    groups: tuple[RingGroup, ...] = ()
    ring = sc.ring if sc is not None else None
    if ring is not None and ring.ext.startswith(lan.prefix):
        groups = (RingGroup(ring.ext, ring.members, ring.strategy, ring.ring_s),)
    return PbxOptions(name=lan.pbx_name, lan_ip=lan.pbx, public_ip=lan.wan_ip,
                      local_prefix=lan.prefix, peer_prefix=peer.prefix,
                      peer_public_ip=peer.wan_ip, trunk=TrunkMode(trunk), ring_groups=groups)


def port_forwards(plan: Plan, trunk: str) -> dict[str, PortForward | None]:
    out: dict[str, PortForward | None] = {}
    for lan in plan.lans:
        port = pbx_options(plan, lan, trunk).forwarded_port()
        out[lan.name] = PortForward(port, lan.pbx) if port else None
    return out


def _daemons(net: Network, plan: Plan, sc: Scenario, outdir: Path) -> list[Daemon]:
    daemons: list[Daemon] = [Coturn(net.stun, outdir / "stun",
                                    CoturnOptions(listen_ips=(plan.servers.stun,), port=STUN_PORT))]
    for lan in plan.lans:
        daemons.append(Kamailio(net.host(lan.pbx_name), outdir / lan.pbx_name,
                                pbx_options(plan, lan, sc.trunk, sc)))
    return daemons


def capture_points(plan: Plan, sc: Scenario, calls: list[Call]) -> list[tuple[str, str, str]]:
    """(node, interface, pcap name): both sides of both routers, both PBXs, the phones."""
    points = []
    for lan in plan.lans:
        for side in ("lan", "wan"):
            name = f"{lan.router_name}-{side}"
            points.append((lan.router_name, name, name))
        points.append((lan.pbx_name, f"{lan.pbx_name}-eth0", lan.pbx_name))
    for ext in sorted(scenario_phones(sc, calls)):
        points.append((phone_name(ext), f"{phone_name(ext)}-eth0", phone_name(ext)))
    return points


def scenario_phones(sc: Scenario, calls: list[Call]) -> set[str]:
    phones = {e for c in calls for e in (c.caller, c.callee)}
    if sc.ring is not None:
        phones = (phones - {sc.ring.ext}) | set(sc.ring.members)
    if sc.conference is not None:
        phones = set(sc.conference.participants)
    return phones


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


def run_scenario(plan: Plan, sc: Scenario, outdir: Path) -> list[RawRun]:
    """One network and one set of daemons per scenario; calls run in rounds, each round with
    its own captures; returns one RawRun per call."""
    outdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    raws: list[RawRun] = []
    with Network(plan, port_forwards(plan, sc.trunk)) as net, ExitStack() as stack:
        start_services(stack, net, plan, sc, outdir)
        stack.enter_context(wan_profile(net, plan, sc, outdir))
        for rnd in range(1, sc.rounds + 1):
            calls = [c for c in sc.call_list() if c.round == rnd]
            rdir = round_dir(sc, outdir, rnd)
            t0 = time.monotonic()
            with ExitStack() as round_stack:
                specs = [(net.host(node), intf, rdir / f"{key}.pcap")
                         for node, intf, key in capture_points(plan, sc, calls)]
                for cap in start_captures(specs):
                    round_stack.callback(cap.stop)
                run_round(round_stack, net, plan, sc, calls, outdir)
            for call in calls:
                raw = load_raw(sc, call, outdir)
                raw.seconds = time.monotonic() - (started if sc.calls == 1 else t0)
                raws.append(raw)
    return raws


def round_dir(sc: Scenario, outdir: Path, rnd: int) -> Path:
    path = outdir if sc.calls == 1 else outdir / f"round-{rnd:02d}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_raw(sc: Scenario, call: Call, outdir: Path) -> RawRun:
    """A call's outputs as found on disk (agent reports and its round's pcaps)."""
    cdir = call_dir(sc, call, outdir)
    raw = RawRun(scenario=sc, call=call, dir=cdir)
    for path in sorted((cdir / "agents").glob("*.json")):
        raw.reports[path.stem] = json.loads(path.read_text())  # caller, callee, member-2001...
    pdir = outdir if sc.calls == 1 else outdir / f"round-{call.round:02d}"
    raw.pcaps = {p.stem: p for p in sorted(pdir.glob("*.pcap"))}
    return raw
