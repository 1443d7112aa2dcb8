"""Verdict of one call and its explanation from evidence (agent reports + captures).

The thresholds are the named expectations of analysis.expect. Everything here is a pure
function of what a run left on disk: agent reports, pcaps, recordings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.evidence import Captures, Labels, final_response, requests, responses, where
from analysis.expect import (
    AUDIO_PAYLOAD_TYPES,
    ERROR,
    MIN_TX_FRACTION,
    PACKETS_PER_S,
    RTP_RATIO,
)
from analysis.packets import SipMessage
from analysis.tones import contains_tone
from topology.plan import Plan, phone_name


@dataclass(frozen=True)
class Subject:
    """What a verdict is about: the scenario, its remedies, and what the paper predicts."""
    name: str
    stun: bool
    trunk: str
    expect: str


@dataclass(frozen=True)
class CallSpec:
    """One call and what a working call must show."""
    caller: str
    callee: str
    duration_s: float
    caller_tone_hz: int
    callee_tone_hz: int
    loss_pct: float = 0.0  # a configured random WAN loss lowers the received/sent bar


@dataclass
class Verdict:
    name: str
    stun: bool
    trunk: str
    expect: str
    verdict: str  # works | fails | error (an attack: obtained | refused)
    rtp_received: dict[str, int]
    rtp_sent: dict[str, int]
    checks: dict[str, bool]
    explanation: str
    evidence: list[str] = field(default_factory=list)
    seconds: float = 0.0
    calls: list[dict[str, Any]] = field(default_factory=list)  # per call, multi-call scenarios
    rtp_agent: dict[str, Any] = field(default_factory=dict)  # the agents' own RTP counters
    nat: dict[str, Any] = field(default_factory=dict)  # the NAT matrix cell (analysis.nat)
    wall_s: float = 0.0  # the scenario's wall time (topology up to teardown)
    fault: dict[str, Any] = field(default_factory=dict)  # a fault's timeline (analysis.fault)
    load: dict[str, Any] = field(default_factory=dict)  # a load step's table row (analysis.load)
    attack: dict[str, Any] = field(default_factory=dict)  # an attack's outcome (analysis.attack)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def of(cls, subject: Subject, **fields: Any) -> Verdict:
        return cls(name=subject.name, stun=subject.stun, trunk=subject.trunk,
                   expect=subject.expect, **fields)


def error_verdict(subject: Subject, line: str, seconds: float = 0.0) -> Verdict:
    """The summary entry of a scenario whose analysis failed: the one-line reason."""
    return Verdict.of(subject, verdict=ERROR, rtp_received={"caller": 0, "callee": 0},
                      rtp_sent={"caller": 0, "callee": 0}, checks={},
                      explanation=f"Analysis failed: {line}", evidence=[line],
                      seconds=round(seconds, 2))


def rtp_count(report: dict[str, Any], key: str, media: str = "") -> int:
    """tx or rx of a report's audio ("rtp") or of one of its media sections (e.g. "video")."""
    src = report.get(media) if media else report
    return int(((src or {}).get("rtp") or {}).get(key) or 0)


def lead_line(checks: dict[str, bool]) -> str:
    """The first sentence of an explanation: works, or which checks failed."""
    failed = [k for k, ok in checks.items() if not ok]
    return f"Fails ({', '.join(failed)})." if failed else "Works: every check passed."


def with_checks(v: Verdict, checks: dict[str, bool], lines: list[str]) -> Verdict:
    """Add a kind's own checks and sentences to a call's verdict; recompute its outcome."""
    v.checks.update(checks)
    v.evidence += lines
    v.verdict = "works" if all(v.checks.values()) else "fails"
    v.explanation = " ".join([lead_line(v.checks), *v.evidence])
    return v


