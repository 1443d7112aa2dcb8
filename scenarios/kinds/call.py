"""A two-party call (the paper's 1002 -> 2005): start every callee, wait until registered,
start the callers, then wait for all of them with deadlines."""
from __future__ import annotations

import time

from analysis.qos import Direction, call_qos
from analysis.verdict import Verdict, judge_call
from natlab.constants import CALLEE_GRACE_S, READY_TIMEOUT_S, ROUND_SLACK_S
from scenarios.agentproc import agent_args, call_dir, end_agent, start_agent, wait_file
from scenarios.kinds.base import CallInput, Kind, RoundContext
from scenarios.model import Call
from topology.plan import phone_name


class CallKind(Kind):
    name = "call"

    def run_round(self, ctx: RoundContext, calls: list[Call]) -> None:
        callees, callers = [], []
        for call in calls:
            agents = call_dir(ctx.sc, call, ctx.outdir) / "agents"
            agents.mkdir(parents=True, exist_ok=True)
            proc = start_agent(ctx.net.phone(call.callee),
                               agent_args(ctx.plan, ctx.sc, call, "callee", agents,
                                          self.agent_args(ctx.sc, call.callee), ctx.creds),
                               agents / "callee.log")
            ctx.stack.callback(end_agent, proc, 0.1)
            callees.append((proc, agents, call))
        for proc, agents, call in callees:
            wait_file(agents / "callee.ready", proc, READY_TIMEOUT_S, f"callee agent {call.callee}")
        for _, agents, call in callees:
            proc = start_agent(ctx.net.phone(call.caller),
                               agent_args(ctx.plan, ctx.sc, call, "caller", agents,
                                          self.agent_args(ctx.sc, call.caller), ctx.creds),
                               agents / "caller.log")
            ctx.stack.callback(end_agent, proc, 0.1)
            callers.append(proc)
        deadline = time.monotonic() + ctx.sc.duration_s + ROUND_SLACK_S
        for proc in callers:
            end_agent(proc, max(0.1, deadline - time.monotonic()))
        for proc, _, _ in callees:
            end_agent(proc, CALLEE_GRACE_S)

    def judge(self, inp: CallInput) -> Verdict:
        return judge_call(inp.plan, inp.subject, inp.spec(), inp.reports, inp.caps,
                          inp.call.seconds)

    def qos(self, inp: CallInput) -> list[Direction]:
        c = inp.call
        return call_qos(c.label, c.caller, c.callee, inp.ip(c.caller), inp.ip(c.callee),
                        inp.caps.packets(phone_name(c.caller)),
                        inp.caps.packets(phone_name(c.callee)))


KIND = CallKind()
