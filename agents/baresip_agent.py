"""baresip as a scripted headless phone, with the same CLI core and JSON report as agents.sipagent.

One baresip 1.0 process per phone, driven over ctrl_tcp (netstring JSON) on 127.0.0.1:

    python -m agents.baresip_agent --ext 1002 --bind 10.0.1.2 --pbx 10.0.1.1 --answer \\
        --tone-hz 1000 --workdir out/ --report out/1002.json --ready-file out/1002.ready
    python -m agents.baresip_agent --ext 1001 --bind 10.0.1.3 --pbx 10.0.1.1 --call 1002 \\
        --video --tone-hz 440 --duration 10 --workdir out/

Events (REGISTER_OK, CALL_INCOMING, CALL_ESTABLISHED, CALL_CLOSED...) drive the call; SIP codes,
SDPs and the BYE come from the SIP trace in <workdir>/<ext>-baresip.log, RTP packet counts from
the per-stream statistics baresip prints when a stream ends (`rtp_stats yes`), the recording
from the sndfile filter's decoder-side dump (what was received). baresip also takes TCP
sip-port+1 (SIP/TLS), so leave a gap between the SIP ports of two agents on one address.
The report is written whatever the call outcome (exit 0); bad arguments exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents import baresip_conf as bc
from agents.ice import add_nat_options, check_nat_args, sdp_candidates
from agents.report import Report as BaseReport
from agents.runmain import (
    UsageError,
    add_phone_options,
    agent_main,
    agent_parser,
    check_phone_args,
    wait_registered,
)
from agents.scripted import POLL, ScriptedPhone
from agents.tones import write_tone

ANSWER_DELAY = 0.2  # between 180 Ringing and accept, as the pjsua2 agent does
START_TIMEOUT = 5.0  # until ctrl_tcp accepts
STATES = {"CALL_INCOMING": ("INCOMING", None), "CALL_RINGING": ("EARLY", 180),
          "CALL_PROGRESS": ("EARLY", 183), "CALL_ESTABLISHED": ("CONFIRMED", 200),
          "CALL_CLOSED": ("DISCONNECTED", None)}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = agent_parser(
        "python -m agents.baresip_agent", __doc__.split("\n")[0],
        ext_help="extension / SIP user name, e.g. 1002",
        sip_help="SIP UDP/TCP port; TCP PORT+1 is taken too (5060)",
        rtp_help="even first RTP port: audio uses it (with --video audio and video take "
                 "PORT and PORT+2 in either order) (4000)",
        max_wait_help="hard bound on registration and, again, on the call (duration + 8)",
        workdir_help="config dir, tone WAV, <ext>-heard.wav and <ext>-baresip.log go here (.)",
        ready_help="touched once registered (once running without --pbx)",
        stun_help="STUN server for media (baresip's stun medianat): public address in the SDP")
    add_phone_options(p, ANSWER_DELAY,
                      duration_help="caller: hang up this many seconds after the call is "
                                    "established (10)",
                      tone_help="play a sine of HZ into the call (silence without it)")
    p.add_argument("--video", action="store_true",
                   help="offer/accept VP8 video from a fake source")
    add_nat_options(p)
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.rtp_port % 2:
        raise UsageError("--rtp-port must be even (baresip rounds RTP ports down to even)")
    args = check_nat_args(check_phone_args(args))
    if args.relay_only or args.keepalive:
        raise UsageError("--relay-only and --keepalive are pjsua2 agent options only")
    return args


@dataclasses.dataclass
class Report(BaseReport):
    """The pjsua2 agent's report keys, plus agent and video."""

    agent: str = "baresip"
    video: dict[str, Any] | None = None


