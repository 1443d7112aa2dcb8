"""The timeline of a fault injected mid-call, from the phones' captures and fault.json.

Pure: a scenario folder's fault.json (written by impair.fault) and the round's Captures in,
a Timeline out. Per direction: the largest RTP inter-arrival gap around the fault at the
receiving phone (ms), the last packet before it and the first after it (frames named), and what
restored the media: nothing needed (no gap), the ongoing RTP stream, the receiving phone's own
RTP or STUN keepalive re-opening its router's mapping, a re-INVITE, or nothing at all. Also:
the phones' REGISTERs after the fault (did the registrations recover), where the BYE went, and
(coturn down) what the phones' STUN got and the SDP address they offered instead.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from analysis.evidence import Captures, where
from analysis.packets import SipMessage, Udp
from natlab.errors import AnalysisError

FILE = "fault.json"
GAP_MS = 100.0  # an inter-arrival gap above this is an outage (packets come every 20 ms)
AROUND_S = 1.0  # a gap counts as the fault's if it ends after fault start - AROUND_S
# what restored the media of one direction
NONE_NEEDED, ONGOING, OWN_RTP, KEEPALIVE, REINVITE, NOTHING = (
    "none needed", "ongoing RTP stream", "receiver's own RTP", "keepalive", "re-INVITE",
    "nothing")


@dataclass(frozen=True)
class Phone:
    ext: str
    ip: str
    pcap: str  # capture name, e.g. "p2005"
    router: str  # its LAN's router, e.g. "r1"
    pbx: str  # its PBX, e.g. "pbx1"


@dataclass
class Gap:
    """One direction's media around the fault, seen at the receiving phone."""
    sender: str
    receiver: str
    gap_ms: float | None  # None: no RTP after the fault (never resumed) or none at all
    last_before: str | None  # "p2005.pcap frame 812"
    first_after: str | None
    resumed_s: float | None  # first packet after the gap, seconds after the fault started
    recovery: str  # one of the mechanisms above
    event: str  # the sentence naming the packet that restored it

    @property
    def outage(self) -> bool:
        return self.gap_ms is None or self.gap_ms > GAP_MS


@dataclass
class Timeline:
    what: str
    target: str
    at_epoch: float | None  # the fault's first action
    at_pcap_s: float | None  # the same, seconds into the caller's capture
    restored_s: float | None  # its last restoring action, seconds after it started
    commands: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    gaps: list[Gap] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # registrations, BYE, STUN, reachability

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load(folder: Path) -> dict[str, Any] | None:
    """A scenario's fault.json, or None when it has none (the fault never ran)."""
    path = folder / FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise AnalysisError(f"{path}: unreadable fault record ({exc})") from None
    if not isinstance(data, dict) or "what" not in data:
        raise AnalysisError(f"{path}: not a fault record")
    return data


def capture_start(pkts: list[Udp]) -> float | None:
    """Epoch time of a capture's first frame (rel_ns is exact time since it)."""
    return pkts[0].time - pkts[0].rel_ns / 1e9 if pkts else None


def _s(t: float, t0: float) -> str:
    return f"{t - t0:+.2f} s"


def media_gap(caps: Captures, snd: Phone, rcv: Phone, t0: float, restored: float | None,
              fault: tuple[str, str], call_id: str) -> Gap:
    """The largest inter-arrival gap of snd's RTP at rcv around the fault (started at t0)."""
    rtp = [p for p in caps.packets(rcv.pcap) if p.kind == "rtp" and p.dst == rcv.ip]
    name = f"RTP {snd.ext} -> {rcv.ext}"
    if not rtp:
        return Gap(snd.ext, rcv.ext, None, None, None, None, NOTHING,
                   f"{name}: {rcv.pcap}.pcap has no RTP to {rcv.ext} at all.")
    best: tuple[float, Udp, Udp] | None = None
    for a, b in zip(rtp, rtp[1:], strict=False):
        if b.time >= t0 - AROUND_S and (best is None or b.time - a.time > best[0]):
            best = (b.time - a.time, a, b)
    after = [p for p in rtp if p.time >= t0]
    if not after:  # media stopped at the fault and never came back
        last = rtp[-1]
        return Gap(snd.ext, rcv.ext, None, str(where(rcv.pcap, last)), None, None, NOTHING,
                   f"{name}: the last packet reached {rcv.ext} at {where(rcv.pcap, last)} "
                   f"({_s(last.time, t0)}); nothing restored it.")
    if best is None:
        return Gap(snd.ext, rcv.ext, 0.0, None, str(where(rcv.pcap, after[0])),
                   after[0].time - t0, NONE_NEEDED, f"{name}: media started after the fault.")
    gap, a, b = best
    gap_ms = round(gap * 1000, 1)
    head = (f"{name}: largest gap {gap_ms:.0f} ms, from {where(rcv.pcap, a)} "
            f"({_s(a.time, t0)}) to {where(rcv.pcap, b)} ({_s(b.time, t0)})")
    if gap_ms <= GAP_MS:
        return Gap(snd.ext, rcv.ext, gap_ms, str(where(rcv.pcap, a)), str(where(rcv.pcap, b)),
                   b.time - t0, NONE_NEEDED,
                   f"{head}: no outage, the media did not notice the fault.")
    mech, why = _recovery(caps, snd, rcv, t0, restored, b, fault, call_id)
    return Gap(snd.ext, rcv.ext, gap_ms, str(where(rcv.pcap, a)), str(where(rcv.pcap, b)),
               b.time - t0, mech, f"{head}; {why}")