def _checks(spec: CallSpec, caller: dict[str, Any], callee: dict[str, Any]) -> dict[str, bool]:
    min_tx = MIN_TX_FRACTION * spec.duration_s * PACKETS_PER_S
    ratio = RTP_RATIO * (1.0 - spec.loss_pct / 100.0)
    heard = {
        "caller_heard_callee": heard_tone(caller, spec.callee_tone_hz),
        "callee_heard_caller": heard_tone(callee, spec.caller_tone_hz),
    }
    return {
        "invite_200": caller.get("invite_code") == 200,
        "caller_confirmed": bool(caller.get("confirmed")),
        "callee_confirmed": bool(callee.get("confirmed")),
        "bye_answered": _bye_ok(caller) or _bye_ok(callee),
        "rtp_to_caller": rtp_count(callee, "tx") >= min_tx
        and rtp_count(caller, "rx") >= ratio * _receivable(callee, caller),
        "rtp_to_callee": rtp_count(caller, "tx") >= min_tx
        and rtp_count(callee, "rx") >= ratio * _receivable(caller, callee),
        **heard,
    }


def _receivable(sender: dict[str, Any], receiver: dict[str, Any]) -> float:
    """What the sender sent while the receiver's call was up: the callee starts its media
    when it answers, but the caller's NAT lets it in only once the 200 OK reached the caller
    (a 200 OK lost on a lossy WAN is resent after 500 ms: ~25 packets the NAT drops)."""
    sent = rtp_count(sender, "tx")
    up = float(receiver.get("media_seconds") or 0.0)
    return min(sent, up * PACKETS_PER_S) if up > 0 else sent


def _bye_ok(report: dict[str, Any]) -> bool:
    bye = report.get("bye") or {}
    return bye.get("direction") == "sent" and bye.get("status") == 200


def _cseq(m: SipMessage) -> int:
    number = m.header("cseq").split()[:1]
    return int(number[0]) if number and number[0].isdigit() else -1


def heard_tone(report: dict[str, Any], hz: int) -> bool:
    rec = report.get("recording")
    return isinstance(rec, str) and Path(rec).exists() and contains_tone(Path(rec), hz)


