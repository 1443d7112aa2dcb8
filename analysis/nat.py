"""NAT evidence of a call: what each router is (configured vs measured), where its media went,
what the STUN answer promised against the port the router really used, what the WAN firewall
dropped, and what a SIP ALG rewrote. Pure: nat.json (scenarios.natrun) + the captures.
"""
from __future__ import annotations

import ipaddress
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.evidence import Captures, where
from analysis.ladder import ADDR, xor_mapped
from analysis.packets import SipMessage, Udp
from topology.plan import Plan, phone_name

FILE = "nat.json"
MATRIX_REMEDIES = ("none", "stun", "ice", "ice-turn", "anchor", "alg")  # the matrix columns
TURN_PORTS = range(49152, 65536)  # coturn's relay range (natlab's TurnAuth: 49152-49251)
ANCHOR_PORTS = range(30000, 30101)  # rtpengine's media ports (RtpengineOptions)


@dataclass
class NatCell:
    """One matrix cell as the report shows it."""
    lan1: str
    lan2: str
    remedy: str
    state: str  # works | fails | one-way | invalid
    rtp: dict[str, int]  # received by caller / callee
    path: str  # direct | relayed | anchored | none
    first_media_s: float | None  # INVITE -> first RTP at the later of the two phones
    measured: dict[str, str] = field(default_factory=dict)  # lan -> "APDM/APDF"
    lesson: bool = False  # a lesson of its own (hairpin, lifetime, ALG variant), not a cell


def load(folder: Path) -> dict[str, Any] | None:
    path = folder / FILE
    return json.loads(path.read_text()) if path.exists() else None


def measured_name(entry: dict[str, Any]) -> str:
    m = entry.get("measured") or {}
    if not m.get("mapping"):
        return "not measured"
    return f"{m['mapping']}/{m['filtering']}" + (f" ({m['behaviour']})" if m.get("behaviour")
                                                 else "")


def router_lines(nat: dict[str, Any]) -> list[str]:
    """Configured vs measured, drops, per router."""
    out = []
    for entry in nat["routers"].values():
        c = entry["configured"]
        line = (f"{entry['router']}: configured {c['behaviour']} ({c['rfc4787']}"
                + (", hairpin" if c["hairpin"] else "") + (", SIP ALG" if c["sip_alg"] else "")
                + f"), measured {measured_name(entry)}")
        hp = (entry.get("measured") or {}).get("hairpin")
        if hp is not None:
            line += f", hairpin measured {'yes' if hp else 'no'}"
        if entry.get("mismatches"):
            line += " — MISMATCH: " + "; ".join(entry["mismatches"])
        drops = entry.get("drops") or {}
        dropped = sum(int(d.get("packets", 0)) for d in drops.values())
        line += (f"; its WAN firewall dropped {dropped} unsolicited inbound packet"
                 f"{'' if dropped == 1 else 's'}")
        out.append(line + ".")
    return out


def media_path(plan: Plan, caps: Captures, caller: str, callee: str) -> str:
    """Where the caller's RTP went on its router's WAN side (a call inside one LAN: whether
    its router turned the RTP sent to its own public address back in)."""
    lan = plan.lan_of(caller)
    if plan.lan_of(callee) is lan:
        back = [p for p in caps.packets(f"{lan.router_name}-lan")
                if p.kind == "rtp" and p.src == lan.wan_ip]
        return "hairpinned" if back else "nowhere"
    wan = f"{lan.router_name}-wan"
    dsts = Counter((p.dst, p.dport) for p in caps.packets(wan)
                   if p.kind == "rtp" and p.src == lan.wan_ip)
    if not dsts:
        return "none"
    (dst, port), _ = dsts.most_common(1)[0]
    if dst == plan.servers.stun:
        return "anchored" if port in ANCHOR_PORTS else "relayed"
    return "direct" if any(dst == lan.wan_ip for lan in plan.lans) else "nowhere"