def _recovery(caps: Captures, snd: Phone, rcv: Phone, t0: float, restored: float | None,
              resumed: Udp, fault: tuple[str, str], call_id: str) -> tuple[str, str]:
    """Which packet restored a direction that had an outage."""
    for ph in (rcv, snd):
        for m in caps.sip.get(ph.pcap, []):
            if (m.is_request and m.method == "INVITE" and m.call_id == call_id
                    and ";tag=" in m.header("to") and t0 <= m.pkt.time <= resumed.time):
                return REINVITE, (f"restored by a re-INVITE ({where(ph.pcap, m)}, "
                                  f"{_s(m.pkt.time, t0)}).")
    back = restored if restored is not None else t0
    own = [p for p in caps.packets(rcv.pcap) if p.src == rcv.ip and p.kind in ("rtp", "stun")
           and back <= p.time <= resumed.time]
    # a rebooted router lost the mapping of its own phone: inbound media needs a new one
    if fault == ("router-reboot", rcv.router) and own:
        first = own[0]
        mech = OWN_RTP if first.kind == "rtp" else KEEPALIVE
        return mech, (f"{rcv.ext}'s first packet after {rcv.router} came back "
                      f"({first.kind.upper()}, {where(rcv.pcap, first)}, {_s(first.time, t0)}) "
                      f"re-created {rcv.router}'s mapping{_mapping(caps, rcv, first, t0)}; "
                      f"{snd.ext}'s RTP got in again "
                      f"{(resumed.time - first.time) * 1000:.0f} ms later.")
    if restored is not None:
        return ONGOING, (f"{snd.ext}'s ongoing RTP stream crossed again once the fault ended "
                         f"({_s(restored, t0)}); no signalling was needed.")
    return ONGOING, f"{snd.ext}'s ongoing RTP stream resumed by itself."


def _mapping(caps: Captures, rcv: Phone, first: Udp, t0: float) -> str:
    """The public port the new mapping got, against the old one, on the router's WAN side
    (the same datagram is found by its payload, which NAT does not touch)."""
    wan = f"{rcv.router}-wan"
    pkts = caps.packets(wan)
    new = next((p for p in pkts if p.payload == first.payload and p.time >= first.time), None)
    old = next((p for p in reversed(pkts) if p.time < t0 and p.kind == first.kind
                and p.sport != 0 and p.payload[8:12] == first.payload[8:12]), None)
    if new is None:
        return ""
    same = old is not None and old.sport == new.sport
    was = f" (before the reboot: {old.src}:{old.sport})" if old is not None and not same else ""
    return (f" ({where(wan, new)} shows it leaving from {new.src}:{new.sport}"
            + (", the same public port as before the reboot" if same else was) + ")")


def registrations(caps: Captures, phones: list[Phone], t0: float) -> list[str]:
    """Did each phone register again after the fault? (The PBX keeps its location table in
    memory: a restarted PBX knows nobody until they refresh.)"""
    out = []
    for ph in phones:
        msgs = caps.sip.get(ph.pcap, [])
        regs = [m for m in msgs if m.is_request and m.method == "REGISTER" and m.pkt.src == ph.ip
                and _expires(m) != 0]  # a REGISTER with expires 0 removes the binding
        oks = [m for m in msgs if not m.is_request and m.method == "REGISTER"
               and m.status == 200 and m.pkt.dst == ph.ip and (_expires(m) or 0) > 0]
        before = [m for m in oks if m.pkt.time < t0]
        later = [m for m in oks if m.pkt.time >= t0]
        if later:
            out.append(f"{ph.ext} registered again after the fault: 200 OK at "
                       f"{where(ph.pcap, later[0])} ({_s(later[0].pkt.time, t0)}).")
            continue
        sent = [m for m in regs if m.pkt.time >= t0]
        if not before:
            out.append(f"{ph.ext} has no answered REGISTER in {ph.pcap}.pcap.")
            continue
        exp = _expires(before[-1])
        due = f", refresh due at {_s(before[-1].pkt.time + exp, t0)}" if exp else ""
        tried = f" (it sent {len(sent)} REGISTER(s), none answered)" if sent else ""
        out.append(f"{ph.ext} did not register again before its call ended{tried}; its "
                   f"registration at {ph.pbx} is the one of {where(ph.pcap, before[-1])} "
                   f"({_s(before[-1].pkt.time, t0)}, expires {exp or '?'} s){due}.")
    return out