class Agent(ScriptedPhone):
    """register → call or answer → hang up, from ctrl_tcp events, within deadlines."""

    report: Report

    def __init__(self, args: argparse.Namespace, stop: threading.Event) -> None:
        super().__init__(args, stop, Report(
            ext=args.ext, role="caller" if args.call else "callee", bind=args.bind,
            stun=args.stun, t0_wall=time.time(), tone_hz=args.tone_hz))
        if args.ice:
            self.report.enable_ice(args.turn)
        elif args.turn:
            self.report.turn = {"server": args.turn, "relay_addr": None}
        self.bs: bc.Baresip | None = None
        w = args.workdir
        # sndfile truncates long dump paths (both dumps then share one name): dump into a
        # short temporary folder, keep the files in <workdir>/<ext>-sndfile afterwards
        self.conf_dir, self.snd_keep = w / f"{args.ext}-baresip", w / f"{args.ext}-sndfile"
        self.snd_dir = Path(tempfile.mkdtemp(prefix=f"nlsf{args.ext}-"))

    def run(self) -> None:
        a = self.args
        a.workdir.mkdir(parents=True, exist_ok=True)
        tone = a.workdir / f"{a.ext}-tone-{a.tone_hz or 0:g}.wav"
        # aufile ends the call at the end of the file: make it outlast the call
        write_tone(tone, a.tone_hz or 1000.0, a.max_wait + 5, amplitude=0.3 if a.tone_hz else 0)
        opts = bc.Options(a.ext, a.bind, a.sip_port, a.rtp_port, bc.free_tcp_port(), a.pbx, a.stun,
                          a.video, tone.resolve(), self.snd_dir.resolve(), a.password,
                          ice=a.ice, turn=a.turn_server)  # fmt: skip
        bc.write_config(self.conf_dir, opts)
        self.bs = bc.Baresip(self.conf_dir, a.workdir / f"{a.ext}-baresip.log", opts.ctrl_port,
                          START_TIMEOUT + 2 * a.max_wait + 4 * bc.QUIT_TIMEOUT + 10)  # fmt: skip
        try:
            self.bs.connect(START_TIMEOUT)
            self.bs.send("uanew", bc.account_line(opts))  # now: no event can be missed
            if a.pbx and not self._register():
                return
            if a.ready_file is not None:
                a.ready_file.touch()
            self.converse()
            if not self.report.confirmed and self.report.error is None:
                self.report.error = ("no call arrived within max-wait"
                                     if not a.call and self.call_ref is None
                                     else "call not confirmed within max-wait")
        finally:
            self.bs.stop()
            try:
                self._collect()
            finally:
                shutil.rmtree(self.snd_dir, ignore_errors=True)

    def _pump(self) -> None:
        assert self.bs is not None
        for msg in self.bs.poll(POLL):
            if msg.get("event"):
                self._on_event(msg)
        if self.bs.proc.poll() is not None and self.closed_at is None:
            self.report.note_error(f"baresip exited early: {self.bs.last_line()}")
            self.closed_at = self.now()

    def _register(self) -> bool:
        return wait_registered(self.report, self._pump, self.now, self.args.max_wait, self.stop,
                               gone=lambda: self.closed_at is not None)

    def _dial(self, target: str) -> None:
        assert self.bs is not None
        self.bs.send("dial", target)

    def _answer(self) -> None:
        assert self.bs is not None
        self.bs.send("accept")

    def _terminate(self) -> None:
        assert self.bs is not None
        self.bs.send("hangup")

    def _bye_answered(self) -> bool:
        assert self.bs is not None
        local = f"{self.args.bind}:{self.args.sip_port}"
        return bc.sip_facts(bc.parse_trace(self.bs.log_text(), local)).bye["status"] is not None

    def _on_event(self, ev: dict[str, Any]) -> None:
        kind, param, r = str(ev.get("type")), str(ev.get("param") or ""), self.report
        code = int(param[:3]) if param[:3].isdigit() else None
        if kind in ("REGISTER_OK", "REGISTER_FAIL") and r.register_code is None:
            r.register_code = code if code is not None else 408  # transport error / timeout
            if kind == "REGISTER_FAIL" and code is None:
                r.note_error(f"registration: {param}")
            return
        if kind not in STATES or ev.get("class") != "call":
            return
        if self.call_ref is None:
            self.call_ref = ev.get("id")
        elif ev.get("id") != self.call_ref:
            return  # a second call: baresip (call_max_calls 1) refuses it by itself
        state, natural = STATES[kind]
        self.note_state(state, code or natural, kind, incoming=kind == "CALL_INCOMING",
                        confirmed=kind == "CALL_ESTABLISHED", closed=kind == "CALL_CLOSED")
        if kind == "CALL_CLOSED":
            if not r.confirmed and code is not None and code >= 300:
                r.invite_code = code
            elif not r.confirmed and param and not self.hung_up:
                r.note_error(f"call closed: {param}")

    def _collect(self) -> None:
        """Fill the report from the finished log and the sndfile dumps."""
        assert self.bs is not None
        a, r = self.args, self.report
        log = self.bs.log_text()
        msgs = bc.parse_trace(log, f"{a.bind}:{a.sip_port}")
        facts = bc.sip_facts(msgs)
        r.invite_code = facts.invite_code or r.invite_code
        r.bye, r.codec = facts.bye, facts.codec
        if r.role == "callee" and not r.confirmed and facts.invite_code == 487:
            r.cancelled, r.error = True, "cancelled by caller/PBX"
        r.local_sdp, r.remote_sdp = facts.sdp(local=True), facts.sdp(local=False)
        if a.stun and facts.local is not None and "media-nat 'stun' established" in log:
            r.stun_mapped = {"addr": facts.local.addr, "rtp": facts.local.port,
                             "rtcp": facts.local.rtcp or facts.local.port + 1}  # fmt: skip
        self._nat_facts(msgs, log)
        stats = bc.parse_rtp_stats(log)
        r.rtp = stats.get("audio", {"tx": 0, "rx": 0})
        if a.video:
            r.video = {"codec": "VP8" if facts.video_pt is not None else None,
                       "payload_type": facts.video_pt,
                       "rtp": stats.get("video", {"tx": 0, "rx": 0})}  # fmt: skip
        dumps = sorted(self.snd_dir.glob("dump-*-dec.wav"), key=lambda p: p.stat().st_mtime)
        heard = a.workdir / f"{a.ext}-heard.wav"
        if dumps and bc.concat_wavs(dumps, heard):
            r.recording = str(heard)
        self.snd_keep.mkdir(exist_ok=True)
        for dump in self.snd_dir.glob("dump-*.wav"):
            shutil.move(str(dump), self.snd_keep / dump.name)

    def _nat_facts(self, msgs: list[bc.SipMsg], log: str) -> None:
        """ICE candidates of the SDPs sent/received; the TURN relay from the SDP we sent."""
        r = self.report
        for m in msgs:
            cands = sdp_candidates(m.body)
            if r.ice is not None:
                side = r.ice["local" if m.sent else "remote"]
                side += [c for c in cands if c not in side]
            if r.turn is not None and m.sent and r.turn["relay_addr"] is None:
                if r.ice is None:  # medianat=turn: the SDP's address is the relay
                    local = bc.parse_sdp(m.body).get("audio")
                    if local is not None and local.addr is not None:
                        r.turn["relay_addr"] = f"{local.addr}:{local.port}"
                else:
                    relay = [c for c in cands if c["type"] == "relay"]
                    if relay:
                        r.turn["relay_addr"] = f"{relay[0]['addr']}:{relay[0]['port']}"
        if r.ice is not None:
            r.ice["state"], remote = bc.ice_facts(log)
            if remote is not None:  # baresip logs the remote end of the pair, not its type
                r.ice["selected"] = {"local": None, "remote": remote}


def main(argv: list[str] | None = None) -> int:
    return agent_main("baresip_agent", argv, parse_args, Agent,
                      lambda ag: dataclasses.asdict(ag.report),
                      lambda ag, t: setattr(ag.report, "error", t),
                      (OSError, RuntimeError, ValueError))


if __name__ == "__main__":
    raise SystemExit(main())
