"""Verdicts of the paper's other services: ring group, conference, and video on a call."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from agents.tones import tone_levels
from analysis.evidence import Captures, Labels, requests, responses, where
from analysis.verdict import PACKETS_PER_S, Verdict, judge, lead_line, rtp_count
from scenarios.extras import lan_by_prefix
from scenarios.model import Call, Scenario
from topology.plan import Plan, phone_name

HEARD_DB = -10.0  # a tone counts as heard above this level (see agents.tones)


def video_checks(sc: Scenario, plan: Plan, call: Call, reports: dict[str, dict[str, Any]],
                 caps: Captures) -> tuple[dict[str, bool], list[str]]:
    """Video RTP both ways, on the payload type the SDP negotiated."""
    caller, callee = reports.get("caller", {}), reports.get("callee", {})
    checks: dict[str, bool] = {}
    lines = []
    for snd, rcv, key, s_ext, r_ext in ((caller, callee, "video_to_callee", call.caller,
                                         call.callee),
                                        (callee, caller, "video_to_caller", call.callee,
                                         call.caller)):
        tx, rx = rtp_count(snd, "tx", "video"), rtp_count(rcv, "rx", "video")
        pt = (rcv.get("video") or {}).get("payload_type")
        r_ip = plan.lan_of(r_ext).phones[r_ext]
        on_wire = [p for p in caps.udp.get(phone_name(r_ext), [])
                   if p.kind == "rtp" and p.dst == r_ip and pt is not None
                   and (p.payload[1] & 0x7F) == pt]
        checks[key] = tx > 0 and rx >= 0.9 * tx and len(on_wire) > 0
        first = f", first {where(phone_name(r_ext), on_wire[0])}" if on_wire else ""
        s_wan = f"r{plan.lan_of(s_ext).index}-wan"
        lost = [p for p in caps.udp.get(s_wan, []) if p.kind == "rtp" and pt is not None
                and (p.payload[1] & 0x7F) == pt and Labels(plan).is_private(p.dst)]
        nowhere = (f"; {s_wan}.pcap has {len(lost)} VP8 packets leaving toward the private "
                   f"address {lost[0].dst} (first {where(s_wan, lost[0])})" if lost else "")
        lines.append(f"Video {s_ext} -> {r_ext}: sent {tx}, received {rx}; "
                     f"{phone_name(r_ext)}.pcap shows {len(on_wire)} RTP packets with the "
                     f"negotiated VP8 payload type {pt}{first}{nowhere}.")
    return checks, lines


def judge_ring(plan: Plan, sc: Scenario, call: Call, reports: dict[str, dict[str, Any]],
               pcaps: dict[str, Path], seconds: float = 0.0) -> Verdict:
    ring = sc.ring
    assert ring is not None
    members = {e: reports.get(f"member-{e}", {}) for e in ring.members}
    answering = [e for e in ring.members if e not in ring.no_answer]
    expected = min(answering, key=ring.delay_of) if answering else None
    winners = [e for e, r in members.items() if r.get("confirmed")]
    winner = winners[0] if len(winners) == 1 else (expected or ring.members[0])
    base = judge(plan, sc, Call(call.index, call.round, call.caller, winner),
                 {"caller": reports.get("caller", {}), "callee": members.get(winner, {})},
                 pcaps, seconds)
    caps = Captures(pcaps)
    lab = Labels(plan)
    losers = [e for e in ring.members if e != winner]
    cancels: dict[str, list[Any]] = {}
    for e in losers:  # seen on the losing phone's own capture
        ip = plan.lan_of(e).phones[e]
        cancels[e] = [m for m in requests(caps.sip.get(phone_name(e), []), "CANCEL")
                      if m.pkt.dst == ip]
    checks = {**base.checks, "one_member_answered": len(winners) == 1,
              "first_to_answer_won": winner == expected,
              "losers_cancelled": all(members[e].get("cancelled") for e in losers),
              "cancel_on_wire": all(cancels[e] for e in losers)}
    lines = [f"Ring group {ring.ext} ({ring.strategy}: {', '.join(ring.members)}): "
             f"{winner} answered" + (" first" if ring.strategy == "parallel" else "") + "."]
    for e in losers:
        ip = plan.lan_of(e).phones[e]
        cap = phone_name(e)
        term = [m for m in responses(caps.sip.get(cap, []), "INVITE", 487) if m.pkt.src == ip]
        lines.append(
            f"{lab(ip)} got CANCEL from PBX{plan.lan_of(e).index}"
            + (f" ({where(cap, cancels[e][0])})" if cancels[e] else " — none on the wire")
            + (f" and answered 487 ({where(cap, term[0])})" if term else "")
            + f"; its report: cancelled={bool(members[e].get('cancelled'))}, "
            f"confirmed={bool(members[e].get('confirmed'))}.")
    ok = all(checks.values())
    lead = lead_line(checks)
    evidence = lines + base.evidence
    return Verdict(name=sc.name, stun=sc.stun, trunk=sc.trunk, expect=sc.expect,
                   verdict="works" if ok else "fails", rtp_received=base.rtp_received,
                   rtp_sent=base.rtp_sent, checks=checks,
                   explanation=" ".join([lead, *evidence]), evidence=evidence,
                   seconds=round(seconds, 2))


def judge_conference(plan: Plan, sc: Scenario, reports: dict[str, dict[str, Any]],
                     pcaps: dict[str, Path], seconds: float = 0.0) -> Verdict:
    conf = sc.conference
    assert conf is not None
    bridge = reports.get("bridge", {})
    min_pkts = 0.8 * sc.duration_s * PACKETS_PER_S
    checks: dict[str, bool] = {"bridge_registered": bridge.get("register_code") == 200}
    lines, parts = [], []
    for ext in conf.participants:
        rep = reports.get(f"participant-{ext}", {})
        others = [conf.tone_of(o) for o in conf.participants if o != ext]
        rec = rep.get("recording")
        levels = tone_levels(rec, [*others, conf.tone_of(ext)]) \
            if isinstance(rec, str) and Path(rec).exists() else {}
        heard = {hz: levels.get(hz, -200.0) for hz in others}
        ok = {f"{ext}_joined": rep.get("invite_code") == 200 and bool(rep.get("confirmed")),
              f"{ext}_rtp_both_ways": min(rtp_count(rep, "tx"), rtp_count(rep, "rx")) >= min_pkts,
              f"{ext}_hears_others": bool(heard) and all(v > HEARD_DB for v in heard.values())}
        checks.update(ok)
        lan = plan.lan_of(ext)
        lines.append(f"{ext} (LAN{lan.index}, tone {conf.tone_of(ext)} Hz): joined "
                     f"{'yes' if ok[f'{ext}_joined'] else 'no'}, RTP sent {rtp_count(rep, 'tx')}, "
                     f"received {rtp_count(rep, 'rx')}; hears "
                     + ", ".join(f"{hz} Hz at {db:.1f} dB" for hz, db in heard.items())
                     + f" (its own tone at {levels.get(conf.tone_of(ext), -200.0):.1f} dB).")
        parts.append({"name": ext, "rtp": rep.get("rtp"), "heard_db": heard})
    works = all(checks.values())
    lead = lead_line(checks)
    room_lan = lan_by_prefix(plan, conf.room, sc.name)
    offered = {(p.get("local_sdp") or {}).get("addr") for p in bridge.get("participants") or []}
    private = sorted(a for a in offered if a and Labels(plan).is_private(a))
    lines.insert(0, f"Bridge {conf.room} (pjsua2 mixer beside PBX{room_lan.index}) served "
                    f"{len(bridge.get('participants') or [])} participants"
                    + (f"; to phones behind its own NAT it offered its private address "
                       f"{', '.join(private)} (r{room_lan.index} does not hairpin), to the others "
                       "its public one" if private else "") + ".")
    first = reports.get(f"participant-{conf.participants[0]}", {})
    served = bridge.get("participants") or []
    return Verdict(name=sc.name, stun=sc.stun, trunk=sc.trunk, expect=sc.expect,
                   verdict="works" if works else "fails",
                   rtp_received={"caller": rtp_count(first, "rx"),
                                 "callee": sum(rtp_count(p, "rx") for p in served)},
                   rtp_sent={"caller": rtp_count(first, "tx"),
                             "callee": sum(rtp_count(p, "tx") for p in served)},
                   checks=checks, explanation=" ".join([lead, *lines]), evidence=lines,
                   seconds=round(seconds, 2), calls=parts)


def judge_any(plan: Plan, sc: Scenario, call: Call, reports: dict[str, dict[str, Any]],
              pcaps: dict[str, Path], seconds: float = 0.0) -> Verdict:
    """The verdict for any scenario kind; video adds its checks to a call's."""
    if sc.kind == "ring-group":
        return judge_ring(plan, sc, call, reports, pcaps, seconds)
    if sc.kind == "conference":
        return judge_conference(plan, sc, reports, pcaps, seconds)
    v = judge(plan, sc, call, reports, pcaps, seconds)
    if not sc.video:
        return v
    checks, lines = video_checks(sc, plan, call, reports, Captures(pcaps))
    v.checks.update(checks)
    v.evidence += lines
    ok = all(v.checks.values())
    lead = lead_line(v.checks)
    v.verdict = "works" if ok else "fails"
    v.explanation = " ".join([lead, *v.evidence])
    return v
