"""A load step: N simultaneous calls LAN2 -> LAN1 through both NATs and the trunk.

The plan gets one generated host per LAN for SIPp (extension <prefix>900, an address from the
top of the LAN subnet): a SIPp UAC in LAN2 calls a SIPp UAS in LAN1, both registered at their
PBX with digest auth, calls set up at `rate` per second, each holding N/rate + 10 s so that all
N are up together for 10 s and every call carries >= 10 s of G.711 both ways. Media crosses the
NATs directly: before the calls each SIPp host sends a STUN Binding from every media port its
calls will use; the router's public address goes into the SDP and every port must map to
itself (SIPp's [auto_media_port]). Alongside, the plan's pjsua2 phones make calls of their own
during the full-load window, so that the MOS also comes from real phones.

A step is skipped when an earlier clean-WAN step of the same run failed (the ramp stops at the
first failure); `load = "knee"` runs at the largest N that passed (the paper-like WAN step).
Everything the analysis needs goes to step.json and sipp/ (analysis.load).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agents import sippload
from analysis import load as load_analysis
from analysis.verdict import Verdict
from impair.capacity import PPS_PER_CALL, ceiling_pps, over_ceiling
from natlab.constants import READY_TIMEOUT_S, SIP_PORT, STUN_PORT
from natlab.errors import RunFailure
from scenarios.agentproc import agent_args, end_agent, start_agent, wait_file
from scenarios.kinds.base import CallInput, Kind, RoundContext
from scenarios.loadstat import Sampler
from scenarios.model import Call, Scenario, wan_of
from services.kamailio import FLOOD_LIMIT, FLOOD_WINDOW_S
from topology.conntrack import read_conntrack
from topology.plan import ConfigError, Lan, Plan

STEP_FILE = load_analysis.STEP_FILE
MAX_CALLS = 400
MIN_MEDIA_S = 10.0  # every call carries at least this much media; all N overlap this long
SIPP_SLACK_S = 30.0  # beyond ramp + hold, SIPp's global timeout
REQUESTS_PER_CALL = 5  # INVITE, ACK (407), INVITE with auth, ACK, BYE


@dataclass(frozen=True)
class LoadSpec:
    calls: int | None  # None: "knee", the largest N that passed earlier in the run
    rate: float
    sipp: tuple[tuple[str, str, str], ...]  # (lan name, extension, address) per LAN
    phone_pairs: tuple[tuple[str, str], ...]  # pjsua2 calls LAN2 -> LAN1 beside SIPp


def _free_address(lan: Lan) -> str:
    used = {lan.router, lan.pbx, *lan.phones.values()}
    for addr in reversed(list(lan.subnet.hosts())):
        if str(addr) not in used:
            return str(addr)
    raise ConfigError(f"{lan.name}: no free address for the load generator")


def sipp_ext(lan: Lan) -> str:
    return f"{lan.prefix}900"


class LoadKind(Kind):
    name = "load"
    keys = frozenset({"load", "rate", "phones"})
    tools = ("sipp",)
    # 64 MiB per capture: the SIPp hosts see 100 packets/s per call; with tcpdump's 2 MiB
    # its kernel buffer overflowed at 100 calls (0.6 % of the packets never reached the pcap)
    capture_buffer_kib = 65536

    def parse(self, where: str, data: dict[str, Any], plan: Plan) -> LoadSpec:
        raw = data.get("load")
        if raw != "knee" and (isinstance(raw, bool) or not isinstance(raw, int)
                              or not 1 <= raw <= MAX_CALLS):
            raise ConfigError(f"{where}: load must be a call count within 1..{MAX_CALLS} "
                              "or \"knee\"")
        rate = data.get("rate", 10)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.5 <= rate <= 50:
            raise ConfigError(f"{where}: rate must be calls per second within 0.5..50")
        phones = data.get("phones", 2)
        lan1, lan2 = plan.lans
        callers, callees = sorted(lan2.phones), sorted(lan1.phones)
        if isinstance(phones, bool) or not isinstance(phones, int) or \
                not 0 <= phones <= min(len(callers), len(callees)):
            raise ConfigError(f"{where}: phones must be 0..{min(len(callers), len(callees))} "
                              "(pjsua2 calls between the plan's phones)")
        sipp = []
        for lan in plan.lans:
            if sipp_ext(lan) in lan.phones:
                raise ConfigError(f"{where}: extension {sipp_ext(lan)} is the load generator's")
            sipp.append((lan.name, sipp_ext(lan), _free_address(lan)))
        return LoadSpec(None if raw == "knee" else int(raw), float(rate), tuple(sipp),
                        tuple(zip(callers[:phones], callees[:phones], strict=True)))

    def fields(self, spec: Any) -> dict[str, str]:
        return {"load": "the knee's" if spec.calls is None else str(spec.calls)}

    def validate(self, sc: Scenario) -> None:
        if sc.calls != 1 or sc.pairs or sc.sequence:
            raise ConfigError(f"{sc.name}: a load step sets its calls with load = N")

    def plan(self, sc: Scenario, plan: Plan) -> Plan:
        spec: LoadSpec = sc.spec
        gen = {lan: (ext, ip) for lan, ext, ip in spec.sipp}
        lans = tuple(replace(lan, phones={**lan.phones, gen[lan.name][0]: gen[lan.name][1]})
                     for lan in plan.lans)
        return replace(plan, lans=lans)  # type: ignore[arg-type]

    def registrants(self, sc: Scenario) -> set[str]:
        return {ext for _, ext, _ in sc.spec.sipp}

    def flood_limit(self, sc: Scenario) -> int:
        # the UAC is one source sending ~5 requests per call at `rate` calls/s (plus BYEs of
        # earlier calls): twice that per pike window, so the guard stays on but lets it pass
        return max(FLOOD_LIMIT, int(2 * REQUESTS_PER_CALL * sc.spec.rate * FLOOD_WINDOW_S * 2))

    def alone(self, sc: Scenario) -> bool:
        return True  # a load step measures where the machine saturates (whatever it says)

    def concurrent_calls(self, sc: Scenario) -> int | None:
        # SIPp's calls and the phones' (a knee step's count is known only at run time)
        spec: LoadSpec = sc.spec
        return None if spec.calls is None else spec.calls + len(spec.phone_pairs)

    def phones(self, sc: Scenario, calls: list[Call]) -> set[str]:
        return {ext for _, ext, _ in sc.spec.sipp} | {e for p in sc.spec.phone_pairs for e in p}

    def capture_points(self, plan: Plan, phones: set[str],
                       default: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
        # no router captures: at 200 calls each would write 20,000 packets/s for nothing
        # the load analysis reads (it measures at the endpoints); PBXs carry only SIP
        return [p for p in default if not p[0].startswith("r")]

    def run_round(self, ctx: RoundContext, calls: list[Call]) -> None:
        spec: LoadSpec = ctx.sc.spec
        n, why = _step_size(spec, ctx.outdir)
        capped = None
        if n is not None and spec.calls is None:  # the knee: known only now
            n, capped = _within_shaper(n, spec, wan_of(ctx.sc, ctx.plan))
        step: dict[str, Any] = {"calls": n, "rate": spec.rate, "wan": ctx.sc.wan,
                                "skipped": why, "capped": capped}
        if n is None:
            _write_step(ctx.outdir, step)
            return
        hold_s = n / spec.rate + MIN_MEDIA_S
        step.update(hold_s=round(hold_s, 2), media_s=MIN_MEDIA_S)
        sides = _sides(ctx, spec)
        step["sipp"] = {role: {"ext": s.ext, "ip": s.ip, "public_ip": s.public_ip}
                        for role, s in sides.items()}
        _write_step(ctx.outdir, step)
        _run_step(ctx, spec, n, hold_s, sides, step)
        _write_step(ctx.outdir, step)

    def judge(self, inp: CallInput) -> Verdict:
        assert inp.folder is not None
        res = load_analysis.analyse_step(inp.folder, inp.caps.packets)
        return load_analysis.verdict(inp.subject, res)


def _gates(outdir: Path) -> None:
    """Judge the earlier steps of this run that have no gate yet (their captures are
    closed now); each gate is written once, beside its step."""
    for other in sorted(outdir.parent.iterdir()):
        if other.name < outdir.name and (other / STEP_FILE).exists() and \
                not (other / load_analysis.GATE_FILE).exists():
            gate = load_analysis.gate(load_analysis.analyse_step(other))
            (other / load_analysis.GATE_FILE).write_text(json.dumps(gate) + "\n")


def _step_size(spec: LoadSpec, outdir: Path) -> tuple[int | None, str | None]:
    """The step's N, or None and why it is skipped (an earlier clean step failed)."""
    _gates(outdir)
    earlier = load_analysis.earlier_steps(outdir)
    failed = [g for g in earlier if g.get("passed") is False and g.get("wan") == "clean"]
    if spec.calls is not None:
        if failed:
            return None, f"skipped: the step of {failed[0]['calls']} calls failed"
        return spec.calls, None
    passed = [int(g["calls"]) for g in earlier if g.get("passed") and g.get("wan") == "clean"]
    if not passed:
        return None, "skipped: no clean-WAN step passed earlier in this run"
    return max(passed), None


