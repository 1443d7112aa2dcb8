"""Conference: a pjsua2 mixing bridge registers the room extension from its PBX's namespace;
every participant calls it with its own tone and must hear all the others."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.evidence import Labels
from analysis.expect import CONFERENCE_MIN_FRACTION, HEARD_DB, PACKETS_PER_S
from analysis.qos import Direction, conference_qos
from analysis.tones import tone_levels
from analysis.verdict import Verdict, lead_line, rtp_count
from natlab.constants import (
    BRIDGE_RTP_PORT,
    BRIDGE_SIP_PORT,
    READY_TIMEOUT_S,
    ROUND_SLACK_S,
    SIP_PORT,
    STUN_PORT,
)
from scenarios import agentproc as ap
from scenarios.kinds.base import CallInput, Kind, RoundContext
from scenarios.kinds.ring_group import lan_by_prefix
from scenarios.model import Call, Scenario
from topology.plan import ConfigError, Plan, phone_name

TONES = (440, 1000, 1500, 2000)  # participant i plays TONES[i]
JOIN_GAP_S = 0.3  # participants join one after another, as people do (not a synchronisation)


@dataclass(frozen=True)
class ConferenceSpec:
    room: str  # extension of the bridge (runs beside the PBX of its LAN)
    participants: tuple[str, ...]

    def tone_of(self, ext: str) -> int:
        return TONES[self.participants.index(ext)]


class ConferenceKind(Kind):
    name = "conference"
    keys = frozenset({"room", "participants"})
    callee_is_phone = False

    def parse(self, where: str, data: dict[str, Any], plan: Plan) -> ConferenceSpec:
        room = str(data.get("room", ""))
        lan = lan_by_prefix(plan, room, where)
        if room in lan.phones:
            raise ConfigError(f"{where}: conference room {room} is a phone")
        parts = tuple(str(p) for p in data.get("participants", []))
        if not 3 <= len(parts) <= len(TONES) or len(set(parts)) != len(parts):
            raise ConfigError(f"{where}: a conference needs 3..{len(TONES)} distinct phones")
        for p in parts:
            plan.lan_of(p)
        return ConferenceSpec(room, parts)

    def fields(self, spec: ConferenceSpec) -> dict[str, str]:
        return {"room": spec.room, "participants": ", ".join(spec.participants)}

    def registrants(self, sc: Scenario) -> set[str]:
        return {sc.spec.room}

    def endpoints(self, spec: ConferenceSpec, caller: str, callee: str) -> tuple[str, str]:
        return spec.participants[0], spec.room

    def phones(self, sc: Scenario, calls: list[Call]) -> set[str]:
        return set(sc.spec.participants)

    def run_round(self, ctx: RoundContext, calls: list[Call]) -> None:
        conf: ConferenceSpec = ctx.sc.spec
        plan, sc = ctx.plan, ctx.sc
        agents = ctx.outdir / "agents"
        agents.mkdir(parents=True, exist_ok=True)
        lan = lan_by_prefix(plan, conf.room, sc.name)
        wait = sc.duration_s + ROUND_SLACK_S
        bridge_args = [sys.executable, "-m", "agents.confbridge", "--ext", conf.room,
                       "--bind", lan.pbx, "--sip-port", str(BRIDGE_SIP_PORT),
                       "--rtp-port", str(BRIDGE_RTP_PORT), "--pbx", f"{lan.pbx}:{SIP_PORT}",
                       "--max-wait", str(wait), "--record", "--localnet", str(lan.subnet),
                       "--workdir", str(agents), "--report", str(agents / "bridge.json"),
                       "--ready-file", str(agents / "bridge.ready")]
        if sc.stun:
            bridge_args += ["--stun", f"{plan.servers.stun}:{STUN_PORT}"]
        if ctx.password(conf.room):
            bridge_args.append(f"--password={ctx.password(conf.room)}")
        bridge = ap.start_agent(ctx.net.host(lan.pbx_name), bridge_args, agents / "bridge.log")
        ctx.stack.callback(ap.end_agent, bridge, 0.1)
        ap.wait_file(agents / "bridge.ready", bridge, READY_TIMEOUT_S, f"bridge {conf.room}")
        parts = []
        for ext in conf.participants:
            name = f"participant-{ext}"
            args = ap.phone_args(plan, sc, ext, name, conf.tone_of(ext), agents,
                                 password=ctx.password(ext))
            proc = ap.start_agent(ctx.net.phone(ext), [*args, "--call", conf.room],
                                  agents / f"{name}.log")
            ctx.stack.callback(ap.end_agent, proc, 0.1)
            parts.append(proc)
            time.sleep(JOIN_GAP_S)
        deadline = time.monotonic() + sc.duration_s + ROUND_SLACK_S
        for proc in parts:
            ap.end_agent(proc, max(0.1, deadline - time.monotonic()))
        ap.end_agent(bridge, 0.5)

    def judge(self, inp: CallInput) -> Verdict:
        conf: ConferenceSpec = inp.sc.spec
        reports, plan = inp.reports, inp.plan
        bridge = reports.get("bridge", {})
        min_pkts = CONFERENCE_MIN_FRACTION * inp.sc.duration_s * PACKETS_PER_S
        checks: dict[str, bool] = {"bridge_registered": bridge.get("register_code") == 200}
        lines, parts = [], []
        for ext in conf.participants:
            rep = reports.get(f"participant-{ext}", {})
            others = [conf.tone_of(o) for o in conf.participants if o != ext]
            rec = rep.get("recording")
            levels = tone_levels(rec, [*others, conf.tone_of(ext)]) \
                if isinstance(rec, str) and Path(rec).exists() else {}
            heard = {hz: levels.get(hz, -200.0) for hz in others}
            ok = {f"{ext}_joined": rep.get("invite_code") == 200 and bool(rep.get("confirmed")),
                  f"{ext}_rtp_both_ways":
                      min(rtp_count(rep, "tx"), rtp_count(rep, "rx")) >= min_pkts,
                  f"{ext}_hears_others": bool(heard) and all(v > HEARD_DB for v in heard.values())}
            checks.update(ok)
            lan = plan.lan_of(ext)
            lines.append(f"{ext} (LAN{lan.index}, tone {conf.tone_of(ext)} Hz): joined "
                         f"{'yes' if ok[f'{ext}_joined'] else 'no'}, RTP sent "
                         f"{rtp_count(rep, 'tx')}, received {rtp_count(rep, 'rx')}; hears "
                         + ", ".join(f"{hz} Hz at {db:.1f} dB" for hz, db in heard.items())
                         + f" (its own tone at {levels.get(conf.tone_of(ext), -200.0):.1f} dB).")
            parts.append({"name": ext, "rtp": rep.get("rtp"), "heard_db": heard})
        room_lan = lan_by_prefix(plan, conf.room, inp.sc.name)
        served = bridge.get("participants") or []
        offered = {(p.get("local_sdp") or {}).get("addr") for p in served}
        private = sorted(a for a in offered if a and Labels(plan).is_private(a))
        lines.insert(0, f"Bridge {conf.room} (pjsua2 mixer beside PBX{room_lan.index}) served "
                        f"{len(served)} participants"
                        + (f"; to phones behind its own NAT it offered its private address "
                           f"{', '.join(private)} (r{room_lan.index} does not hairpin), to the "
                           "others its public one" if private else "") + ".")
        first = reports.get(f"participant-{conf.participants[0]}", {})
        return Verdict.of(inp.subject, verdict="works" if all(checks.values()) else "fails",
                          rtp_received={"caller": rtp_count(first, "rx"),
                                        "callee": sum(rtp_count(p, "rx") for p in served)},
                          rtp_sent={"caller": rtp_count(first, "tx"),
                                    "callee": sum(rtp_count(p, "tx") for p in served)},
                          checks=checks, explanation=" ".join([lead_line(checks), *lines]),
                          evidence=lines, seconds=round(inp.call.seconds, 2), calls=parts)

    def qos(self, inp: CallInput) -> list[Direction]:
        conf: ConferenceSpec = inp.sc.spec
        lan = lan_by_prefix(inp.plan, conf.room, inp.sc.name)
        rows: list[Direction] = []
        for ext in conf.participants:
            rows += conference_qos(ext, inp.ip(ext), lan.pbx,
                                   inp.caps.packets(phone_name(ext)),
                                   inp.caps.packets(lan.pbx_name))
        return rows


KIND = ConferenceKind()