class Explainer:
    """Builds the sentences: what went wrong first, and where the packets show it."""

    def __init__(self, plan: Plan, call: CallSpec, caps: Captures):
        self.plan, self.call, self.caps = plan, call, caps
        self.label = Labels(plan)
        self.caller_lan, self.callee_lan = plan.lan_of(call.caller), plan.lan_of(call.callee)
        self.c_lan = f"r{self.caller_lan.index}-lan"
        self.c_wan = f"r{self.caller_lan.index}-wan"
        self.e_lan = f"r{self.callee_lan.index}-lan"
        self.e_wan = f"r{self.callee_lan.index}-wan"
        self.c_pbx, self.e_pbx = self.caller_lan.pbx_name, self.callee_lan.pbx_name
        self.c_ip = self.caller_lan.phones[call.caller]
        self.e_ip = self.callee_lan.phones[call.callee]
        invite = caps.first_invite(self.c_pbx, self.c_ip)
        self.call_id = invite.call_id if invite else ""
        self.msgs = {k: caps.call_sip(k, self.call_id) for k in caps.sip}

    def signalling(self, checks: dict[str, bool]) -> list[str]:
        call, lab = self.call, self.label
        if not self.call_id:
            return [f"{call.caller} never sent an INVITE ({self.c_pbx}.pcap has none)."]
        # the last INVITE transaction: a protected PBX challenges the first one (407)
        invites = [m for m in requests(self.msgs[self.c_pbx], "INVITE") if m.pkt.src == self.c_ip]
        last = max((_cseq(m) for m in invites), default=None)
        to_caller = [m for m in self.msgs[self.c_pbx]
                     if m.pkt.dst == self.c_ip and (last is None or _cseq(m) == last)]
        final = final_response(to_caller, "INVITE")
        if final is None:
            return [f"The INVITE from {call.caller} got no final response "
                    f"({self.c_pbx}.pcap shows {len(requests(self.msgs[self.c_pbx], 'INVITE'))} "
                    "INVITE(s) and no answer)."]
        if final.status != 200:
            out = [f"{lab(final.pkt.src)} answered the INVITE with '{final.first_line[8:]}' "
                   f"({where(self.c_pbx, final)})."]
            if not self.msgs[self.c_wan]:
                out.append(f"{self.c_wan}.pcap has 0 SIP packets of this call: it never left "
                           f"LAN{self.caller_lan.index}.")
            return out
        if not checks["callee_confirmed"]:
            return self._lost_in_dialog("ACK", f"{call.callee} never got the ACK")
        if not checks["bye_answered"]:
            return self._lost_in_dialog("BYE", "the BYE was never answered")
        ack = [m for m in requests(self.msgs[self.e_pbx], "ACK") if m.pkt.dst == self.e_ip]
        ok = [f"Signalling completed: 200 OK ({where(self.c_pbx, final)}), ACK delivered to "
              f"{call.callee}" + (f" ({where(self.e_pbx, ack[0])})" if ack else "")]
        bye_ok = responses(self.msgs[self.c_pbx], "BYE", 200)
        if bye_ok:
            ok[0] += f", BYE answered 200 OK ({where(self.c_pbx, bye_ok[0])})"
        return [ok[0] + "."]

    def _lost_in_dialog(self, method: str, what: str) -> list[str]:
        lab = self.label
        sent = requests(self.msgs[self.c_wan], method) or requests(self.msgs[self.e_wan], method)
        if not sent:
            return [f"{what}: no {method} of this call appears on either WAN capture."]
        first = sent[0]
        intf = self.c_wan if first in self.msgs[self.c_wan] else self.e_wan
        out = [f"{what}: the {method} left toward {lab(first.pkt.dst)} ({where(intf, first)})"]
        if lab.is_private(first.pkt.dst):
            out[0] += ", a private address that no public router can reach"
            rr = self._record_route_to(first.pkt.dst)
            if rr:
                out[0] += f"; it was taken from the Record-Route '{rr[1]}' ({rr[0]})"
        out[0] += "."
        retrans = [m for m in responses(self.msgs[self.e_pbx], "INVITE", 200)
                   if m.pkt.src == self.e_ip]
        if method == "ACK" and len(retrans) > 1:
            out.append(f"{self.call.callee} kept retransmitting its 200 OK: {len(retrans)} copies "
                       f"in {self.e_pbx}.pcap.")
        return out

    def _record_route_to(self, addr: str) -> tuple[str, str] | None:
        """The first Record-Route naming `addr`, as seen crossing a WAN link."""
        for intf in (self.c_wan, self.e_wan):
            for m in self.msgs[intf]:
                for value in m.headers.get("record-route", []):
                    for rr in value.split(","):
                        host = rr.split("sip:", 1)[-1].split(";")[0].split(">")[0].split(":")[0]
                        if host == addr:
                            return str(where(intf, m)), rr.strip()
        return None

    def media(self, reports: dict[str, dict[str, Any]], checks: dict[str, bool]) -> list[str]:
        if not checks["invite_200"]:
            sent = [rtp_count(reports[role], "tx") for role in ("caller", "callee")]
            return ["No media: the call was never answered, so no RTP was sent "
                    f"(sent {sent[0]} / {sent[1]})."]
        out = []
        for snd, rcv, key in (("caller", "callee", "rtp_to_callee"),
                              ("callee", "caller", "rtp_to_caller")):
            out.append(self._direction(snd, rcv, reports, checks[key]))
        return out

    def _offer(self, role: str) -> tuple[SipMessage | None, str]:
        """The SDP `role` sent, as seen on its own LAN (INVITE for caller, 200 OK for callee)."""
        intf, ip = (self.c_pbx, self.c_ip) if role == "caller" else (self.e_pbx, self.e_ip)
        msgs = [m for m in self.msgs[intf] if m.pkt.src == ip]
        cand = requests(msgs, "INVITE") if role == "caller" else responses(msgs, "INVITE", 200)
        for m in cand:
            if m.sdp is not None:
                return m, intf
        return None, intf

    def _direction(self, snd: str, rcv: str, reports: dict[str, dict[str, Any]], ok: bool) -> str:
        call, lab = self.call, self.label
        s_ext, r_ext = (call.caller, call.callee) if snd == "caller" else (call.callee, call.caller)
        tx, rx = rtp_count(reports[snd], "tx"), rtp_count(reports[rcv], "rx")
        head = f"RTP {s_ext} -> {r_ext}: sent {tx}, received {rx}"
        offer, intf = self._offer(rcv)
        sdp = offer.sdp if offer is not None else None
        if offer is None or sdp is None or sdp.addr is None:
            return f"{head}; {r_ext} never sent an SDP (no media negotiated)."
        addr = sdp.addr
        what = "INVITE" if rcv == "caller" else "200 OK"
        c_line = f"c={sdp.addr} m=audio {sdp.audio_port}"
        s_lan = self.caller_lan if snd == "caller" else self.callee_lan
        s_wan = f"r{s_lan.index}-wan"
        if ok:
            kind = "public" if lab.is_public(addr) else "private"
            return (f"{head}. The {what} from {r_ext} offered {c_line} ({lab(sdp.addr)}, "
                    f"{kind}; {where(intf, offer)}).")
        if lab.is_private(addr) and addr not in s_lan.phones.values():
            out_pkts = self.caps.rtp_to(s_wan, addr, sdp.audio_port)
            first = f", first {where(s_wan, out_pkts[0])}" if out_pkts else ""
            return (f"{head}. The {what} from {r_ext} offers {c_line}, a private address of "
                    f"{lab.lan_name(addr) or 'another network'} ({where(intf, offer)}); "
                    f"r{s_lan.index} sent {s_ext}'s RTP nowhere: {s_wan}.pcap has "
                    f"{len(out_pkts)} RTP packets to {sdp.addr}{first}, which the public core "
                    "cannot route.")
        r_lan = self.callee_lan if rcv == "callee" else self.caller_lan
        r_wan, r_lan_if = f"r{r_lan.index}-wan", f"r{r_lan.index}-lan"
        arrived = self.caps.rtp_to(r_wan, addr, sdp.audio_port)
        inside = self.caps.rtp_to(r_lan_if, r_lan.phones[r_ext])
        at_phone = self.caps.rtp_to(phone_name(r_ext), r_lan.phones[r_ext])
        return (f"{head}. The {what} from {r_ext} offered {c_line} ({where(intf, offer)}); "
                f"{r_wan}.pcap has {len(arrived)} RTP packets to it, r{r_lan.index} passed "
                f"{len(inside)} into LAN{r_lan.index} ({r_lan_if}.pcap) and "
                f"{phone_name(r_ext)}.pcap shows {len(at_phone)} reaching {r_ext}.")


