"""Conference bridge for the testbed: registers as one extension, answers every call, mixes them.

One process, run inside a namespace like the agent (agents.sipagent):
    python -m agents.confbridge --ext 2900 --bind 10.0.1.9 --pbx 10.0.1.1 --max-wait 60 \\
        --workdir out/ --report out/2900.json --ready-file out/2900.ready

Every participant hears every other one (pjsua2's conference bridge: each call's audio is
connected to every other call's, never to itself). It runs until --max-wait (counted from
registration) or SIGTERM/SIGINT, hangs up on everyone still there and writes the JSON report
(exit 0 whatever happened to the calls; 2 for bad arguments, 1 for an internal failure).
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pjsua2 as pj

from agents import sipagent
from agents.phone import (
    AgentCall,
    Clock,
    MediaMapping,
    Phone,
    PhoneConfig,
    Report,
    parse_sdp,
    rewrite_sdp,
)
from agents.runmain import agent_main, agent_parser, check_agent_args, positive, wait_registered
from agents.sipagent import PUMP_MS, STATS_EVERY, STUN_REFRESH, stun_map

MAX_CALLS = 8
SETTLE_SECONDS = 0.5  # after hanging up: pump so the BYEs are retransmitted/answered


@dataclass
class Participant:
    """One caller as the bridge saw it; serialised into the report."""

    remote_uri: str
    remote_sdp: dict[str, Any] | None = None
    local_sdp: dict[str, Any] | None = None
    confirmed: bool = False
    rtp: dict[str, int] = field(default_factory=lambda: {"tx": 0, "rx": 0})
    t_join: float | None = None  # CONFIRMED, seconds since start
    t_leave: float | None = None  # DISCONNECTED
    end_code: int | None = None
    recording: str | None = None  # what this participant heard (--record)


@dataclass(eq=False)
class Leg:
    """A participant's call and its place on the conference bridge."""

    call: AgentCall
    part: Participant
    media: pj.AudioMedia | None = None
    media_idx: int | None = None
    recorder: pj.AudioMediaRecorder | None = None  # what this participant hears
    to_answer: bool = True
    done: bool = False