def _within_shaper(n: int, spec: LoadSpec, wan: dict[str, float]) -> tuple[int, str | None]:
    """The knee's N, or fewer calls (and why) where the WAN shaper could not keep N calls'
    packets on time (impair.capacity: the ceiling bench/shaper.py measured)."""
    from impair.apply import has_netem

    pairs = len(spec.phone_pairs)
    if has_netem() or not over_ceiling(n + pairs, wan, netem=False):
        return n, None
    ceiling, source = ceiling_pps()
    most = max(1, ceiling // PPS_PER_CALL - pairs)
    return most, (f"capped at {most} calls: the knee's {n} would need "
                  f"{(n + pairs) * PPS_PER_CALL} packets/s through the WAN shaper, above its "
                  f"measured ceiling of {ceiling} ({source})")


def _write_step(outdir: Path, step: dict[str, Any]) -> None:
    (outdir / STEP_FILE).write_text(json.dumps(step, indent=2) + "\n")


def _sides(ctx: RoundContext, spec: LoadSpec) -> dict[str, sippload.SippSide]:
    out = {}
    for (lan_name, ext, ip), role in zip(spec.sipp, ("uas", "uac"), strict=True):
        lan = next(lan for lan in ctx.plan.lans if lan.name == lan_name)
        pw = ctx.password(ext)
        if pw is None:
            raise RunFailure(f"no password for the load generator {ext}")
        out[role] = sippload.SippSide(ip, ext, pw, lan.wan_ip, f"{lan.pbx}:{SIP_PORT}")
    return out


def _map(ctx: RoundContext, side: sippload.SippSide, ports: list[int]) -> str:
    """STUN from every media port of the SIPp host; the public address (ports preserved)."""
    args = [sys.executable, "-m", "agents.sippload", "map", "--bind", side.ip, "--stun",
            f"{ctx.plan.servers.stun}:{STUN_PORT}", "--ports", *map(str, ports)]
    proc = ctx.net.phone(side.ext).popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=30)
    if proc.returncode != 0:
        raise RunFailure(f"STUN from {side.ext}'s media ports failed: "
                         f"{err.decode(errors='replace').strip()[:200]}")
    rows = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    moved = [r for r in rows if r["mapped_port"] != r["port"]]
    if moved or len({r["mapped_ip"] for r in rows}) != 1:
        raise RunFailure(f"{side.ext}: the NAT moved {len(moved)} of {len(rows)} media ports "
                         "(SIPp can only advertise its own ports: use a port-preserving NAT)")
    return str(rows[0]["mapped_ip"])