def wirertp_count(caps: Captures, plan: Plan, spec: CallSpec) -> dict[str, dict[str, int]]:
    """Audio RTP packets each phone sent and received, counted on its own capture (what
    Wireshark shows; the agents' own stream counters are kept beside as rtp_agent)."""
    out: dict[str, dict[str, int]] = {}
    for role, ext in (("caller", spec.caller), ("callee", spec.callee)):
        pkts = caps.udp.get(phone_name(ext))
        if pkts is None:
            return {}
        ip = plan.lan_of(ext).phones[ext]
        audio = [p for p in pkts
                 if p.kind == "rtp" and (p.payload[1] & 0x7F) in AUDIO_PAYLOAD_TYPES]
        out[role] = {"tx": sum(p.src == ip for p in audio), "rx": sum(p.dst == ip for p in audio)}
    return out


def linphone_lines(reports: dict[str, dict[str, Any]]) -> list[str]:
    """What a Linphone phone ran with, and the session- against the media-level c= of its SDP
    (an analyser reading only the session line would take the private address)."""
    out = []
    for role in ("caller", "callee"):
        rep = reports.get(role) or {}
        lp = rep.get("linphone")
        if not lp:
            continue
        sdp, first = rep.get("local_sdp") or {}, lp.get("first_sdp")
        line = (f"{rep.get('ext', role)} ran Linphone {lp.get('version')} with NAT policy "
                f"{lp.get('nat_policy')}; ")
        if first:  # the SDP before ICE's re-INVITE
            final = sdp.get("session_addr") or sdp.get("addr")
            line += (f"its first SDP had o= {first.get('origin')}, session-level "
                     f"c={first.get('session_addr')} and media-level c={first.get('addr')}; "
                     f"after ICE its re-INVITE carried c={final} at session level")
        else:
            line += (f"its SDP had session-level c={sdp.get('session_addr')} and media-level "
                     f"c={sdp.get('addr')}")
        line += " (natlab reads the media level first, as RFC 4566 says)"
        if lp.get("stun_error"):
            line += f"; no STUN Binding was sent: \"{lp['stun_error']}\""
        out.append(line + ".")
    return out