def first_media_s(plan: Plan, caps: Captures, caller: str, callee: str) -> float | None:
    """From the caller's INVITE to the first RTP each phone received; the later one."""
    ip = plan.lan_of(caller).phones[caller]
    invite = caps.first_invite(phone_name(caller), ip)
    if invite is None:
        return None
    firsts = []
    for ext in (caller, callee):
        mine = plan.lan_of(ext).phones[ext]
        got = [p for p in caps.packets(phone_name(ext)) if p.kind == "rtp" and p.dst == mine]
        if not got:
            return None
        firsts.append(got[0].time)
    return round(max(firsts) - invite.pkt.time, 3)


def used_port(plan: Plan, caps: Captures, ext: str, peer_public: str) -> int | None:
    """The public port a phone's router gave its RTP toward the peer (WAN capture)."""
    lan = plan.lan_of(ext)
    toward = [p for p in caps.packets(f"{lan.router_name}-wan") if p.kind == "rtp"
              and p.src == lan.wan_ip and p.dst == peer_public]
    return toward[0].sport if toward else None


def stun_vs_router(plan: Plan, caps: Captures, nat: dict[str, Any], ext: str,
                   peer_public: str) -> str | None:
    """The mapping the STUN answer gave the phone's RTP port against the public port its
    router used toward the peer (WAN capture, and conntrack mid-call)."""
    lan = plan.lan_of(ext)
    ip, cap, wan = lan.phones[ext], phone_name(ext), f"{lan.router_name}-wan"
    rtp_out = [p for p in caps.packets(cap) if p.kind == "rtp" and p.src == ip]
    if not rtp_out:
        return None
    port = rtp_out[0].sport
    answers = [p for p in caps.packets(cap) if p.kind == "stun" and p.dst == ip
               and p.dport == port and xor_mapped(p.payload)]
    if not answers:
        return None
    mapped = xor_mapped(answers[0].payload)
    toward = [p for p in caps.packets(wan) if p.kind == "rtp" and p.src == lan.wan_ip
              and p.dst == peer_public]
    if not toward:
        return None
    used = f"{toward[0].src}:{toward[0].sport}"
    entry = nat["routers"].get(lan.name, {})
    ct = [e for e in entry.get("conntrack", []) if e["orig"]["src"] == ip
          and e["orig"]["sport"] == port and e["orig"]["dst"] == peer_public]
    ct_text = (f"; conntrack mid-call: {ip}:{port} -> {peer_public} is mapped to "
               f"{ct[0]['reply']['dst']}:{ct[0]['reply']['dport']}" if ct else "")
    same = "the same mapping" if used == mapped else "ANOTHER mapping"
    return (f"{ext}'s STUN answer gave {mapped} for its RTP port {port} "
            f"({where(cap, answers[0])}); toward the peer {lan.router_name} used {used} "
            f"({where(wan, toward[0])}): {same}{ct_text}.")


def inbound(plan: Plan, caps: Captures, ext: str, used: dict[str, int]) -> str | None:
    """The RTP that reached a router's public address for a phone, per destination port, and
    how much of it entered the LAN. A later port that is the one the router used toward the
    peer means the peer latched onto the source of the phone's RTP (symmetric RTP)."""
    lan = plan.lan_of(ext)
    wan, lan_cap = f"{lan.router_name}-wan", f"{lan.router_name}-lan"
    arrived = [p for p in caps.packets(wan) if p.kind == "rtp" and p.dst == lan.wan_ip]
    if not arrived:
        return None
    by_port: dict[int, list[Udp]] = {}
    for p in arrived:
        by_port.setdefault(p.dport, []).append(p)
    inside = [p for p in caps.packets(lan_cap) if p.kind == "rtp" and p.dst == lan.phones[ext]]
    if len(by_port) == 1 and len(inside) >= 0.9 * len(arrived):
        return None  # one port, delivered: nothing to explain
    parts = [f"port {port}: {len(pkts)} (first {where(wan, pkts[0])})"
             for port, pkts in by_port.items()]
    line = (f"RTP for {ext} reached {lan.router_name}'s public address on "
            + "; ".join(parts) + f"; {lan.router_name} let {len(inside)} into LAN{lan.index}")
    last = list(by_port)[-1]
    if len(by_port) > 1 and used.get(ext) == last and len(inside):
        line += (f". The peer switched to port {last}, the mapping {lan.router_name} gave "
                 f"{ext}'s own RTP toward it: it latched onto the source of the RTP it received "
                 "(symmetric RTP), which rescues the call whatever STUN said")
    elif len(inside) < 0.9 * len(arrived):
        line += ": the rest matched no mapping its filtering accepts"
    return line + "."


