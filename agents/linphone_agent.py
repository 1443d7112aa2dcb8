"""Linphone (linphonec 5.1) as a scripted headless phone, same CLI core and JSON report as
agents.sipagent.

One linphonec process per phone, driven through its stdin, with its own HOME and a fresh rc:

    python -m agents.linphone_agent --ext 1002 --bind 10.0.1.2 --pbx 10.0.1.1:5060 --answer \\
        --tone-hz 1000 --workdir out/ --report out/1002.json --ready-file out/1002.ready
    python -m agents.linphone_agent --ext 1001 --bind 10.0.1.3 --pbx 10.0.1.1:5060 --call 1002 \\
        --stun 198.51.100.10:3478 --nat-policy stun-ice --tone-hz 440 --duration 10 --workdir out/

Call and registration states come from its log (<workdir>/<ext>-linphone.log, level 6), as do
the SIP trace (codes, SDPs, BYE) and the RTP packet counts oRTP prints when the stream ends;
`record` gives <workdir>/<ext>-heard.wav (what was received). The report is written whatever
the call outcome (exit 0); bad arguments exit 2.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import os
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from agents import baresip_conf as bc
from agents import linphone_conf as lc
from agents.report import Report as BaseReport
from agents.runmain import (
    UsageError,
    add_phone_options,
    agent_main,
    agent_parser,
    check_phone_args,
)
from agents.scripted import POLL, ScriptedPhone
from agents.tones import write_tone

ANSWER_DELAY = 0.2  # between 180 Ringing and answer, as the other agents do
START_TIMEOUT = 10.0  # until linphonec listens and has taken the set-up commands
QUIT_TIMEOUT = 3.0  # for linphonec to exit after `quit` (un-REGISTER), then after SIGTERM
# linphone call state -> (common state, natural SIP code)
STATES = {"OutgoingRinging": ("EARLY", 180), "OutgoingEarlyMedia": ("EARLY", 183),
          "IncomingReceived": ("INCOMING", None), "IncomingEarlyMedia": ("EARLY", 183),
          "Connected": ("CONFIRMED", 200), "End": ("DISCONNECTED", None),
          "Error": ("DISCONNECTED", None)}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = agent_parser(
        "python -m agents.linphone_agent", (__doc__ or "").split("\n")[0],
        ext_help="extension / SIP user name, e.g. 1002",
        rtp_help="audio RTP port, RTCP on PORT+1 (4000)",
        max_wait_help="hard bound on registration and, again, on the call (duration + 8)",
        workdir_help="HOME and rc, tone WAV, <ext>-heard.wav and <ext>-linphone.log go here (.)",
        ready_help="touched once registered (once listening without --pbx)",
        stun_help="STUN server for media")
    add_phone_options(p, ANSWER_DELAY,
                      duration_help="caller: hang up this many seconds after the call is "
                                    "established (10)",
                      tone_help="play a sine of HZ into the call (silence without it)")
    p.add_argument("--nat-policy", choices=[n.value for n in lc.NatPolicy],
                   help="none: no STUN; stun: protocols=stun (sends nothing in 5.1); stun-ice: "
                        "STUN + ICE (stun-ice with --stun, else none)")
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.nat_policy is None:
        args.nat_policy = "stun-ice" if args.stun else "none"
    policy = lc.NatPolicy(args.nat_policy)
    if policy is not lc.NatPolicy.NONE and not args.stun:
        raise UsageError(f"--nat-policy {policy.value} needs --stun IP:PORT")
    if policy is lc.NatPolicy.NONE and args.stun:
        raise UsageError("--stun with --nat-policy none: drop one of them")
    if any(c.isspace() for c in str(args.workdir.resolve())):
        raise UsageError("--workdir must not contain blanks (linphonec commands take paths)")
    args.nat_policy = policy
    return check_phone_args(args)


@dataclasses.dataclass
class Report(BaseReport):
    """The pjsua2 agent's report keys, plus agent and linphone: {version, nat_policy, ice (our
    SDP carried ICE), stun_error (why protocols=stun sent no Binding)}; the SDP dicts also
    carry session_addr (the session-level c=)."""

    agent: str = "linphone"
    linphone: dict[str, Any] = dataclasses.field(default_factory=dict)


def _die_with_parent() -> None:  # runs in the child before exec: SIGTERM if the agent dies
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Linphonec:
    """One linphonec process: commands into stdin, stdout kept in a transcript, log tailed."""

    def __init__(self, home: Path, rc: Path, log: Path, transcript: Path) -> None:
        self.log = lc.LogTail(log)
        self.out: IO[bytes] = transcript.open("wb")
        self.stdout = ""
        env = {**os.environ, "HOME": str(home)}
        self.proc = subprocess.Popen(["linphonec", "-c", str(rc), "-d", "6", "-l", str(log)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                     preexec_fn=_die_with_parent)  # fmt: skip

    def send(self, *commands: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write("".join(f"{c}\n" for c in commands).encode())
            self.proc.stdin.flush()
        except OSError:
            pass  # it has gone: the caller sees proc.poll()

    def poll(self, timeout: float) -> list[lc.Event]:
        """Wait up to `timeout` for output; the events the log gained meanwhile."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], timeout)
        if ready:
            data = os.read(fd, 65536)
            if data:
                self.out.write(data)
                self.out.flush()
                self.stdout += data.decode("utf-8", "replace")
            else:
                time.sleep(timeout)  # EOF: it is exiting; don't spin
        return lc.events(self.log.lines())

    def stop(self) -> int | None:
        """`quit` (ends calls, un-REGISTERs), SIGTERM, then SIGKILL; the exit status."""
        self.send("quit")
        status: int | None = None
        for seconds, sig in ((QUIT_TIMEOUT, signal.SIGTERM), (QUIT_TIMEOUT, signal.SIGKILL),
                             (5.0, None)):  # fmt: skip
            try:
                status = self.proc.wait(seconds)
                break
            except subprocess.TimeoutExpired:
                if sig is not None:
                    self.proc.send_signal(sig)
        assert self.proc.stdout is not None
        rest = self.proc.stdout.read() if status is not None else b""
        self.out.write(rest)
        self.out.close()
        self.proc.stdout.close()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        return status

    def last_line(self) -> str:
        lines = [s.strip() for s in self.stdout.splitlines() if s.strip()]
        return lines[-1] if lines else "(no output)"


