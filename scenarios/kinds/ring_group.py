"""Ring group: the caller dials a group extension on the far PBX, which rings its members in
parallel or one after another; each member answers after its own delay or only rings."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from analysis.evidence import Labels, requests, responses, where
from analysis.qos import Direction, call_qos
from analysis.verdict import Verdict, judge_call, lead_line
from natlab.constants import CALL_SLACK_S, CALLEE_GRACE_S, READY_TIMEOUT_S
from scenarios import agentproc as ap
from scenarios.kinds.base import CallInput, RoundContext
from scenarios.kinds.call import CallKind
from scenarios.model import Call, Scenario
from services.kamailio import RingGroup
from topology.plan import ConfigError, Lan, Plan, phone_name

STRATEGIES = ("parallel", "sequential")
DEFAULT_ANSWER_DELAY_S = 0.2


@dataclass(frozen=True)
class RingGroupSpec:
    ext: str
    members: tuple[str, ...]
    strategy: str  # parallel | sequential
    ring_s: int
    answer_delay: tuple[tuple[str, float], ...]  # member -> seconds before 200 OK
    no_answer: tuple[str, ...]  # members that ring but never answer

    def delay_of(self, ext: str) -> float:
        return dict(self.answer_delay).get(ext, DEFAULT_ANSWER_DELAY_S)

    def expected_winner(self) -> str | None:
        answering = [e for e in self.members if e not in self.no_answer]
        return min(answering, key=self.delay_of) if answering else None


def lan_by_prefix(plan: Plan, ext: str, where: str) -> Lan:
    for lan in plan.lans:
        if re.fullmatch(rf"{lan.prefix}[0-9]{{3}}", ext):
            return lan
    raise ConfigError(f"{where}: extension {ext} matches no LAN prefix")


def answered_by(spec: RingGroupSpec, reports: dict[str, dict[str, Any]]) -> list[str]:
    """The members whose agent reached CONFIRMED (one, when the group works)."""
    return [e for e in spec.members if reports.get(f"member-{e}", {}).get("confirmed")]


def winner(spec: RingGroupSpec, reports: dict[str, dict[str, Any]]) -> str | None:
    """The member that took the call: decided here only, for the verdict and the QoS rows."""
    won = answered_by(spec, reports)
    return won[0] if len(won) == 1 else None


class RingGroupKind(CallKind):
    name = "ring-group"
    keys = frozenset({"group", "answer_delay", "no_answer"})
    callee_is_phone = False

    def parse(self, where: str, data: dict[str, Any], plan: Plan) -> RingGroupSpec:
        raw = data.get("group")
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: group must be a table {{ ext, members, strategy, "
                              "ring_s }")
        ext = str(raw.get("ext", ""))
        lan = lan_by_prefix(plan, ext, where)
        if ext in lan.phones:
            raise ConfigError(f"{where}: group extension {ext} is a phone")
        members = tuple(str(m) for m in raw.get("members", []))
        if len(members) < 2 or any(m not in lan.phones for m in members):
            raise ConfigError(f"{where}: group members must be two or more phones of {lan.name}")
        strategy = str(raw.get("strategy", "parallel"))
        if strategy not in STRATEGIES:
            raise ConfigError(f"{where}: group strategy must be parallel or sequential")
        delays = data.get("answer_delay", {})
        no_answer = tuple(str(m) for m in data.get("no_answer", []))
        if (not isinstance(delays, dict) or set(delays) - set(members)
                or set(no_answer) - set(members)):
            raise ConfigError(f"{where}: answer_delay/no_answer may only name group members")
        return RingGroupSpec(ext, members, strategy, int(raw.get("ring_s", 5)),
                             tuple(sorted((str(k), float(v)) for k, v in delays.items())),
                             no_answer)

    def fields(self, spec: RingGroupSpec) -> dict[str, str]:
        return {"group": spec.ext, "members": ", ".join(spec.members)}

    def endpoints(self, spec: RingGroupSpec, caller: str, callee: str) -> tuple[str, str]:
        return caller, spec.ext

    def phones(self, sc: Scenario, calls: list[Call]) -> set[str]:
        return {c.caller for c in calls} | set(sc.spec.members)

    def ring_groups(self, sc: Scenario, lan: Lan) -> tuple[RingGroup, ...]:
        g: RingGroupSpec = sc.spec
        if not g.ext.startswith(lan.prefix):
            return ()
        return (RingGroup(g.ext, g.members, g.strategy, g.ring_s),)

    def run_round(self, ctx: RoundContext, calls: list[Call]) -> None:
        ring: RingGroupSpec = ctx.sc.spec
        plan, sc = ctx.plan, ctx.sc
        agents = ctx.outdir / "agents"
        agents.mkdir(parents=True, exist_ok=True)
        members = []
        for ext in ring.members:
            args = ap.phone_args(plan, sc, ext, f"member-{ext}", plan.call.callee_tone_hz, agents,
                                 password=ctx.password(ext))
            args += (["--no-answer"] if ext in ring.no_answer
                     else ["--answer", "--answer-delay", str(ring.delay_of(ext))])
            proc = ap.start_agent(ctx.net.phone(ext), args, agents / f"member-{ext}.log")
            ctx.stack.callback(ap.end_agent, proc, 0.1)
            members.append((proc, ext))
        for proc, ext in members:
            ap.wait_file(agents / f"member-{ext}.ready", proc, READY_TIMEOUT_S, f"member {ext}")
        args = ap.phone_args(plan, sc, sc.caller, "caller", plan.call.caller_tone_hz, agents,
                             password=ctx.password(sc.caller))
        wait = sc.duration_s + CALL_SLACK_S + ring.ring_s * len(ring.members)
        caller = ap.start_agent(ctx.net.phone(sc.caller),
                                [*args, "--call", ring.ext, "--max-wait", str(wait)],
                                agents / "caller.log")
        ctx.stack.callback(ap.end_agent, caller, 0.1)
        ap.end_agent(caller, wait + 12)
        for proc, _ in members:
            ap.end_agent(proc, CALLEE_GRACE_S)

    def judge(self, inp: CallInput) -> Verdict:
        ring: RingGroupSpec = inp.sc.spec
        plan = inp.plan
        took = winner(ring, inp.reports)
        # with no single winner, explain against the member that should have answered
        target = took or ring.expected_winner() or ring.members[0]
        members = {e: inp.reports.get(f"member-{e}", {}) for e in ring.members}
        reports = {"caller": inp.reports.get("caller", {}), "callee": members.get(target, {})}
        base = judge_call(plan, inp.subject, inp.spec(callee=target), reports, inp.caps,
                          inp.call.seconds)
        lab = Labels(plan)
        losers = [e for e in ring.members if e != target]
        cancels = {e: [m for m in requests(inp.caps.sip.get(phone_name(e), []), "CANCEL")
                       if m.pkt.dst == inp.ip(e)] for e in losers}
        checks = {**base.checks,
                  "one_member_answered": took is not None,
                  "first_to_answer_won": target == ring.expected_winner(),
                  "losers_cancelled": all(members[e].get("cancelled") for e in losers),
                  "cancel_on_wire": all(cancels[e] for e in losers)}
        lines = [f"Ring group {ring.ext} ({ring.strategy}: {', '.join(ring.members)}): "
                 f"{target} answered" + (" first" if ring.strategy == "parallel" else "") + "."]
        for e in losers:
            cap = phone_name(e)
            term = [m for m in responses(inp.caps.sip.get(cap, []), "INVITE", 487)
                    if m.pkt.src == inp.ip(e)]
            lines.append(
                f"{lab(inp.ip(e))} got CANCEL from PBX{plan.lan_of(e).index}"
                + (f" ({where(cap, cancels[e][0])})" if cancels[e] else " — none on the wire")
                + (f" and answered 487 ({where(cap, term[0])})" if term else "")
                + f"; its report: cancelled={bool(members[e].get('cancelled'))}, "
                f"confirmed={bool(members[e].get('confirmed'))}.")
        evidence = lines + base.evidence
        return Verdict.of(inp.subject, verdict="works" if all(checks.values()) else "fails",
                          rtp_received=base.rtp_received, rtp_sent=base.rtp_sent, checks=checks,
                          explanation=" ".join([lead_line(checks), *evidence]),
                          evidence=evidence, seconds=round(inp.call.seconds, 2))

    def qos(self, inp: CallInput) -> list[Direction]:
        took = winner(inp.sc.spec, inp.reports)
        if took is None:
            return []
        c = inp.call
        return call_qos(c.label, c.caller, took, inp.ip(c.caller), inp.ip(took),
                        inp.caps.packets(phone_name(c.caller)),
                        inp.caps.packets(phone_name(took)))


KIND = RingGroupKind()