def hairpin(plan: Plan, caps: Captures, caller: str, callee: str) -> str | None:
    """A call inside one LAN through the router's public address: did the router turn it?"""
    lan = plan.lan_of(caller)
    if plan.lan_of(callee) is not lan:
        return None
    cap = f"{lan.router_name}-lan"
    toward = [p for p in caps.packets(cap) if p.kind == "rtp" and p.dst == lan.wan_ip]
    back = [p for p in caps.packets(cap) if p.kind == "rtp" and p.src == lan.wan_ip]
    if not toward:
        return None
    return (f"{len(toward)} RTP packets went from the phones to {lan.router_name}'s own public "
            f"address {lan.wan_ip} (first {where(cap, toward[0])}); {len(back)} came back into "
            f"LAN{lan.index} from it" + (f" (first {where(cap, back[0])}): "
                                         f"{lan.router_name} hairpins" if back else
                                         f": {lan.router_name} does not hairpin") + ".")


def alg_rewrites(plan: Plan, caps: Captures, call_id: str) -> list[str]:
    """The same SIP message on both sides of each router, on its way out: which addresses in
    its payload the router changed (a SIP ALG at work) and which private ones it left."""
    out = []
    for lan in plan.lans:
        lan_cap, wan_cap = f"{lan.router_name}-lan", f"{lan.router_name}-wan"
        inside = {_key(m): m for m in caps.sip.get(lan_cap, [])
                  if m.call_id == call_id and _in(lan.subnet, m.pkt.src)}
        for m in caps.sip.get(wan_cap, []):
            twin = inside.get(_key(m)) if m.call_id == call_id else None
            if twin is None or twin.sdp is None:
                continue
            before, after = _addresses(twin), _addresses(m)
            changed = [f"{f} {before[f]} -> {after.get(f)}" for f in before
                       if before[f] != after.get(f)]
            left = [f"{f} {v}" for f, v in after.items() if _in(lan.subnet, v)]
            out.append(f"{m.summary} leaving {lan.router_name} ({where(lan_cap, twin)} -> "
                       f"{where(wan_cap, m)}): "
                       + ("rewritten: " + "; ".join(changed) if changed else "payload unchanged")
                       + (". Still private: " + ", ".join(left) if left else "") + ".")
            break
    return out


def _key(m: SipMessage) -> tuple[str, str, str]:
    return m.header("cseq"), m.first_line, m.header("via").split("branch=")[-1].split(";")[0]


def _in(subnet: Any, text: str) -> bool:
    return any(ipaddress.ip_address(a) in subnet for a in ADDR.findall(text))


def _addresses(m: SipMessage) -> dict[str, str]:
    """Contact, top Via, Record-Route and SDP c= of a message, as text."""
    out = {}
    for name in ("contact", "via", "record-route"):
        if m.headers.get(name):
            out[name.title()] = m.headers[name][0]
    sdp = m.sdp
    if sdp is not None and sdp.addr:
        out["c="] = sdp.addr
        if sdp.audio_port:
            out["m=audio"] = str(sdp.audio_port)
    return out


def rtp_packets(caps: Captures, name: str) -> list[Udp]:
    return [p for p in caps.packets(name) if p.kind == "rtp"]