class ConfBridge(Phone):
    """A Phone that takes many calls at once and connects their audio all-to-all."""

    def __init__(self, cfg: PhoneConfig, report: Report, clock: Clock, record: bool,
                 max_calls: int = MAX_CALLS) -> None:
        super().__init__(cfg, report, clock)
        self.record = record
        self.max_calls = max_calls
        self.legs: list[Leg] = []
        self.participants: list[Participant] = []
        self.mappings: dict[int, MediaMapping] = {}  # local RTP port -> STUN mapping
        self.localnet: ipaddress.IPv4Network | None = None  # peers here get the private address

    def rtp_ports(self) -> list[int]:
        """The RTP ports pjsua cycles through (portRange keeps it inside these)."""
        return [self.cfg.rtp_port + 2 * k for k in range(self.max_calls)]

    def active(self) -> list[Leg]:
        return [leg for leg in self.legs if not leg.done]

    def _leg(self, call: AgentCall) -> Leg | None:
        return next((leg for leg in self.legs if leg.call is call), None)

    def _ep_config(self) -> pj.EpConfig:  # Phone's, with more calls
        cfg = super()._ep_config()
        cfg.uaConfig.maxCalls = self.max_calls
        cfg.uaConfig.userAgent = "natlab-confbridge"
        return cfg

    def _acc_config(self, transport_id: int) -> pj.AccountConfig:  # ports within rtp_ports()
        acc = super()._acc_config(transport_id)
        acc.mediaConfig.transportConfig.portRange = 2 * (self.max_calls - 1)
        return acc

    def _respond(self, call: AgentCall, code: int) -> None:
        prm = pj.CallOpParam()
        prm.statusCode = code
        try:
            call.answer(prm)
        except pj.Error as exc:
            self.note_error(f"answer {code}: {exc.reason}")

    def answer_waiting(self) -> None:
        """200 OK to calls that rang during the last pump (not from inside the callback)."""
        for leg in self.active():
            if leg.to_answer:
                leg.to_answer = False
                self._respond(leg.call, 200)

    def sample_stats(self) -> None:
        for leg in self.active():
            if leg.media_idx is None:
                continue
            try:
                stat = leg.call.getStreamStat(leg.media_idx)
            except pj.Error:
                continue
            leg.part.rtp = {"tx": stat.rtcp.txStat.pkt, "rx": stat.rtcp.rxStat.pkt}

    def hangup_all(self) -> int:
        """BYE (or a final response) to everyone still here; how many that was."""
        self.sample_stats()
        legs = self.active()
        for leg in legs:
            try:
                leg.call.hangup(pj.CallOpParam())
            except pj.Error as exc:
                self.note_error(f"hangup: {exc.info()}")
        return len(legs)

    def _drop_media(self) -> None:
        for leg in self.legs:
            leg.media = leg.recorder = None

    def close(self) -> None:
        """Media, calls, then Phone.close (gc, account, libDestroy). No loop variable here:
        a Leg left in this frame keeps its Call past libDestroy and the process aborts."""
        self._drop_media()
        self.legs.clear()
        super().close()

    # --- callbacks -------------------------------------------------------------------------

    def on_incoming(self, call_id: int, msg: str) -> None:
        call = AgentCall(self, call_id)
        if len(self.active()) >= self.max_calls:
            self._respond(call, 486)
            self.extra_calls.append(call)
            return
        part = Participant(remote_uri=call.getInfo().remoteUri, remote_sdp=parse_sdp(msg))
        self.participants.append(part)
        self.legs.append(Leg(call, part))
        self._respond(call, 180)

    def on_state(self, call: AgentCall, ci: pj.CallInfo, ev: pj.SipEvent) -> None:
        leg = self._leg(call)
        if leg is None:
            return
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
            leg.part.confirmed = True
            leg.part.t_join = round(self.clock.now(), 3)
        elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED and not leg.done:
            self.sample_stats()
            leg.done = True
            leg.media = None
            leg.part.t_leave = round(self.clock.now(), 3)
            leg.part.end_code = ci.lastStatusCode

    def on_sdp(self, call: AgentCall, local: str, remote: str) -> str:
        """Record both SDPs; put the STUN mapping of the port pjsua chose into ours."""
        leg = self._leg(call)
        if leg is None:
            return local
        if remote:
            leg.part.remote_sdp = parse_sdp(remote) or leg.part.remote_sdp
        ours = parse_sdp(local)
        if ours is not None and self.mappings and not self._is_local(leg.part.remote_sdp):
            mapping = self.mappings.get(ours["port"])
            if mapping is not None:
                local = rewrite_sdp(local, mapping)
                ours = parse_sdp(local)
            else:
                self.note_error(f"RTP port {ours['port']} has no STUN mapping")
        leg.part.local_sdp = ours or leg.part.local_sdp
        return local

    def _is_local(self, sdp: dict[str, Any] | None) -> bool:
        """A peer on our own LAN (in --localnet, or behind our own public address) gets our
        private address, as Asterisk's localnet/externip do: the NAT does not hairpin, and
        pjmedia then latches onto the source of the peer's RTP (symmetric RTP)."""
        if self.localnet is None or not sdp or not sdp.get("addr"):
            return False
        addr = ipaddress.ip_address(sdp["addr"])
        public = {m.addr for m in self.mappings.values()}
        return addr in self.localnet or sdp["addr"] in public

    def on_media(self, call: AgentCall) -> None:
        leg = self._leg(call)
        if leg is None or leg.done:
            return
        info = call.getInfo()  # keep a reference: media items point into it
        for mi in info.media:
            if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                self._join(leg, mi.index)
                return
        leg.media = None  # on hold or gone: pjsua already took it off the bridge

    def _join(self, leg: Leg, idx: int) -> None:
        """Connect leg's audio to and from every other participant (and their recorders)."""
        aud = leg.call.getAudioMedia(idx)
        leg.media, leg.media_idx = aud, idx
        if self.record and leg.recorder is None:
            number = self.participants.index(leg.part) + 1
            path = self.cfg.record_path.with_name(f"{self.cfg.ext}-heard-{number}.wav")
            leg.recorder = pj.AudioMediaRecorder()
            leg.recorder.createRecorder(str(path))
            leg.part.recording = str(path)
        for other in self.active():
            if other is leg or other.media is None:
                continue
            aud.startTransmit(other.media)
            other.media.startTransmit(aud)
            if other.recorder is not None:
                aud.startTransmit(other.recorder)
            if leg.recorder is not None:
                other.media.startTransmit(leg.recorder)


def map_ports(bind: str, ports: list[int], server: str) -> dict[int, MediaMapping] | str:
    """STUN-map each RTP/RTCP pair (as the agent does for its one pair); an error text if not."""
    mappings = {}
    for port in ports:
        rtp = stun_map(bind, port, server)
        rtcp = stun_map(bind, port + 1, server)
        if rtp is None or rtcp is None or rtp[0] != rtcp[0]:
            return f"no STUN mapping for ports {port}/{port + 1}"
        mappings[port] = MediaMapping(addr=rtp[0], rtp=rtp[1], rtcp=rtcp[1])
    return mappings