def _expires(msg: SipMessage) -> int | None:
    """The registration's lifetime: the Contact's expires parameter, else Expires."""
    for value in msg.headers.get("contact", []):
        for part in value.split(";"):
            key, _, v = part.strip().partition("=")
            if key.lower() == "expires" and v.strip().isdigit():
                return int(v)
    v = msg.header("expires")
    return int(v) if v.isdigit() else None


def bye_path(caps: Captures, caller: Phone, callee: Phone, call_id: str, t0: float) -> list[str]:
    """Where the BYE went, seen at both phones."""
    for snd, rcv in ((caller, callee), (callee, caller)):
        byes = [m for m in caps.sip.get(snd.pcap, []) if m.is_request and m.method == "BYE"
                and m.call_id == call_id and m.pkt.src == snd.ip]
        if not byes:
            continue
        got = [m for m in caps.sip.get(rcv.pcap, []) if m.is_request and m.method == "BYE"
               and m.call_id == call_id and m.pkt.dst == rcv.ip]
        ok = [m for m in caps.sip.get(snd.pcap, []) if not m.is_request and m.method == "BYE"
              and m.call_id == call_id and m.pkt.dst == snd.ip and (m.status or 0) >= 200]
        line = f"{snd.ext} sent the BYE at {where(snd.pcap, byes[0])} ({_s(byes[0].pkt.time, t0)})"
        via = [m for m in caps.sip.get(rcv.pbx, []) if m.is_request and m.method == "BYE"
               and m.call_id == call_id and m.pkt.dst == rcv.ip]
        line += (f"; {rcv.pbx} relayed it ({where(rcv.pbx, via[0])})" if via else "")
        line += (f"; it reached {rcv.ext} ({where(rcv.pcap, got[0])})" if got else
                 f"; it never reached {rcv.ext} ({rcv.pcap}.pcap has no BYE)")
        line += (f"; answered '{ok[0].first_line[8:]}' ({where(snd.pcap, ok[0])})." if ok else
                 "; it got no final answer.")
        return [line]
    return ["Neither phone sent a BYE for this call."]


def probe_lines(caps: Captures, pbx: str, phones: list[Phone], t0: float) -> list[str]:
    """OPTIONS for a phone sent to its PBX around a restart, and what the PBX answered."""
    out = []
    for ph in phones:
        if ph.pbx != pbx:
            continue
        msgs = caps.sip.get(pbx, [])
        asks = [m for m in msgs if m.is_request and m.method == "OPTIONS"
                and m.first_line.split()[1].startswith(f"sip:{ph.ext}@")
                and m.pkt.src != ph.ip and m.pkt.dst != ph.ip]
        for ask in asks:
            final = next((m for m in msgs if not m.is_request and m.call_id == ask.call_id
                          and m.pkt.dst == ask.pkt.src and (m.status or 0) >= 200), None)
            when = "before the kill" if ask.pkt.time < t0 else "after the restart"
            answer = (f"'{final.first_line[8:]}' ({where(pbx, final)})" if final else
                      "no answer")
            out.append(f"An OPTIONS for {ph.ext} to {pbx} {when} ({where(pbx, ask)}, "
                       f"{_s(ask.pkt.time, t0)}) got {answer}.")
        if asks and any(m.status == 404 for m in msgs if not m.is_request
                        and m.method == "OPTIONS" and m.pkt.time >= t0):
            out.append(f"The restarted {pbx} had forgotten {ph.ext}'s registration (its "
                       "location table lives in memory): calls to it fail until it registers "
                       "again.")
    return out