def _popen(ctx: RoundContext, ext: str, args: list[str], cwd: Path,
           name: str) -> subprocess.Popen[bytes]:
    with open(cwd / f"{name}.log", "wb") as log:
        proc: subprocess.Popen[bytes] = ctx.net.phone(ext).popen(
            args, cwd=str(cwd), stdout=log, stderr=subprocess.STDOUT)
    ctx.stack.callback(end_agent, proc, 0.1)
    return proc


def _register(ctx: RoundContext, side: sippload.SippSide, workdir: Path) -> None:
    proc = _popen(ctx, side.ext, sippload.register_args(side, workdir, SIP_PORT), workdir,
                  "register")
    try:
        proc.wait(READY_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
    if proc.returncode != 0:
        raise RunFailure(f"SIPp {side.ext} did not register (exit {proc.returncode}); "
                         f"see {workdir}/register.log")


def _wait_listening(host: Any, port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while f":{port} " not in host.cmd(f"ss -Hlun sport = :{port}"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RunFailure(f"SIPp UAS not listening on {port} (exit {proc.poll()})")
        time.sleep(0.05)


def _run_step(ctx: RoundContext, spec: LoadSpec, n: int, hold_s: float,
              sides: dict[str, sippload.SippSide], step: dict[str, Any]) -> None:
    ramp_s = n / spec.rate
    timeout_s = ramp_s + hold_s + SIPP_SLACK_S
    ports = sippload.media_ports(n)
    dirs = {}
    for role, side in sides.items():
        d = ctx.outdir / "sipp" / role
        d.mkdir(parents=True, exist_ok=True)
        dirs[role] = d
        sippload.write_media(d / sippload.MEDIA_FILE, hold_s + 2.0,
                             hz=ctx.plan.call.caller_tone_hz if role == "uac"
                             else ctx.plan.call.callee_tone_hz)
        public = _map(ctx, side, ports)
        if public != side.public_ip:
            raise RunFailure(f"{side.ext}: STUN says {public}, the plan {side.public_ip}")
        # the media ports have no socket: drop what arrives (after the capture saw it)
        # instead of answering every packet with ICMP port unreachable
        ctx.net.phone(side.ext).cmd(
            f"iptables -A INPUT -p udp --dport {ports[0]}:{ports[-1] + 1} -j DROP")
        _register(ctx, side, d)
    uas = _popen(ctx, sides["uas"].ext, sippload.uas_args(sides["uas"], dirs["uas"], n,
                                                          SIP_PORT, timeout_s),
                 dirs["uas"], "sipp")
    _wait_listening(ctx.net.phone(sides["uas"].ext), SIP_PORT, uas)
    sampler = Sampler(ctx.outdir)
    sampler.start()
    t0 = time.monotonic()
    uac = _popen(ctx, sides["uac"].ext,
                 sippload.uac_args(sides["uac"], dirs["uac"], sides["uas"].ext, n, spec.rate,
                                   int(hold_s * 1000), SIP_PORT, timeout_s),
                 dirs["uac"], "sipp")
    # the phones' calls start when all N SIPp calls are up (callees first: an idle callee
    # gives up after its call's media time + slack, shorter than a 20-s ramp)
    time.sleep(max(0.0, ramp_s - 1.0 - (time.monotonic() - t0)))
    phones = _start_callees(ctx, spec)
    callers = _start_callers(ctx, phones)
    time.sleep(max(0.0, ramp_s + MIN_MEDIA_S / 2 - (time.monotonic() - t0)))
    step["conntrack"] = _conntrack(ctx)
    for proc in (uac, uas):
        try:
            proc.wait(max(1.0, t0 + timeout_s + 5.0 - time.monotonic()))
        except subprocess.TimeoutExpired:
            end_agent(proc, 0.1)
    step["exit"] = {"uac": uac.returncode, "uas": uas.returncode}
    for proc in callers:
        end_agent(proc, max(0.1, t0 + timeout_s - time.monotonic()))
    for proc, _ in phones:
        end_agent(proc, 2.0)
    step["usage"] = sampler.stop()
    step["phones"] = [{"caller": c.caller, "callee": c.callee,
                       "caller_ip": ctx.plan.lan_of(c.caller).phones[c.caller],
                       "callee_ip": ctx.plan.lan_of(c.callee).phones[c.callee],
                       "dir": str(d.relative_to(ctx.outdir))} for _, (c, d) in phones]
    step["ramp_s"] = round(ramp_s, 2)


def _conntrack(ctx: RoundContext) -> dict[str, dict[str, int]]:
    out = {}
    for lan in ctx.plan.lans:
        try:
            entries = read_conntrack(ctx.net.host(lan.router_name), proto=None)
        except RunFailure as exc:
            out[lan.router_name] = {"error": 1}
            print(f"natlab: {exc}")
            continue
        out[lan.router_name] = {"total": len(entries),
                                "udp": sum(e.proto == "udp" for e in entries)}
    return out


def _start_callees(ctx: RoundContext, spec: LoadSpec
                   ) -> list[tuple[subprocess.Popen[bytes], tuple[Call, Path]]]:
    out = []
    for i, (caller, callee) in enumerate(spec.phone_pairs, 1):
        call = Call(i, 1, caller, callee)
        d = ctx.outdir / "phones" / f"{caller}-{callee}"
        d.mkdir(parents=True, exist_ok=True)
        proc = start_agent(ctx.net.phone(callee),
                           agent_args(ctx.plan, ctx.sc, call, "callee", d, None, ctx.creds),
                           d / "callee.log")
        ctx.stack.callback(end_agent, proc, 0.1)
        out.append((proc, (call, d)))
    for proc, (call, d) in out:
        wait_file(d / "callee.ready", proc, READY_TIMEOUT_S, f"callee agent {call.callee}")
    return out


def _start_callers(ctx: RoundContext, phones: list[tuple[subprocess.Popen[bytes],
                                                         tuple[Call, Path]]]
                   ) -> list[subprocess.Popen[bytes]]:
    out = []
    for _, (call, d) in phones:
        proc = start_agent(ctx.net.phone(call.caller),
                           agent_args(ctx.plan, ctx.sc, call, "caller", d, None, ctx.creds),
                           d / "caller.log")
        ctx.stack.callback(end_agent, proc, 0.1)
        out.append(proc)
    return out


KIND = LoadKind()
