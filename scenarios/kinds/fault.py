"""A call with a fault injected mid-call (or, coturn down, before it): a router reboot, a PBX
restart, the STUN server down, a WAN link down. Runs like a call with impair.fault's injector
beside the first round; judged like a call (the fault's planned outage lowers the RTP bar)
plus the fault's timeline (analysis.fault): media gap per direction, what restored it, the
BYE's path, the registrations, and for later calls whether the callee was reachable again.

    fault = { what = "router-reboot", router = "r1", at_s = 4, down_s = 1 }
    fault = { what = "pbx-restart", pbx = "pbx1", at_s = 4 }
    fault = { what = "coturn-down" }
    fault = { what = "wan-link-down", router = "r1", at_s = 4, down_s = 2 }
"""
from __future__ import annotations

import dataclasses
from typing import Any

from analysis import fault as timeline
from analysis.verdict import Verdict, judge_call, with_checks
from impair.fault import DEFAULT_DOWN_S, WHATS, FaultSpec, Injector
from scenarios.kinds.base import CallInput, RoundContext
from scenarios.kinds.call import CallKind
from scenarios.model import Call, Scenario
from topology.plan import ConfigError, Plan, phone_name

KEYS = {"what", "router", "pbx", "at_s", "down_s"}
TARGET_KEY = {"router-reboot": "router", "wan-link-down": "router", "pbx-restart": "pbx"}


def parse_fault(where: str, raw: Any, plan: Plan) -> FaultSpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: fault must be a table like "
                          "{ what = \"router-reboot\", router = \"r1\", at_s = 4 }")
    if set(raw) - KEYS:
        raise ConfigError(f"{where}: fault: unknown key(s) {', '.join(sorted(set(raw) - KEYS))}")
    what = raw.get("what")
    if what not in WHATS:
        raise ConfigError(f"{where}: fault.what must be one of {', '.join(WHATS)}, got {what!r}")
    key = TARGET_KEY.get(what)
    names = ([lan.router_name for lan in plan.lans] if key == "router" else
             [lan.pbx_name for lan in plan.lans] if key == "pbx" else ["stun"])
    target = raw.get(key, "") if key else "stun"
    if target not in names:
        raise ConfigError(f"{where}: fault {what} needs {key} = one of {', '.join(names)}")
    for other in set(TARGET_KEY.values()) - {key}:
        if other in raw:
            raise ConfigError(f"{where}: fault {what} takes no {other}")
    if what == "coturn-down" and ("at_s" in raw or "down_s" in raw):
        raise ConfigError(f"{where}: fault coturn-down happens before the call: no at_s/down_s")
    at_s, down_s = raw.get("at_s", 0.0), raw.get("down_s", DEFAULT_DOWN_S[what])
    for name, value, low, high in (("at_s", at_s, 0.0, 60.0), ("down_s", down_s, 0.0, 10.0)):
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                not low <= value <= high:
            raise ConfigError(f"{where}: fault.{name} must be a number within {low:g}..{high:g}")
    if what != "coturn-down" and at_s < 1.0:
        raise ConfigError(f"{where}: fault.at_s must be >= 1 (the call must be up first)")
    return FaultSpec(what, target, float(at_s), float(down_s))


class FaultKind(CallKind):
    name = "fault"
    keys = frozenset({"fault"})

    def parse(self, where: str, data: dict[str, Any], plan: Plan) -> FaultSpec:
        return parse_fault(where, data.get("fault"), plan)

    def fields(self, spec: Any) -> dict[str, str]:
        return {"what": spec.what, "target": spec.target}

    def validate(self, sc: Scenario) -> None:
        spec: FaultSpec = sc.spec
        if spec.what != "coturn-down" and spec.at_s + spec.down_s >= sc.duration_s:
            raise ConfigError(f"{sc.name}: the fault (at_s + down_s) must end before the "
                              f"call does (duration_s {sc.duration_s:g})")
        if spec.what == "coturn-down" and not sc.stun:
            raise ConfigError(f"{sc.name}: coturn-down matters only with stun = true")
        if any(c.round == 1 for c in sc.call_list()[1:]):
            raise ConfigError(f"{sc.name}: a fault scenario has one call per round")

    def run_round(self, ctx: RoundContext, calls: list[Call]) -> None:
        if calls[0].round != 1:  # the fault belongs to the first round
            super().run_round(ctx, calls)
            return
        inj = Injector(ctx.sc.spec, ctx.net, ctx.daemons, ctx.outdir,
                       self._probe(ctx.plan, ctx.sc.spec, calls[0]))
        inj.schedule()
        try:
            super().run_round(ctx, calls)
        finally:
            inj.finish()

    def judge(self, inp: CallInput) -> Verdict:
        spec: FaultSpec = inp.sc.spec
        log = timeline.load(inp.folder) if inp.folder is not None else None
        caller, callee = self._phone(inp, inp.call.caller), self._phone(inp, inp.call.callee)
        call_spec = inp.spec()
        if spec.what != "coturn-down":  # the planned outage is no loss of the call's own
            allowance = 100.0 * spec.down_s / inp.sc.duration_s
            call_spec = dataclasses.replace(call_spec,
                                            loss_pct=min(100.0, call_spec.loss_pct + allowance))
        v = judge_call(inp.plan, inp.subject, call_spec, inp.reports, inp.caps, inp.call.seconds)
        if log is None:
            return with_checks(v, {"fault_injected": False},
                               ["No fault.json: the fault was never injected."])
        t0 = log.get("start")
        if inp.call.index > 1:  # a later call: is the callee reachable again?
            lines = timeline.reached(inp.caps, caller, callee, t0, inp.call.label) if t0 else []
            v = with_checks(v, {}, lines)
            v.fault = {"reachability": lines}  # one later call per scenario is reported
            return v
        tl = timeline.timeline(log, inp.caps, caller, callee, inp.plan.servers.stun)
        checks = {"fault_injected": t0 is not None and tl.error is None
                  and all(c["rc"] == 0 for c in tl.commands if not c["probe"])}
        for g in tl.gaps:
            checks[f"media_resumed_to_{'callee' if g.receiver == callee.ext else 'caller'}"] = \
                g.gap_ms is not None
        v = with_checks(v, checks, timeline.lines(tl))
        v.fault = tl.as_dict()
        return v

    @staticmethod
    def _probe(plan: Plan, spec: FaultSpec, call: Call) -> tuple[str, str] | None:
        """For a PBX restart: a free phone of that LAN asks the PBX for the call's phone."""
        lan = next((lan for lan in plan.lans if lan.pbx_name == spec.target), None)
        if spec.what != "pbx-restart" or lan is None:
            return None
        ext = next((e for e in (call.callee, call.caller) if e in lan.phones), None)
        free = sorted(e for e in lan.phones if e not in (call.caller, call.callee))
        if ext is None or not free:
            return None
        return phone_name(free[0]), f"sip:{ext}@{lan.pbx}"

    @staticmethod
    def _phone(inp: CallInput, ext: str) -> timeline.Phone:
        lan = inp.plan.lan_of(ext)
        return timeline.Phone(ext, lan.phones[ext], phone_name(ext), lan.router_name,
                              lan.pbx_name)


KIND = FaultKind()
