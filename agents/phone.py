"""pjsua2 plumbing for the SIP agent: one endpoint, one account, at most one call.

Everything runs on the main thread (threadCnt=0, mainThreadOnly): callbacks fire only inside
`Phone.pump`, so they just record facts into the `Report` and the driver loop acts on them.
"""

from __future__ import annotations

import functools
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pjsua2 as pj

from agents.ice import TurnServer, parse_dump, sdp_candidates
from agents.report import Report
from agents.sdp import MediaMapping, parse_sdp, rewrite_sdp

STATE_NAMES = {
    pj.PJSIP_INV_STATE_NULL: "NULL",
    pj.PJSIP_INV_STATE_CALLING: "CALLING",
    pj.PJSIP_INV_STATE_INCOMING: "INCOMING",
    pj.PJSIP_INV_STATE_EARLY: "EARLY",
    pj.PJSIP_INV_STATE_CONNECTING: "CONNECTING",
    pj.PJSIP_INV_STATE_CONFIRMED: "CONFIRMED",
    pj.PJSIP_INV_STATE_DISCONNECTED: "DISCONNECTED",
}
FINAL_TSX_STATES = (pj.PJSIP_TSX_STATE_COMPLETED, pj.PJSIP_TSX_STATE_TERMINATED)
PCMU_ID = "PCMU/8000/1"
CLOCK_RATE = 8000


