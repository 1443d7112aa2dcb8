"""Rounds of the paper's other services: a ring group and a conference call.

Ring group: every member phone answers (after its own delay) or only rings; the caller dials
the group extension. Conference: a pjsua2 mixing bridge registers the room extension from its
PBX's namespace; every participant calls it with its own tone.
"""
from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from scenarios import agentproc
from scenarios.extras import bridge_address, lan_by_prefix
from scenarios.model import Scenario
from topology.plan import Plan

BRIDGE_SIP_PORT = 5070  # beside kamailio's 5060/5080 in the PBX namespace
BRIDGE_RTP_PORT = 4100


def run_ring_group(stack: ExitStack, net: Any, plan: Plan, sc: Scenario, outdir: Path) -> None:
    c = agentproc
    ring = sc.ring
    assert ring is not None
    agents = outdir / "agents"
    agents.mkdir(parents=True, exist_ok=True)
    members = []
    for ext in ring.members:
        args = c.phone_args(plan, sc, ext, f"member-{ext}", plan.call.callee_tone_hz, agents)
        args += (["--no-answer"] if ext in ring.no_answer
                 else ["--answer", "--answer-delay", str(ring.delay_of(ext))])
        proc = c.start_agent(net.phone(ext), args, agents / f"member-{ext}.log")
        stack.callback(c.end_agent, proc, 0.1)
        members.append((proc, ext))
    for proc, ext in members:
        c.wait_file(agents / f"member-{ext}.ready", proc, c.READY_TIMEOUT, f"member {ext}")
    args = c.phone_args(plan, sc, sc.caller, "caller", plan.call.caller_tone_hz, agents)
    wait = sc.duration_s + 8 + ring.ring_s * len(ring.members)
    caller = c.start_agent(net.phone(sc.caller), [*args, "--call", ring.ext,
                                                   "--max-wait", str(wait)],
                            agents / "caller.log")
    stack.callback(c.end_agent, caller, 0.1)
    c.end_agent(caller, wait + 12)
    for proc, _ in members:
        c.end_agent(proc, c.CALLEE_GRACE)


def run_conference(stack: ExitStack, net: Any, plan: Plan, sc: Scenario, outdir: Path) -> None:
    c = agentproc
    conf = sc.conference
    assert conf is not None
    agents = outdir / "agents"
    agents.mkdir(parents=True, exist_ok=True)
    lan = lan_by_prefix(plan, conf.room, sc.name)
    wait = sc.duration_s + 20
    bridge_args = [sys.executable, "-m", "agents.confbridge", "--ext", conf.room,
                   "--bind", bridge_address(plan, conf.room),
                   "--sip-port", str(BRIDGE_SIP_PORT), "--rtp-port", str(BRIDGE_RTP_PORT),
                   "--pbx", f"{lan.pbx}:5060", "--max-wait", str(wait), "--record",
                   "--localnet", str(lan.subnet),
                   "--workdir", str(agents), "--report", str(agents / "bridge.json"),
                   "--ready-file", str(agents / "bridge.ready")]
    if sc.stun:
        bridge_args += ["--stun", f"{plan.servers.stun}:{c.STUN_PORT}"]
    bridge = c.start_agent(net.host(lan.pbx_name), bridge_args, agents / "bridge.log")
    stack.callback(c.end_agent, bridge, 0.1)
    c.wait_file(agents / "bridge.ready", bridge, c.READY_TIMEOUT, f"bridge {conf.room}")
    parts = []
    for ext in conf.participants:
        name = f"participant-{ext}"
        args = c.phone_args(plan, sc, ext, name, conf.tone_of(ext), agents)
        proc = c.start_agent(net.phone(ext), [*args, "--call", conf.room],
                              agents / f"{name}.log")
        stack.callback(c.end_agent, proc, 0.1)
        parts.append(proc)
        time.sleep(0.3)  # join one after another, as people do (not a synchronisation)
    deadline = time.monotonic() + sc.duration_s + 20
    for proc in parts:
        c.end_agent(proc, max(0.1, deadline - time.monotonic()))
    c.end_agent(bridge, 0.5)
