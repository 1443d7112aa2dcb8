"""The agents of one round: start every callee, wait until registered, start the callers,
then wait for all of them with deadlines (a failing call ends as soon as a working one)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from scenarios.model import Call, Scenario
from topology.plan import Plan

STUN_PORT = 3478
READY_TIMEOUT = 10.0
CALLEE_GRACE = 1.0  # after its caller is done, a callee gets this long to finish by itself


class RunError(RuntimeError):
    pass


def call_dir(sc: Scenario, call: Call, outdir: Path) -> Path:
    return outdir if sc.calls == 1 else outdir / f"round-{call.round:02d}" / call.label


def agent_args(plan: Plan, sc: Scenario, call: Call, role: str, workdir: Path) -> list[str]:
    ext = call.caller if role == "caller" else call.callee
    lan = plan.lan_of(ext)
    tone = plan.call.caller_tone_hz if role == "caller" else plan.call.callee_tone_hz
    args = [sys.executable, "-m", "agents.sipagent", "--ext", ext, "--bind", lan.phones[ext],
            "--pbx", f"{lan.pbx}:5060", "--duration", str(sc.duration_s),
            "--tone-hz", str(tone), "--workdir", str(workdir),
            "--report", str(workdir / f"{role}.json"),
            "--ready-file", str(workdir / f"{role}.ready"),
            "--max-wait", str(sc.duration_s + 8)]
    if role == "caller":
        args += ["--call", call.callee]
    else:
        args += ["--answer"]
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


def end_agent(proc: subprocess.Popen[bytes], timeout: float) -> None:
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


def run_round(stack: ExitStack, net: Any, plan: Plan, sc: Scenario, calls: list[Call],
              outdir: Path) -> None:
    callees, callers = [], []
    for call in calls:
        agents = call_dir(sc, call, outdir) / "agents"
        agents.mkdir(parents=True, exist_ok=True)
        proc = _start_agent(net.phone(call.callee),
                            agent_args(plan, sc, call, "callee", agents),
                            agents / "callee.log")
        stack.callback(end_agent, proc, 0.1)
        callees.append((proc, agents, call))
    for proc, agents, call in callees:
        _wait_file(agents / "callee.ready", proc, READY_TIMEOUT, f"callee agent {call.callee}")
    for _, agents, call in callees:
        proc = _start_agent(net.phone(call.caller),
                            agent_args(plan, sc, call, "caller", agents),
                            agents / "caller.log")
        stack.callback(end_agent, proc, 0.1)
        callers.append(proc)
    deadline = time.monotonic() + sc.duration_s + 20
    for proc in callers:
        end_agent(proc, max(0.1, deadline - time.monotonic()))
    for proc, _, _ in callees:
        end_agent(proc, CALLEE_GRACE)