def relay_lines(plan: Plan, caps: Captures, phones: list[str]) -> list[str]:
    """Where each phone was told to send its media: an SDP naming the public server means
    rtpengine rewrote it (the media is anchored there)."""
    out = []
    for ext in phones:
        ip, cap = plan.lan_of(ext).phones[ext], phone_name(ext)
        got = [m for m in caps.sip.get(cap, []) if m.pkt.dst == ip and m.sdp is not None
               and m.sdp.addr == plan.servers.stun]
        if got:
            sdp = got[0].sdp
            assert sdp is not None
            out.append(f"The SDP {ext} received ({where(cap, got[0])}) names {sdp.addr}:"
                       f"{sdp.audio_port}: rtpengine on the public server rewrote it, so {ext} "
                       "sends its RTP there and rtpengine forwards it to wherever the other "
                       "phone's packets come from.")
    return out


def ice_lines(reports: dict[str, dict[str, Any]]) -> list[str]:
    """The ICE outcome each phone reported (the selected candidate pair)."""
    out = []
    for role in ("caller", "callee"):
        ice = reports.get(role, {}).get("ice") or {}
        if not ice:
            continue
        pair = ice.get("selected") or {}
        out.append(f"{reports[role].get('ext', role)}: ICE {ice.get('state', '?')}"
                   + (f", selected pair {pair.get('local')} -> {pair.get('remote')}" if pair
                      else ", no pair selected") + ".")
    return out


def judge_nat(plan: Plan, caps: Captures, nat: dict[str, Any], caller: str, callee: str,
              reports: dict[str, dict[str, Any]], remedy: str,
              checks: dict[str, bool]) -> tuple[dict[str, bool], list[str], NatCell]:
    """The NAT checks, sentences and matrix cell of a call that ran behind configured NATs."""
    mismatch = any(e.get("mismatches") for e in nat["routers"].values())
    lines = router_lines(nat)
    c_lan, e_lan = plan.lan_of(caller), plan.lan_of(callee)
    pairs = [] if c_lan is e_lan else [(caller, e_lan.wan_ip), (callee, c_lan.wan_ip)]
    used = {ext: port for ext, peer in pairs
            if (port := used_port(plan, caps, ext, peer)) is not None}
    for ext, peer in pairs:
        for line in (stun_vs_router(plan, caps, nat, ext, peer),
                     inbound(plan, caps, ext, {ext: used[ext]} if ext in used else {})):
            if line:
                lines.append(line)
    turned = hairpin(plan, caps, caller, callee)
    if turned:
        lines.append(turned)
    if any(e["configured"]["sip_alg"] for e in nat["routers"].values()):
        invite = caps.first_invite(phone_name(caller), c_lan.phones[caller])
        if invite is not None:
            lines += alg_rewrites(plan, caps, invite.call_id)
        params = nat.get("sip_alg_params") or {}
        if params:
            lines.append("SIP helper parameters (host-wide): "
                         + ", ".join(f"{k}={v}" for k, v in sorted(params.items())) + ".")
    lines += relay_lines(plan, caps, [caller, callee]) + ice_lines(reports)
    to_callee, to_caller = checks.get("rtp_to_callee", False), checks.get("rtp_to_caller", False)
    state = ("invalid" if mismatch else "works" if all(checks.values())
             else "one-way" if to_callee != to_caller else "fails")
    cell = NatCell(
        lan1=nat["routers"]["lan1"]["configured"]["behaviour"],
        lan2=nat["routers"]["lan2"]["configured"]["behaviour"], remedy=remedy, state=state,
        rtp={r: int(((reports.get(r) or {}).get("rtp") or {}).get("rx") or 0)
             for r in ("caller", "callee")},
        path=media_path(plan, caps, caller, callee), first_media_s=first_media_s(plan, caps, caller,
                                                                          callee),
        measured={k: measured_name(e) for k, e in nat["routers"].items()},
        lesson=c_lan is e_lan or remedy not in MATRIX_REMEDIES or any(
            e["configured"]["hairpin"] or e["configured"]["udp_timeout_s"]
            for e in nat["routers"].values()))
    return {"nat_as_configured": not mismatch}, lines, cell
