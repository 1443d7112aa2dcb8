"""The agents of one round: start every callee, wait until registered, start the callers,
then wait for all of them with deadlines (a failing call ends as soon as a working one)."""
from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from scenarios.agentproc import (
    CALLEE_GRACE,
    READY_TIMEOUT,
    agent_args,
    call_dir,
    end_agent,
    start_agent,
    wait_file,
)
from scenarios.model import Call, Scenario
from scenarios.services_run import run_conference, run_ring_group
from topology.plan import Plan


def run_round(stack: ExitStack, net: Any, plan: Plan, sc: Scenario, calls: list[Call],
              outdir: Path) -> None:
    if sc.kind == "ring-group":
        run_ring_group(stack, net, plan, sc, outdir)
        return
    if sc.kind == "conference":
        run_conference(stack, net, plan, sc, outdir)
        return
    callees, callers = [], []
    for call in calls:
        agents = call_dir(sc, call, outdir) / "agents"
        agents.mkdir(parents=True, exist_ok=True)
        proc = start_agent(net.phone(call.callee),
                            agent_args(plan, sc, call, "callee", agents),
                            agents / "callee.log")
        stack.callback(end_agent, proc, 0.1)
        callees.append((proc, agents, call))
    for proc, agents, call in callees:
        wait_file(agents / "callee.ready", proc, READY_TIMEOUT, f"callee agent {call.callee}")
    for _, agents, call in callees:
        proc = start_agent(net.phone(call.caller),
                            agent_args(plan, sc, call, "caller", agents),
                            agents / "caller.log")
        stack.callback(end_agent, proc, 0.1)
        callers.append(proc)
    deadline = time.monotonic() + sc.duration_s + 20
    for proc in callers:
        end_agent(proc, max(0.1, deadline - time.monotonic()))
    for proc, _, _ in callees:
        end_agent(proc, CALLEE_GRACE)
