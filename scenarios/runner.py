"""Run one scenario: topology → services → WAN → rounds (captures + agents) → teardown.

Each scenario gets a fresh network (fresh conntrack tables) and fresh daemons, so scenarios
cannot leak state into each other. Every wait has a deadline. What ran is written to the
scenario's record (analysis.record), even when the run is interrupted or fails.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from analysis.record import CallRecord, ScenarioRecord
from capture.tcpdump import start_captures
from natlab.constants import READY_TIMEOUT_S, STUN_PORT
from natlab.progress import Progress
from scenarios import natrun
from scenarios.agentproc import call_dir
from scenarios.kinds import KINDS
from scenarios.kinds.base import RoundContext
from scenarios.model import Call, Scenario
from scenarios.wan import wan_profile
from services.coturn import Coturn, CoturnOptions, TurnAuth
from services.credentials import make_credentials
from services.daemon import Daemon
from services.kamailio import Kamailio, PbxOptions, TrunkMode
from services.rtpengine import NG_PORT, Rtpengine, RtpengineOptions
from topology.net import Network
from topology.plan import Lan, Plan, phone_name
from topology.router import PortForward


def pbx_options(plan: Plan, lan: Lan, trunk: str, sc: Scenario | None = None,
                creds: dict[str, str] | None = None) -> PbxOptions:
    peer = plan.other(lan)
    groups = KINDS[sc.kind].ring_groups(sc, lan) if sc is not None else ()
    flood = KINDS[sc.kind].flood_limit(sc) if sc is not None else None
    opts = PbxOptions(name=lan.pbx_name, lan_ip=lan.pbx, public_ip=lan.wan_ip,
                      local_prefix=lan.prefix, peer_prefix=peer.prefix,
                      peer_public_ip=peer.wan_ip, trunk=TrunkMode(trunk), ring_groups=groups,
                      insecure=sc.insecure if sc is not None else False,
                      media_anchor=_anchor(plan, lan, sc),
                      trunk_keepalive_s=sc.trunk_keepalive_s if sc is not None else 0,
                      passwords={e: p for e, p in (creds or {}).items()
                                 if e.startswith(lan.prefix)})
    return dataclasses.replace(opts, flood_limit=flood) if flood else opts


def _anchor(plan: Plan, lan: Lan, sc: Scenario | None) -> str | None:
    """The caller's PBX anchors the media at rtpengine on the public server (one anchor per
    call: the other PBX passes the rewritten SDP on)."""
    if sc is None or sc.remedy is None or not sc.remedy.anchor or plan.lan_of(sc.caller) != lan:
        return None
    return f"udp:{plan.servers.stun}:{NG_PORT}"


def credentials(plan: Plan, scenarios: list[Scenario]) -> dict[str, str]:
    """One digest password per extension that registers in these scenarios (the plan's
    [auth] passwords where given, else random ones for this run)."""
    exts = {e for lan in plan.lans for e in lan.phones}
    for sc in scenarios:
        exts |= KINDS[sc.kind].registrants(sc)
    return make_credentials(sorted(exts), given=plan.passwords)


def port_forwards(plan: Plan, trunk: str,
                  sc: Scenario | None = None) -> dict[str, PortForward | None]:
    """The trunk's port forward on each router (a scenario may leave one out)."""
    out: dict[str, PortForward | None] = {}
    for lan in plan.lans:
        port = pbx_options(plan, lan, trunk).forwarded_port()
        keep = sc is None or lan.name not in sc.no_forward
        out[lan.name] = PortForward(port, lan.pbx) if port and keep else None
    return out


BASE_PHONES = 2  # per LAN, in extension order: always in the network (the paper's phones)


def net_phones(plan: Plan, sc: Scenario) -> set[str]:
    """The phones a scenario's network has: each LAN's first BASE_PHONES, plus every phone the
    scenario's calls name (a plan may hold more phones, e.g. for concurrent calls)."""
    base = {e for lan in plan.lans for e in sorted(lan.phones)[:BASE_PHONES]}
    return base | KINDS[sc.kind].phones(sc, sc.call_list())


def _daemons(net: Network, plan: Plan, trunk: str, sc: Scenario | None,
             outdir: Path, creds: dict[str, str]) -> list[Daemon]:
    remedy = sc.remedy if sc is not None else None
    ips = (plan.servers.stun, plan.servers.stun2) if plan.servers.stun2 else (plan.servers.stun,)
    daemons: list[Daemon] = [Coturn(net.stun, outdir / "stun", CoturnOptions(
        listen_ips=ips, port=STUN_PORT, turn=TurnAuth() if remedy and remedy.turn else None))]
    if remedy is not None and remedy.anchor:
        daemons.append(Rtpengine(net.stun, outdir / "rtpengine",
                                 RtpengineOptions(ip=plan.servers.stun)))
    for lan in plan.lans:
        daemons.append(Kamailio(net.host(lan.pbx_name), outdir / lan.pbx_name,
                                pbx_options(plan, lan, trunk, sc, creds)))
    return daemons


def capture_points(plan: Plan, phones: set[str]) -> list[tuple[str, str, str]]:
    """(node, interface, pcap name): both sides of both routers, both PBXs, the phones."""
    points = []
    for lan in plan.lans:
        for side in ("lan", "wan"):
            name = f"{lan.router_name}-{side}"
            points.append((lan.router_name, name, name))
        points.append((lan.pbx_name, f"{lan.pbx_name}-eth0", lan.pbx_name))
    for ext in sorted(phones):
        points.append((phone_name(ext), f"{phone_name(ext)}-eth0", phone_name(ext)))
    return points