class Agent(ScriptedPhone):
    """register → call or answer → hang up, from linphonec's log, within deadlines."""

    report: Report

    def __init__(self, args: argparse.Namespace, stop: threading.Event) -> None:
        super().__init__(args, stop, Report(
            ext=args.ext, role="caller" if args.call else "callee", bind=args.bind,
            stun=args.stun, t0_wall=time.time(), tone_hz=args.tone_hz,
            linphone={"version": None, "nat_policy": args.nat_policy.value, "ice": False,
                      "stun_error": None}))
        self.lp: Linphonec | None = None
        self.listening = self.set_up = False
        self.reg_state: str | None = None
        self.reg_code: int | None = None
        w = args.workdir
        self.base, self.heard = w / f"{args.ext}-linphone", w / f"{args.ext}-heard.wav"
        self.log_path = w / f"{args.ext}-linphone.log"

    def run(self) -> None:
        a = self.args
        a.workdir.mkdir(parents=True, exist_ok=True)
        tone = (a.workdir / f"{a.ext}-tone-{a.tone_hz or 0:g}.wav").resolve()
        write_tone(tone, a.tone_hz or 1000.0, a.max_wait + 5, amplitude=0.3 if a.tone_hz else 0)
        shutil.rmtree(self.base, ignore_errors=True)  # linphonec rewrites its rc and keeps dbs
        home = self.base / "home"
        (home / ".local" / "share" / "linphone").mkdir(parents=True)  # else it takes no SIP port
        rc = self.base / "linphonerc"
        rc.write_text(lc.render_rc(lc.Options(a.bind, a.sip_port, a.rtp_port, a.nat_policy,
                                              a.stun)))  # fmt: skip
        self.heard.unlink(missing_ok=True)
        self.lp = Linphonec(home, rc, self.log_path, a.workdir / f"{a.ext}-linphonec.out")
        try:
            self.lp.send(*lc.setup_commands(tone, self.heard.resolve()))
            if not self._start():
                return
            if a.pbx:
                self.lp.send(lc.register_command(a.ext, a.pbx, a.password))
                if not self._register():
                    return
            if a.ready_file is not None:
                a.ready_file.touch()
            self.converse()
        finally:
            self.lp.stop()
            self._collect()

    def _pump(self) -> None:
        assert self.lp is not None
        for ev in self.lp.poll(POLL):
            self._on_event(ev)
        if not self.set_up and "hook=" in self.lp.stdout:
            self.set_up = True
        if "Password for " in self.lp.stdout and self.closed_at is None:
            # linphonec now reads a password from stdin: our next command would be taken for it
            self.report.note_error("the registrar asks for a password (--password)")
            self.closed_at = self.now()
        if self.lp.proc.poll() is not None and self.closed_at is None:
            self.report.note_error(f"linphonec exited early: {self.lp.last_line()}")
            self.closed_at = self.now()

    def _wait(self, done: Callable[[], bool], timeout: float, what: str) -> bool:
        """Pump until done() or the deadline, a signal or linphonec's end; False on failure."""
        deadline = self.now() + timeout
        while not done():
            if self.stop.is_set():
                self.report.note_error(f"stopped by signal before {what}")
                return False
            if self.closed_at is not None:
                return False
            if self.now() >= deadline:
                self.report.note_error(f"{what} timed out")
                return False
            self._pump()
        return True

    def _start(self) -> bool:
        return self._wait(lambda: self.listening and self.set_up, START_TIMEOUT, "start-up")

    def _register(self) -> bool:
        if not self._wait(lambda: self.reg_state in ("Ok", "Failed"), self.args.max_wait,
                          "registration"):  # fmt: skip
            return False
        self.report.register_code = self.reg_code or (200 if self.reg_state == "Ok" else 408)
        if self.reg_state != "Ok":
            self.report.note_error(f"registration failed: {self.report.register_code}")
            return False
        return True

    def _dial(self, target: str) -> None:
        assert self.lp is not None
        self.lp.send(f"call {target}")

    def _answer(self) -> None:
        assert self.lp is not None
        self.lp.send("answer")

    def _terminate(self) -> None:
        assert self.lp is not None
        self.lp.send("terminate")

    def _alive(self) -> bool:
        return self.lp is not None and self.lp.proc.poll() is None

    def _bye_answered(self) -> bool:
        assert self.lp is not None
        return bc.sip_facts(lc.parse_trace(self.lp.log.text())).bye["status"] is not None

    def _on_event(self, ev: lc.Event) -> None:
        r = self.report
        if ev.kind == "listening" and ev.value == f"{self.args.bind}:{self.args.sip_port}":
            self.listening = True
        elif ev.kind == "fatal":
            r.note_error(f"linphonec: {ev.value}")
            self.closed_at = self.now()
        elif ev.kind == "code":
            self.reg_code = int(ev.value)
        elif ev.kind == "register" and self.reg_state not in ("Ok", "Failed"):
            self.reg_state = ev.value
        elif ev.kind == "call":
            self._on_call_state(ev.value, ev.ref)

    def _on_call_state(self, state: str, ref: str) -> None:
        if self.call_ref is None:
            self.call_ref = ref
        if ref != self.call_ref or state not in STATES:
            return  # a second call, or a state the report does not name
        common, code = STATES[state]
        self.note_state(common, code, state, incoming=state == "IncomingReceived",
                        confirmed=state == "Connected", closed=state in ("End", "Error"))

    def _collect(self) -> None:
        """Fill the report from the finished log and the recording."""
        assert self.lp is not None
        a, r = self.args, self.report
        log = self.lp.log.text()
        msgs = lc.parse_trace(log)
        facts = bc.sip_facts(msgs)
        r.invite_code, r.bye, r.codec = facts.invite_code, facts.bye, facts.codec
        local = next((m.body for m in reversed(msgs) if m.sent and "m=" in m.body), None)
        remote = next((m.body for m in reversed(msgs) if not m.sent and "m=" in m.body), None)
        r.local_sdp, r.remote_sdp = lc.sdp_summary(local), lc.sdp_summary(remote)
        first = next((m.body for m in msgs if m.sent and "m=" in m.body), None)
        if first is not None and first != local:  # ICE's re-INVITE changed the SDP
            r.linphone["first_sdp"] = {**(lc.sdp_summary(first) or {}),
                                       "origin": lc.origin_addr(first)}
        r.linphone["version"] = lc.version(log)
        r.linphone["ice"] = local is not None and "a=ice-ufrag" in local
        r.linphone["stun_error"] = lc.stun_error(log)
        if local is not None and a.nat_policy is not lc.NatPolicy.NONE:
            r.stun_mapped = lc.srflx(local)
        r.rtp = lc.rtp_stats(log) or {"tx": 0, "rx": 0}
        if self.heard.exists() and r.confirmed:
            r.recording = str(self.heard)
        if r.role == "callee" and not r.confirmed and facts.invite_code == 487:
            r.cancelled, r.error = True, "cancelled by caller/PBX"
        elif not r.confirmed and r.error is None:
            if facts.invite_code is not None and facts.invite_code >= 300:
                r.error = f"call failed: {facts.invite_code}"
            elif not a.call and self.call_ref is None:
                r.error = "no call arrived within max-wait"
            else:
                r.error = "call not confirmed within max-wait"


def main(argv: list[str] | None = None) -> int:
    return agent_main("linphone_agent", argv, parse_args, Agent,
                      lambda ag: dataclasses.asdict(ag.report),
                      lambda ag, t: setattr(ag.report, "error", t),
                      (OSError, RuntimeError, ValueError))


if __name__ == "__main__":
    raise SystemExit(main())
