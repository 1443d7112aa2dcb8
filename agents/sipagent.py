"""Command-line SIP phone for the testbed: registers, calls or answers, plays a tone, reports.

One process per phone, run inside the phone's network namespace:

    python -m agents.sipagent --ext 1002 --bind 10.0.1.2 --pbx 10.0.1.1 --answer \\
        --tone-hz 1000 --workdir out/ --report out/1002.json --ready-file out/1002.ready
    python -m agents.sipagent --ext 1001 --bind 10.0.1.3 --pbx 10.0.1.1 --call 1002 \\
        --stun 198.51.100.10:3478 --tone-hz 440 --duration 10 --workdir out/

The JSON report is written whatever the call outcome (exit 0). Bad arguments or an internal
failure give a non-zero exit and one error line on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import socket
import threading
import time
from collections.abc import Sequence

import pjsua2 as pj

from agents.ice import add_nat_options, check_nat_args
from agents.phone import Clock, MediaMapping, Phone, PhoneConfig, Report
from agents.runmain import (
    add_phone_options,
    agent_main,
    agent_parser,
    check_phone_args,
    wait_registered,
)
from agents.tones import write_tone
from services import stunmsg

PUMP_MS = 20
ANSWER_DELAY = 0.2  # default seconds between 180 Ringing and 200 OK
SETTLE_SECONDS = 1.0  # how long to wait for the BYE's final response after hanging up
STATS_EVERY = 0.2
STUN_TIMEOUT = 1.0  # seconds per port, retransmitting every 0.25 s
STUN_REFRESH = 20.0  # seconds: re-map while idle (conntrack forgets idle UDP after 30 s)


def build_parser() -> argparse.ArgumentParser:
    p = agent_parser(
        "python -m agents.sipagent", __doc__.split("\n")[0],
        ext_help="extension / SIP user name, e.g. 1002",
        rtp_help="RTP port (4000)",
        max_wait_help="hard bound on the agent's life after registration (duration + 8)",
        workdir_help="tone WAV, <ext>-heard.wav recording and pjsip log go here (.)",
        stun_help="STUN server, media only: the agent maps its RTP/RTCP ports (RFC 5389) and "
                  "puts the public address in the SDP; Contact stays private. Without it no "
                  "NAT help at all")
    add_phone_options(p, ANSWER_DELAY,
                      duration_help="caller: hang up this many seconds after CONFIRMED (10)",
                      tone_help="play a looped sine of HZ")
    p.add_argument("--log-level", type=int, default=4, choices=range(0, 7), metavar="0-6",
                   help="pjsip log level of <workdir>/<ext>-pjsip.log (4 logs SIP messages)")
    add_nat_options(p)
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    args = check_nat_args(check_phone_args(build_parser().parse_args(argv)))
    args.ice = args.ice or args.turn_server is not None  # pjsua2's TURN lives inside ICE
    return args


def stun_map(bind: str, port: int, server: str) -> tuple[str, int] | None:
    """RFC 5389 Binding from bind:port (not yet taken by pjsua): the mapped (ip, port) or None."""
    host, _, server_port = server.partition(":")
    tid = stunmsg.new_transaction_id()
    request = stunmsg.binding_request(tid)
    end = time.monotonic() + STUN_TIMEOUT
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((bind, port))
        except OSError:
            return None
        while (left := end - time.monotonic()) > 0:
            try:
                sock.sendto(request, (host, int(server_port)))
                sock.settimeout(min(0.25, left))
                data = sock.recv(2048)
                return stunmsg.parse_binding_response(data, tid)
            except (OSError, ValueError):  # timeout, ICMP error or a stray datagram: retry
                continue
    return None


def target_uri(target: str, pbx: str | None) -> str:
    return target if target.startswith("sip:") else f"sip:{target}@{pbx}"


class Agent:
    """Drives one Phone through register → call/answer → hang up, within deadlines."""

    def __init__(self, args: argparse.Namespace, clock: Clock, stop: threading.Event) -> None:
        self.args = args
        self.clock = clock
        self.stop = stop
        self.report = Report(
            ext=args.ext,
            role="caller" if args.call else "callee",
            bind=args.bind,
            stun=args.stun,
            t0_wall=clock.t0_wall,
            tone_hz=args.tone_hz,
        )
        if args.ice:
            self.report.enable_ice(args.turn)
        self.report.keepalive_s = args.keepalive
        self.phone = Phone(self._phone_config(), self.report, clock)
        self.stun_at = 0.0

    def _phone_config(self) -> PhoneConfig:
        a = self.args
        tone = None
        if a.tone_hz is not None:
            tone = a.workdir / f"{a.ext}-tone-{a.tone_hz:g}.wav"
        return PhoneConfig(
            ext=a.ext,
            bind=a.bind,
            sip_port=a.sip_port,
            rtp_port=a.rtp_port,
            pbx=a.pbx,
            password=a.password,
            tone_wav=tone,
            record_path=a.workdir / f"{a.ext}-heard.wav",
            log_path=a.workdir / f"{a.ext}-pjsip.log",
            log_level=a.log_level,
            ice=a.ice,
            ice_stun=a.stun if a.ice else None,
            turn=a.turn_server,
            relay_only=a.relay_only,
            keepalive=a.keepalive,
        )

    def run(self) -> None:
        """Set up, run the call, shut down; pjsua2 errors propagate after shutdown."""
        a = self.args
        a.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.phone.cfg
        if cfg.tone_wav is not None:  # longer than any call: the agent lives <= max-wait
            write_tone(cfg.tone_wav, a.tone_hz, a.max_wait + 5)
        try:
            self.phone.start()
            if a.pbx and not self._register():
                return
            self._map_media()
            if a.ready_file is not None:
                a.ready_file.touch()
            self._converse()
        finally:
            self.phone.close()

    def _register(self) -> bool:
        return wait_registered(self.report, lambda: self.phone.pump(PUMP_MS), self.clock.now,
                               self.args.max_wait, self.stop)

    def _map_media(self) -> None:
        """With --stun: learn the public address of the RTP and RTCP ports for the SDP."""
        if not self.args.stun or self.args.ice:  # with ICE, pjnath does STUN itself
            return
        self.stun_at = self.clock.now()
        a = self.args
        rtp = stun_map(a.bind, a.rtp_port, a.stun)
        rtcp = stun_map(a.bind, a.rtp_port + 1, a.stun)
        if rtp is None or rtcp is None or rtp[0] != rtcp[0]:
            self.phone.note_error(f"no STUN mapping for ports {a.rtp_port}/{a.rtp_port + 1}")
            return
        mapping = MediaMapping(addr=rtp[0], rtp=rtp[1], rtcp=rtcp[1])
        self.phone.mapping = mapping
        self.report.stun_mapped = dataclasses.asdict(mapping)

    def _converse(self) -> None:
        deadline = self.clock.now() + self.args.max_wait
        if self.args.call:
            self.phone.make_call(target_uri(self.args.call, self.args.pbx))
        if self._call_loop(deadline):
            self._settle(0.5 if self.stop.is_set() else SETTLE_SECONDS)
        else:
            self._settle(0.5)  # let the last responses (e.g. 200 to BYE) go out
        self._explain_failure()

    def _explain_failure(self) -> None:
        r = self.report
        if r.confirmed or r.error is not None:
            return
        if self.phone.call is None:
            r.error = "no call arrived within max-wait"
        elif r.invite_code is not None and r.invite_code >= 300:
            r.error = f"call failed: {r.invite_code}"
        else:
            r.error = "call not confirmed within max-wait"

    def _call_loop(self, deadline: float) -> bool:
        """Pump until the call ends or it is time to hang up; True if we hung up."""
        phone, answered, last_sample = self.phone, False, 0.0
        while not phone.disconnected:
            phone.pump(PUMP_MS)
            now = self.clock.now()
            own_stun = self.args.stun and not self.args.ice
            if phone.call is None and own_stun and now - self.stun_at >= STUN_REFRESH:
                self._map_media()
            if now - last_sample >= STATS_EVERY:
                phone.sample_stats()
                phone.sample_ice()
                last_sample = now
            if phone.incoming_at is not None and not answered and not phone.disconnected:
                if self.args.answer and now >= phone.incoming_at + self.args.answer_delay:
                    self._answer()
                    answered = True
            limit = deadline
            if self.args.call and phone.confirmed_at is not None:
                limit = min(deadline, phone.confirmed_at + self.args.duration)
            if now >= limit or self.stop.is_set():
                if phone.call is None:
                    return False
                phone.hangup()
                return True
        return False

    def _answer(self) -> None:
        try:
            self.phone.answer(200)
        except pj.Error as exc:
            self.phone.note_error(f"answer: {exc.reason}")

    def _settle(self, seconds: float = SETTLE_SECONDS) -> None:
        """Pump until the call is gone and any BYE has its final response, at most `seconds`."""
        end = self.clock.now() + seconds
        while self.clock.now() < end:
            bye = self.report.bye
            bye_open = bye["direction"] is not None and bye["status"] is None
            if self.phone.disconnected and not bye_open:
                break
            self.phone.pump(PUMP_MS)

def _pj_text(exc: BaseException) -> str:
    return exc.info() if isinstance(exc, pj.Error) else str(exc)


def main(argv: list[str] | None = None) -> int:
    return agent_main("sipagent", argv, parse_args, lambda a, s: Agent(a, Clock(), s),
                      lambda ag: dataclasses.asdict(ag.report),
                      lambda ag, t: setattr(ag.report, "error", t),
                      (pj.Error, OSError), _pj_text)


if __name__ == "__main__":
    raise SystemExit(main())