def start_services(stack: ExitStack, net: Network, plan: Plan, trunk: str,
                   sc: Scenario | None, outdir: Path, creds: dict[str, str]) -> list[Daemon]:
    """The public servers (STUN/TURN, rtpengine), then both PBXs (which talk to them from the
    start): render, check, start, then wait until each answers."""
    daemons = _daemons(net, plan, trunk, sc, outdir, creds)
    servers = [d for d in daemons if not isinstance(d, Kamailio)]
    for phase in (servers, [d for d in daemons if isinstance(d, Kamailio)]):
        for d in phase:
            d.workdir.mkdir(parents=True, exist_ok=True)
            d.render()
            d.check()
            stack.callback(d.stop)
            d.start()
        for d in phase:
            d.wait_ready(READY_TIMEOUT_S)
    return daemons


def _pcap_dir(sc: Scenario, rnd: int) -> str:
    return "." if sc.calls == 1 else f"round-{rnd:02d}"


def run_scenario(plan: Plan, sc: Scenario, outdir: Path, creds: dict[str, str],
                 progress: Progress | None = None, slot: int = 0,
                 stopped: Callable[[], bool] | None = None) -> ScenarioRecord:
    """One network and one set of daemons per scenario; calls run in rounds, each round with
    its own captures. The record is saved whatever happens (status complete, interrupted or
    failed); the exception, if any, goes on to the caller. A scenario run beside others gets
    no KeyboardInterrupt (only the main thread does): `stopped()` says Ctrl-C came while it
    ran, and it is then marked interrupted too."""
    outdir.mkdir(parents=True, exist_ok=True)
    kind = KINDS[sc.kind]
    plan = kind.plan(sc, plan)
    creds = kind.credentials(sc, creds)
    rec = ScenarioRecord(name=sc.name, kind=sc.kind, status="failed",
                         started=round(time.time(), 3), slot=slot)
    progress = progress or Progress(quiet=True)
    started = time.monotonic()
    lap = _Laps(rec.phases)
    try:
        with Network(plan, port_forwards(plan, sc.trunk, sc), nat=dict(sc.nat),
                     phones=net_phones(plan, sc), slot=slot) as net, \
                ExitStack() as stack:
            lap("net_up")
            stack.callback(lap, "teardown")  # the last callback: after every daemon stopped
            daemons = start_services(stack, net, plan, sc.trunk, sc, outdir, creds)
            lap("services")
            rec.wan = stack.enter_context(wan_profile(net, plan, sc, outdir))
            stack.enter_context(natrun.watch(net, plan, sc, outdir,
                                             kind.phones(sc, sc.call_list())))
            lap("wan")
            for rnd in range(1, sc.rounds + 1):
                if rnd > 1 and sc.pause_s:
                    time.sleep(sc.pause_s)  # the scenario's idle time between rounds
                    lap("pause")
                calls = [c for c in sc.call_list() if c.round == rnd]
                rdir = outdir / _pcap_dir(sc, rnd)
                rdir.mkdir(parents=True, exist_ok=True)
                t0 = time.monotonic()
                phones = kind.phones(sc, calls)
                with ExitStack() as round_stack, progress.status(
                        _round_line(sc, rnd, len(calls))):
                    points = kind.capture_points(plan, phones, capture_points(plan, phones))
                    specs = [(net.host(node), intf, rdir / f"{key}.pcap")
                             for node, intf, key in points]
                    start_captures(specs, round_stack, kind.capture_buffer_kib)
                    lap("captures")
                    kind.run_round(RoundContext(round_stack, net, plan, sc, outdir, creds,
                                                daemons), calls)
                rec.calls += [_record(sc, c, outdir, time.monotonic() - (
                    started if sc.calls == 1 else t0)) for c in calls]
                lap("calls")
        lap("net_down")
        rec.status = "interrupted" if stopped is not None and stopped() else "complete"
    except KeyboardInterrupt:
        rec.status = "interrupted"
        raise
    except Exception as exc:
        rec.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise
    finally:
        rec.seconds = round(time.monotonic() - started, 2)
        rec.save(outdir)
    return rec


class _Laps:
    """Adds the seconds since the last lap to a named phase (where a scenario's time goes)."""

    def __init__(self, phases: dict[str, float]):
        self.phases, self.t = phases, time.monotonic()

    def __call__(self, name: str) -> None:
        now = time.monotonic()
        self.phases[name] = round(self.phases.get(name, 0.0) + now - self.t, 3)
        self.t = now


def _round_line(sc: Scenario, rnd: int, calls: int) -> Callable[[float], str]:
    def render(elapsed: float) -> str:
        return (f"natlab: {sc.name}: round {rnd} of {sc.rounds}, {calls} call(s) up, "
                f"media {max(0.0, sc.duration_s - elapsed):.0f} s left")
    return render


def _record(sc: Scenario, call: Call, outdir: Path, seconds: float) -> CallRecord:
    return CallRecord(index=call.index, round=call.round, caller=call.caller, callee=call.callee,
                      dir=str(call_dir(sc, call, outdir).relative_to(outdir)),
                      pcaps=_pcap_dir(sc, call.round), seconds=round(seconds, 6))
