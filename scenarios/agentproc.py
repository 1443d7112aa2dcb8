"""Agent processes: their command lines, start, readiness file, and a bounded end."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from natlab.constants import CALL_SLACK_S, SIP_PORT, STUN_PORT
from natlab.errors import RunFailure
from scenarios.model import Call, Scenario
from services.coturn import TurnAuth
from topology.plan import Plan

REMEDY_AGENTS = ("pjsua2", "baresip")  # take --ice/--turn; Linphone has its NAT policy instead
AGENT_MODULES = {"pjsua2": "agents.sipagent", "baresip": "agents.baresip_agent",
                 "linphone": "agents.linphone_agent"}


class RunError(RunFailure):
    """An agent failed to start or to become ready."""


def call_dir(sc: Scenario, call: Call, outdir: Path) -> Path:
    return outdir if sc.calls == 1 else outdir / f"round-{call.round:02d}" / call.label


def phone_args(plan: Plan, sc: Scenario, ext: str, name: str, tone: int, workdir: Path,
               extra: list[str] | None = None, password: str | None = None) -> list[str]:
    """Common command line of a phone agent (pjsua2, or baresip where the scenario says),
    plus the kind's `extra` options and the phone's digest password (protected PBX)."""
    lan = plan.lan_of(ext)
    args = [sys.executable, "-m", AGENT_MODULES[sc.agent_of(ext)], "--ext", ext,
            "--bind", lan.phones[ext], "--pbx", f"{lan.pbx}:{SIP_PORT}",
            "--duration", str(sc.duration_s),
            "--tone-hz", str(tone), "--workdir", str(workdir),
            "--report", str(workdir / f"{name}.json"),
            "--ready-file", str(workdir / f"{name}.ready"),
            "--max-wait", str(sc.duration_s + CALL_SLACK_S)]
    args += extra or []
    if sc.stun:
        args += ["--stun", f"{plan.servers.stun}:{STUN_PORT}"]
    if sc.agent_of(ext) == "linphone" and sc.linphone_policy is not None:
        args += ["--nat-policy", sc.linphone_policy]
    if sc.remedy is not None and sc.agent_of(ext) in REMEDY_AGENTS:
        turn = TurnAuth()
        args += sc.remedy.agent_args(plan.servers.stun, turn.user, turn.password)
    if password is not None:  # digest password at the PBX (protected PBX)
        args.append(f"--password={password}")
    return args


def agent_args(plan: Plan, sc: Scenario, call: Call, role: str, workdir: Path,
               extra: list[str] | None = None,
               passwords: dict[str, str] | None = None) -> list[str]:
    ext = call.caller if role == "caller" else call.callee
    tone = plan.call.caller_tone_hz if role == "caller" else plan.call.callee_tone_hz
    args = phone_args(plan, sc, ext, role, tone, workdir, extra, (passwords or {}).get(ext))
    return args + (["--call", call.callee] if role == "caller" else ["--answer"])


def wait_file(path: Path, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
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


def start_agent(host: Any, args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as fh:
        proc: subprocess.Popen[bytes] = host.popen(args, stdout=fh, stderr=subprocess.STDOUT)
    return proc