def stun_lines(caps: Captures, phones: list[Phone], stun_ip: str) -> list[str]:
    """What each phone's STUN got, and the c= address its SDP offered."""
    out = []
    for ph in phones:
        pkts = caps.packets(ph.pcap)
        asks = [p for p in pkts if p.kind == "stun" and p.src == ph.ip and p.dst == stun_ip]
        answers = [p for p in pkts if p.kind == "stun" and p.dst == ph.ip and p.src == stun_ip]
        sdp = next((m for m in caps.sip.get(ph.pcap, []) if m.pkt.src == ph.ip
                    and m.sdp is not None and m.sdp.addr), None)
        line = (f"{ph.ext} sent {len(asks)} STUN Binding request(s) to {stun_ip}"
                + (f" (first {where(ph.pcap, asks[0])})" if asks else "")
                + f" and got {len(answers)} answer(s)")
        if sdp is not None and sdp.sdp is not None:
            line += (f"; its SDP offered c={sdp.sdp.addr} m=audio {sdp.sdp.audio_port} "
                     f"({where(ph.pcap, sdp)})")
        out.append(line + ".")
    return out


def reached(caps: Captures, caller: Phone, callee: Phone, t0: float, label: str) -> list[str]:
    """After the fault: did a new call's INVITE reach the callee, and when."""
    inv = [m for m in caps.sip.get(callee.pcap, []) if m.is_request and m.method == "INVITE"
           and m.pkt.dst == callee.ip]
    if not inv:
        return [f"{label}: no INVITE reached {callee.ext} ({callee.pcap}.pcap): not reachable "
                "after the fault."]
    ok = [m for m in caps.sip.get(caller.pcap, []) if not m.is_request and m.method == "INVITE"
          and m.status == 200 and m.pkt.dst == caller.ip]
    return [f"{label}: {callee.ext} reachable again: the INVITE reached it at "
            f"{where(callee.pcap, inv[0])} (this call's round), {_s(inv[0].pkt.time, t0)} "
            "after the fault"
            + (f"; 200 OK at {where(caller.pcap, ok[0])}." if ok else "; it was not answered.")]


def first_call_id(caps: Captures, caller: Phone) -> str:
    for m in caps.sip.get(caller.pcap, []):
        if m.is_request and m.method == "INVITE" and m.pkt.src == caller.ip:
            return m.call_id
    return ""


def timeline(log: dict[str, Any], caps: Captures, caller: Phone, callee: Phone,
             stun_ip: str) -> Timeline:
    """The whole timeline of one faulted call (the first call of the scenario)."""
    what, target = str(log["what"]), str(log.get("target", ""))
    t0 = log.get("start")
    restored = log.get("restored")
    start = capture_start(caps.packets(caller.pcap))
    tl = Timeline(what, target, t0, round(t0 - start, 3) if t0 and start else None,
                  round(restored - t0, 3) if restored and t0 else None,
                  [{"t_s": round(s["t"] - t0, 3) if t0 else None, "node": s["node"],
                    "cmd": s["cmd"], "rc": s["rc"], "probe": bool(s.get("probe"))}
                   for s in log.get("steps", [])],
                  log.get("error"))
    if t0 is None:
        tl.lines.append(f"The fault was not injected: {tl.error or 'no action recorded'}.")
        return tl
    failed = [s for s in tl.commands if s["rc"] != 0 and not s["probe"]]
    if failed:
        tl.lines.append(f"{len(failed)} fault command(s) failed, first: '{failed[0]['cmd']}' "
                        f"exit {failed[0]['rc']}.")
    call_id = first_call_id(caps, caller)
    if what == "coturn-down":
        tl.lines += stun_lines(caps, [caller, callee], stun_ip)
        return tl
    for snd, rcv in ((caller, callee), (callee, caller)):
        tl.gaps.append(media_gap(caps, snd, rcv, t0, restored, (what, target), call_id))
    tl.lines += bye_path(caps, caller, callee, call_id, t0)
    tl.lines += registrations(caps, [caller, callee], t0)
    if what == "pbx-restart":
        tl.lines += probe_lines(caps, target, [caller, callee], t0)
    return tl


def head_line(tl: Timeline) -> str:
    """The timeline's first sentence: the fault, when, and how long it lasted."""
    at = (f"{tl.at_pcap_s:.2f} s into the caller's capture" if tl.at_pcap_s is not None
          else "an unknown time")
    took = f", restored {tl.restored_s:.2f} s later" if tl.restored_s is not None else ""
    return f"Fault {tl.what} on {tl.target} at {at}{took}."


def lines(tl: Timeline) -> list[str]:
    """The timeline as sentences for the explanation (gaps first)."""
    return [head_line(tl), *[g.event for g in tl.gaps], *tl.lines]