def build_parser() -> argparse.ArgumentParser:
    p = agent_parser(
        "python -m agents.confbridge", __doc__.split("\n")[0],
        ext_help="the conference extension, e.g. 2900",
        rtp_help="first RTP port; call n uses PORT + 2n, wrapping at --max-calls (4000)",
        pbx_required=True, max_wait=60.0,
        max_wait_help="run this long after registration, then hang up on everyone (60)",
        workdir_help="recordings and pjsip log go here (.)",
        ready_help="touched once registered",
        stun_help="STUN server, media only, as the agent's --stun (every RTP port mapped)")
    add = p.add_argument
    add("--max-calls", type=positive(int), default=MAX_CALLS, metavar="N",
        help=f"participants at once; more get 486 ({MAX_CALLS})")
    add("--localnet", type=ipaddress.IPv4Network, metavar="CIDR",
        help="with --stun: peers in this subnet, or behind our own public address, "
             "get the private address (no hairpin NAT needed)")
    add("--record", action="store_true",
        help="record what each participant hears: <ext>-heard-<n>.wav")
    add("--log-level", type=int, default=4, choices=range(0, 7), metavar="0-6",
        help="pjsip log level of <workdir>/<ext>-pjsip.log (4 logs SIP messages)")
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    return check_agent_args(build_parser().parse_args(argv))


class Conference:
    """Drives the bridge: register → (STUN) → answer and mix until the deadline → hang up."""

    def __init__(self, args: argparse.Namespace, clock: Clock, stop: threading.Event) -> None:
        self.args = args
        self.clock = clock
        self.stop = stop
        self.report = Report(ext=args.ext, role="conference", bind=args.bind, stun=args.stun,
                             t0_wall=clock.t0_wall)
        cfg = PhoneConfig(ext=args.ext, bind=args.bind, sip_port=args.sip_port,
                          rtp_port=args.rtp_port, pbx=args.pbx, password=args.password,
                          tone_wav=None,
                          record_path=args.workdir / f"{args.ext}-heard.wav",
                          log_path=args.workdir / f"{args.ext}-pjsip.log",
                          log_level=args.log_level)
        self.bridge = ConfBridge(cfg, self.report, clock, args.record, args.max_calls)
        self.bridge.localnet = args.localnet
        self.stun_at = 0.0

    def run(self) -> None:
        a = self.args
        a.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.bridge.start()
            if not self._register():
                return
            self._map_media()
            if a.ready_file is not None:
                a.ready_file.touch()
            self._serve(self.clock.now() + a.max_wait)
        finally:
            self.bridge.close()

    def _register(self) -> bool:
        return wait_registered(self.report, lambda: self.bridge.pump(PUMP_MS), self.clock.now,
                               self.args.max_wait, self.stop)

    def _map_media(self) -> None:
        if not self.args.stun:
            return
        self.stun_at = self.clock.now()
        found = map_ports(self.args.bind, self.bridge.rtp_ports(), self.args.stun)
        if isinstance(found, str):
            if not self.bridge.mappings:  # a failed refresh keeps the mapping we have
                self.bridge.note_error(found)
            return
        self.bridge.mappings = found
        self.report.stun_mapped = {str(p): dataclasses.asdict(m) for p, m in found.items()}

    def _serve(self, deadline: float) -> None:
        bridge, last_sample = self.bridge, 0.0
        while self.clock.now() < deadline and not self.stop.is_set():
            bridge.pump(PUMP_MS)
            bridge.answer_waiting()
            now = self.clock.now()
            if now - last_sample >= STATS_EVERY:
                bridge.sample_stats()
                last_sample = now
            idle = not bridge.active()
            if self.args.stun and bridge.mappings and idle and now - self.stun_at >= STUN_REFRESH:
                self._map_media()  # conntrack forgets idle mappings; no call holds a port now
        if bridge.hangup_all():  # pjsua forgets a call once its BYE is sent: pump blindly
            end = self.clock.now() + SETTLE_SECONDS
            while self.clock.now() < end:
                bridge.pump(PUMP_MS)

    def report_dict(self) -> dict[str, Any]:
        r, parts = self.report, self.bridge.participants
        return {"ext": r.ext, "bind": r.bind, "pbx": self.args.pbx, "stun": r.stun,
                "t0_wall": r.t0_wall, "register_code": r.register_code, "stun_mapped":
                r.stun_mapped, "participants": [dataclasses.asdict(p) for p in parts],
                "error": r.error}

def main(argv: list[str] | None = None) -> int:
    return agent_main("confbridge", argv, parse_args, lambda a, s: Conference(a, Clock(), s),
                      lambda c: c.report_dict(),
                      lambda c, t: setattr(c.report, "error", t),
                      (pj.Error, OSError), sipagent._pj_text)


if __name__ == "__main__":
    raise SystemExit(main())