def judge_call(plan: Plan, subject: Subject, spec: CallSpec, reports: dict[str, dict[str, Any]],
               caps: Captures, seconds: float = 0.0) -> Verdict:
    """A two-party call: checks from the phones' captures and reports, sentences from the
    router and PBX captures."""
    caller, callee = reports.get("caller", {}), reports.get("callee", {})
    wire = wirertp_count(caps, plan, spec)
    if wire:
        caller = {**caller, "rtp": wire["caller"], "rtp_agent": caller.get("rtp")}
        callee = {**callee, "rtp": wire["callee"], "rtp_agent": callee.get("rtp")}
    checks = _checks(spec, caller, callee)
    ex = Explainer(plan, spec, caps)
    sig = ex.signalling(checks)
    media = ex.media({"caller": caller, "callee": callee}, checks) if ex.call_id else []
    evidence = sig + media + linphone_lines(reports)
    return Verdict.of(
        subject, verdict="works" if all(checks.values()) else "fails",
        rtp_received={"caller": rtp_count(caller, "rx"), "callee": rtp_count(callee, "rx")},
        rtp_sent={"caller": rtp_count(caller, "tx"), "callee": rtp_count(callee, "tx")},
        checks=checks, explanation=" ".join([lead_line(checks), *evidence]), evidence=evidence,
        seconds=round(seconds, 2),
        rtp_agent={"caller": caller.get("rtp_agent"), "callee": callee.get("rtp_agent")})


def combine(subject: Subject, calls: list[Verdict]) -> Verdict:
    """One verdict for a multi-call scenario: works only if every call works."""
    if len(calls) == 1:
        return calls[0]
    bad = [v for v in calls if v.verdict != "works"]
    lead = f"{len(calls) - len(bad)}/{len(calls)} calls work."
    detail = f" First failing call {bad[0].name}: {bad[0].explanation}" if bad else ""
    checks = {k: all(v.checks.get(k, False) for v in calls) for k in calls[0].checks}
    total = {r: sum(v.rtp_received[r] for v in calls) for r in ("caller", "callee")}
    sent = {r: sum(v.rtp_sent[r] for v in calls) for r in ("caller", "callee")}
    invalid = any(v.verdict == "invalid" for v in calls)
    return Verdict.of(subject, verdict="invalid" if invalid else "fails" if bad else "works",
                      rtp_received=total, rtp_sent=sent, checks=checks,
                      explanation=lead + detail,
                      evidence=[lead] + (bad[0].evidence if bad else calls[0].evidence),
                      seconds=round(sum(v.seconds for v in calls), 2),
                      calls=[v.as_dict() for v in calls],
                      nat=(bad[0] if bad else calls[0]).nat,
                      fault={k: x for v in reversed(calls) for k, x in v.fault.items()})