class Clock:
    """Seconds since agent start (monotonic), plus the wall-clock start time."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.t0_wall = time.time()

    def now(self) -> float:
        return time.monotonic() - self.t0


@dataclass
class PhoneConfig:
    ext: str
    bind: str
    sip_port: int
    rtp_port: int
    pbx: str | None
    tone_wav: Path | None
    record_path: Path
    log_path: Path | None
    log_level: int
    password: str | None = None  # digest password at the PBX (any realm)
    ice: bool = False  # pjnath ICE; srflx from ice_stun (RFC 5389 through pjnath)
    ice_stun: str | None = None  # IP:PORT
    turn: TurnServer | None = None  # ICE + a TURN relay candidate (UDP, long-term credentials)
    relay_only: bool = False  # no host candidates (ICE must use srflx/relay)
    keepalive: int = 0  # seconds between UDP keep-alives to the registrar (0: off)


F = TypeVar("F", bound=Callable[..., None])


def guarded(fn: F) -> F:
    """Keep exceptions inside pjsua2 callbacks (a raise there would abort the process)."""

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any) -> None:
        try:
            fn(self, *args)
        except Exception as exc:  # noqa: BLE001 - recorded, reported, never re-raised
            self.phone.note_error(f"{fn.__name__}: {exc!r}")

    return wrapper  # type: ignore[return-value]


class AgentCall(pj.Call):
    """Forwards call callbacks to the Phone."""

    def __init__(self, phone: Phone, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(phone.account, call_id)
        self.phone = phone

    @guarded
    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        self.phone.on_state(self, self.getInfo(), prm.e)

    @guarded
    def onCallTsxState(self, prm: pj.OnCallTsxStateParam) -> None:
        self.phone.on_tsx(self, prm.e.body.tsxState)

    @guarded
    def onCallSdpCreated(self, prm: pj.OnCallSdpCreatedParam) -> None:
        local = self.phone.on_sdp(self, prm.sdp.wholeSdp, prm.remSdp.wholeSdp)
        if local != prm.sdp.wholeSdp:
            prm.sdp.wholeSdp = local  # pjsua2 re-parses a changed SDP and sends it

    @guarded
    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        self.phone.on_media(self)

    @guarded
    def onStreamDestroyed(self, prm: pj.OnStreamDestroyedParam) -> None:
        self.phone.sample_stats()


class AgentAccount(pj.Account):
    """Forwards registration and incoming-call callbacks to the Phone."""

    def __init__(self, phone: Phone) -> None:
        super().__init__()
        self.phone = phone

    @guarded
    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        self.phone.on_reg(prm.code, prm.expiration)

    @guarded
    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        self.phone.on_incoming(prm.callId, prm.rdata.wholeMsg)


class Phone:
    """One pjsua2 endpoint with one account; owns the call and the media files."""

    def __init__(self, cfg: PhoneConfig, report: Report, clock: Clock) -> None:
        self.cfg = cfg
        self.report = report
        self.clock = clock
        self.ep: pj.Endpoint | None = None
        self.account: AgentAccount | None = None
        self.call: AgentCall | None = None
        self.extra_calls: list[AgentCall] = []
        self.busy: list[AgentCall] = []  # incoming calls during a call, to answer 486
        self.player: pj.AudioMediaPlayer | None = None
        self.recorder: pj.AudioMediaRecorder | None = None
        self.media_idx: int | None = None
        self.media_at: float | None = None
        self.media_end: float | None = None
        self.confirmed_at: float | None = None
        self.disconnected = False
        self.state = pj.PJSIP_INV_STATE_NULL
        self.incoming_at: float | None = None
        self.mapping: MediaMapping | None = None  # set by the agent after its STUN query

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Create the library, the UDP transport, the null audio device and the account."""
        self.ep = pj.Endpoint()
        self.ep.libCreate()
        self.ep.libInit(self._ep_config())
        tcfg = pj.TransportConfig()
        tcfg.port = self.cfg.sip_port
        tcfg.boundAddress = self.cfg.bind
        tcfg.publicAddress = self.cfg.bind  # SIP stays private: no STUN on the SIP transport
        tid = self.ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
        self.ep.libStart()
        self.ep.audDevManager().setNullDev()
        self._only_pcmu()
        if self.cfg.tone_wav is not None:
            self.player = pj.AudioMediaPlayer()
            self.player.createPlayer(str(self.cfg.tone_wav), 0)  # 0: loop at EOF
        self.account = AgentAccount(self)
        self.account.create(self._acc_config(tid))

    def close(self) -> None:
        """Shut down in the order pjsua2 needs: media, calls, gc, account, library."""
        self.player = self.recorder = None
        self.call = None
        self.extra_calls.clear()
        self.busy.clear()
        gc.collect()
        if self.account is not None:
            self.account.shutdown()
            self.account = None
        if self.ep is not None:
            # the account's unREGISTER is already sent; without NO_NETWORK pjsua would also
            # wait ~1 s for its answer and for transports, on every agent's exit
            self.ep.libDestroy(pj.PJSUA_DESTROY_NO_NETWORK)
            self.ep = None

    def pump(self, ms: int) -> None:
        assert self.ep is not None
        self.ep.libHandleEvents(ms)
        while self.busy:
            prm = pj.CallOpParam()
            prm.statusCode = 486
            self.busy.pop(0).answer(prm)

    def _ep_config(self) -> pj.EpConfig:
        cfg = pj.EpConfig()
        ua = cfg.uaConfig
        ua.threadCnt = 0
        ua.mainThreadOnly = True
        ua.maxCalls = 4
        ua.userAgent = "natlab-sipagent"
        ua.natTypeInSdp = 0  # no NAT-type detection traffic
        if self.cfg.ice and self.cfg.ice_stun:
            ua.stunServer.append(self.cfg.ice_stun)  # used by pjnath's ICE only (see _acc_config)
            ua.stunIgnoreFailure = True
        med = cfg.medConfig
        med.noVad = True  # VAD would stop RTP during silence
        med.clockRate = CLOCK_RATE
        med.sndClockRate = CLOCK_RATE
        med.ecTailLen = 0
        log = cfg.logConfig
        log.level = self.cfg.log_level
        log.consoleLevel = 0
        if self.cfg.log_path is not None:
            log.filename = str(self.cfg.log_path)
        return cfg

    def _only_pcmu(self) -> None:
        assert self.ep is not None
        for codec in self.ep.codecEnum2():
            self.ep.codecSetPriority(codec.codecId, 255 if codec.codecId == PCMU_ID else 0)

    def _acc_config(self, transport_id: int) -> pj.AccountConfig:
        c = self.cfg
        acc = pj.AccountConfig()
        if c.pbx:
            acc.idUri = f"sip:{c.ext}@{c.pbx}"
            acc.regConfig.registrarUri = f"sip:{c.pbx}"
            acc.regConfig.retryIntervalSec = 0
            if c.password is not None:  # answers 401 (REGISTER) and 407 (INVITE) of any realm
                acc.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", c.ext, 0,
                                                               c.password))
        else:
            acc.idUri = f"sip:{c.ext}@{c.bind}:{c.sip_port}"
        acc.sipConfig.transportId = transport_id
        acc.callConfig.timerUse = pj.PJSUA_SIP_TIMER_INACTIVE
        acc.mediaConfig.transportConfig.boundAddress = c.bind
        acc.mediaConfig.transportConfig.port = c.rtp_port
        nat = acc.natConfig
        # pjsua's own STUN is off: its media STUN speaks RFC 3489, which coturn 4.6 ignores.
        # With --stun the agent maps the RTP ports itself and rewrites the SDP (see on_sdp).
        nat.sipStunUse = pj.PJSUA_STUN_USE_DISABLED
        nat.mediaStunUse = pj.PJSUA_STUN_USE_DISABLED
        nat.contactRewriteUse = 0
        nat.viaRewriteUse = 0
        nat.sdpNatRewriteUse = 0
        nat.sipOutboundUse = 0
        nat.udpKaIntervalSec = c.keepalive
        nat.iceEnabled = c.ice
        nat.turnEnabled = False
        if c.ice:
            # pjnath's ICE STUN/TURN (RFC 5389) is what coturn answers; the srflx candidate
            # comes from the endpoint's stunServer. The call SDP's default c= is ICE's choice.
            nat.iceNoRtcp = False
            nat.mediaStunUse = pj.PJSUA_STUN_USE_DEFAULT  # ICE's STUN transport, not RFC 3489
            nat.iceAlwaysUpdate = True
            if c.relay_only:
                nat.iceMaxHostCands = 0
        if c.turn is not None:
            nat.turnEnabled = True
            nat.turnServer = c.turn.addr
            nat.turnConnType = pj.PJ_TURN_TP_UDP
            nat.turnUserName = c.turn.user
            nat.turnPasswordType = 0  # PJ_STUN_PASSWD_PLAIN
            nat.turnPassword = c.turn.password
        return acc

    # --- actions ---------------------------------------------------------------------------

    def make_call(self, uri: str) -> None:
        self.call = AgentCall(self)
        prm = pj.CallOpParam(True)
        prm.opt.audioCount = 1
        prm.opt.videoCount = 0
        self.call.makeCall(uri, prm)

    def answer(self, code: int) -> None:
        if self.call is None:
            return
        prm = pj.CallOpParam()
        prm.statusCode = code
        self.call.answer(prm)
        if code >= 200 and self.report.invite_code is None:
            self.report.invite_code = code

    def hangup(self) -> None:
        """End the call: our own BYE once the dialog is up, else CANCEL / a final response.

        pjsua's hangup() frees the call as soon as its BYE is sent, so the BYE's response
        would never be seen; a BYE sent with sendRequest() keeps the call until it is answered.
        """
        if self.call is None or self.disconnected:
            return
        self.sample_stats()
        self._media_ended()
        try:
            if self.state in (pj.PJSIP_INV_STATE_CONNECTING, pj.PJSIP_INV_STATE_CONFIRMED):
                prm = pj.CallSendRequestParam()
                prm.method = "BYE"
                self.call.sendRequest(prm)
            else:
                self.call.hangup(pj.CallOpParam())
        except pj.Error as exc:
            self.note_error(f"hangup: {exc.info()}")

    def sample_stats(self) -> None:
        """Keep the latest RTP counters (the stream disappears at hangup)."""
        if self.call is None or self.media_idx is None:
            return
        try:
            stat = self.call.getStreamStat(self.media_idx)
        except pj.Error:
            return
        self.report.rtp = {"tx": stat.rtcp.txStat.pkt, "rx": stat.rtcp.rxStat.pkt}

    def note_error(self, text: str) -> None:
        if self.report.error is None:
            self.report.error = text

    def _media_ended(self) -> None:
        if self.media_at is not None and self.media_end is None:
            self.media_end = self.clock.now()
            self.report.media_seconds = round(self.media_end - self.media_at, 3)

    # --- callbacks -------------------------------------------------------------------------

    def on_reg(self, code: int, expiration: int) -> None:
        # The first outcome of REGISTER; ignore the un-REGISTER (200, expires 0) at shutdown.
        if self.report.register_code is None and (code != 200 or expiration > 0):
            self.report.register_code = code

    def on_incoming(self, call_id: int, msg: str) -> None:
        call = AgentCall(self, call_id)
        if self.call is not None:  # one call at a time: 486 from pump(), not from here
            self.extra_calls.append(call)  # (a final answer inside this callback aborted
            self.busy.append(call)  # pjsua 2.15.1: "pjsip_rx_data_free_cloned: rdata")
            return
        self.call = call
        self.incoming_at = self.clock.now()
        self.report.remote_sdp = parse_sdp(msg) or self.report.remote_sdp
        self._note_candidates("remote", msg)
        self.answer(180)

    def on_state(self, call: AgentCall, ci: pj.CallInfo, ev: pj.SipEvent) -> None:
        if call is not self.call:
            return
        if ev.type == pj.PJSIP_EVENT_TSX_STATE:  # e.g. the BYE response that ended the call
            self.on_tsx(call, ev.body.tsxState)
        t = self.clock.now()
        self.state = ci.state
        name = STATE_NAMES.get(ci.state, str(ci.state))
        self.report.states.append({"t": round(t, 3), "state": name, "code": ci.lastStatusCode})
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.confirmed_at = t
            self.report.confirmed = True
        elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            callee = self.incoming_at is not None
            if callee and not self.report.confirmed and ci.lastStatusCode == 487:
                self.report.cancelled = True
                self.note_error("cancelled by caller/PBX")
            self.sample_stats()
            self._media_ended()
            self.disconnected = True

    def on_tsx(self, call: AgentCall, ev: pj.TsxStateEvent) -> None:
        if call is not self.call:
            return
        tsx = ev.tsx
        if ev.type == pj.PJSIP_EVENT_RX_MSG:
            sdp = parse_sdp(ev.src.rdata.wholeMsg)
            if sdp is not None:
                self.report.remote_sdp = sdp
                self._note_candidates("remote", ev.src.rdata.wholeMsg)
        final = tsx.state in FINAL_TSX_STATES and tsx.statusCode >= 200
        if tsx.method == "INVITE" and final and self.report.invite_code is None:
            self.report.invite_code = tsx.statusCode
        elif tsx.method == "BYE":
            bye = self.report.bye
            if bye["direction"] is None:
                bye["direction"] = "sent" if tsx.role == pj.PJSIP_ROLE_UAC else "received"
            if final and bye["status"] is None:
                bye["status"] = tsx.statusCode

    def on_sdp(self, call: AgentCall, local: str, remote: str) -> str:
        """Record both SDPs; return the local one, with the STUN mapping if there is one."""
        if call is not self.call:
            return local
        if remote:
            self.report.remote_sdp = parse_sdp(remote) or self.report.remote_sdp
            self._note_candidates("remote", remote)
        self._note_candidates("local", local)
        ours = parse_sdp(local)
        if self.mapping is not None and ours is not None:
            if ours["port"] == self.cfg.rtp_port:
                local = rewrite_sdp(local, self.mapping)
                ours = parse_sdp(local)
            else:  # pjsua moved to another port: the mapping is not for this one
                self.note_error(f"RTP port {self.cfg.rtp_port} busy: STUN mapping unused")
        self.report.local_sdp = ours or self.report.local_sdp
        return local

    def on_media(self, call: AgentCall) -> None:
        if call is not self.call:
            return
        info = call.getInfo()  # keep a reference: media items point into it
        for mi in info.media:
            if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                self._connect_audio(call, mi.index)
                return

    def _connect_audio(self, call: AgentCall, idx: int) -> None:
        aud = call.getAudioMedia(idx)
        if self.player is not None:
            self.player.startTransmit(aud)
        if self.recorder is None:
            self.recorder = pj.AudioMediaRecorder()
            self.recorder.createRecorder(str(self.cfg.record_path))
            self.report.recording = str(self.cfg.record_path)
        aud.startTransmit(self.recorder)
        self.media_idx = idx
        if self.media_at is None:
            self.media_at = self.clock.now()
        si = call.getStreamInfo(idx)
        self.report.codec = f"{si.codecName}/{si.codecClockRate}"
        self.sample_ice()

    # --- ICE / TURN facts ------------------------------------------------------------------

    def _note_candidates(self, side: str, sdp: str) -> None:
        ice = self.report.ice
        if ice is None:
            return
        known = ice[side]
        # the re-INVITE after nomination lists only the chosen candidate: keep the first offer's
        known += [c for c in sdp_candidates(sdp) if c not in known]
        if side == "local" and self.report.turn is not None:
            relay = [c for c in known if c["type"] == "relay"]
            if relay and self.report.turn["relay_addr"] is None:
                self.report.turn["relay_addr"] = f"{relay[0]['addr']}:{relay[0]['port']}"

    def sample_ice(self) -> None:
        """ICE state and selected pair from the call dump (pjsua2 has no structured getter)."""
        ice = self.report.ice
        if ice is None or self.call is None or self.media_idx is None:
            return
        try:
            text = self.call.dump(True, "")
        except pj.Error:
            return
        facts = parse_dump(text)
        if facts["state"] is not None:
            ice["role"], ice["state"] = facts["role"], facts["state"]
        if facts["selected"] is not None:
            ice["selected"] = facts["selected"]
