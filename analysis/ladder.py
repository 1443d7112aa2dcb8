"""A call's ladder across every capture point: what each hop carried and what each NAT changed.

The same SIP message is captured on both sides of a router (Call-ID + CSeq + first line + top
Via branch identify it; its n-th copy in a capture is its n-th retransmission). Each capture
sees it on one segment between two nodes (phone, PBX, a router's LAN or WAN side, the
STUN/TURN/relay server); a segment seen on several captures is one arrow. On a LAN capture an
address outside the LAN is the router's LAN side (the gateway); on a WAN capture a router's
public address is its WAN side, and a private address is nowhere: the arrow ends there. Where
a message enters one side of a router and leaves the other, the arrow that leaves says what
the NAT rewrote in the header; one that enters the WAN side and never leaves the LAN side was
dropped there. RTP is one arrow per stream (SSRC) and segment; STUN one per
transaction. Payload fields that still name a private address after crossing a NAT (Contact,
Via, Record-Route, SDP c=) are marked: the router rewrites the header, not the payload.
"""
from __future__ import annotations

import ipaddress
import re
import weakref
from dataclasses import dataclass, field

from analysis.evidence import Captures
from analysis.packets import SipMessage, Udp
from topology.plan import Lan, Plan, phone_name

ADDR = re.compile(r"(?<![\d.])(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(?![\d.])")
NOWHERE = "nowhere"
SERVER = "server"  # coturn (STUN, TURN) and rtpengine share the public server host


@dataclass(frozen=True)
class Seen:
    """One observation: a capture, its Wireshark frame, the header addresses there."""
    capture: str
    frame: int
    time: float
    src: str  # ip:port
    dst: str


@dataclass
class Arrow:
    kind: str  # sip | rtp | stun
    label: str  # "INVITE", "200 OK (INVITE)", "RTP x251 (PT 0)", "STUN Binding request"
    src: str  # node key
    dst: str  # node key, or NOWHERE
    time: float
    seen: list[Seen] = field(default_factory=list)
    private: list[str] = field(default_factory=list)  # "Contact 172.16.10.12", "c=192.168..."
    count: int = 1  # packets (RTP)
    copy: int = 1  # the n-th transmission of the same SIP message
    last: list[Seen] = field(default_factory=list)  # RTP: the last frame on each capture
    ident: tuple[object, ...] = ()  # the message (or stream) across segments
    nat: str = ""  # "r2 rewrote source 172.16.10.10:5060 -> 198.51.100.2:5060"
    dropped: str = ""  # "r2 forwarded none of it into LAN2"

    @property
    def frames(self) -> str:
        return ", ".join(f"{s.capture} #{s.frame}" for s in self.seen)


@dataclass
class Ladder:
    columns: list[tuple[str, str]]  # (node key, label)
    arrows: list[Arrow]


class Topology:
    """Which node an address is, as seen from one capture point."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self._nodes: dict[tuple[str, str], str] = {}
        self._private: dict[str, bool] = {}
        servers = [plan.servers.stun] + ([plan.servers.stun2] if plan.servers.stun2 else [])
        self.names: dict[str, str] = dict.fromkeys(servers, SERVER)
        self.public: dict[str, str] = dict.fromkeys(servers, SERVER)
        for lan in plan.lans:
            self.names[lan.pbx] = lan.pbx_name
            self.names[lan.router] = lan_side(lan)
            self.public[lan.wan_ip] = wan_side(lan)
            for ext, ip in lan.phones.items():
                self.names[ip] = phone_name(ext)

    def lan_index(self, capture: str) -> int | None:
        """The LAN a capture point sits in; None for a WAN capture."""
        for lan in self.plan.lans:
            if capture in (f"{lan.router_name}-lan", lan.pbx_name) or \
                    capture in (phone_name(e) for e in lan.phones):
                return lan.index
        return None

    def node(self, capture: str, addr: str) -> str:
        key = (capture, addr)
        if key not in self._nodes:
            self._nodes[key] = self._node(capture, addr)
        return self._nodes[key]

    def _node(self, capture: str, addr: str) -> str:
        index = self.lan_index(capture)
        ip = ipaddress.ip_address(addr)
        if index is not None:
            lan = self.plan.lans[index - 1]
            if ip in lan.subnet:
                return self.names.get(addr, addr)
            return lan_side(lan)  # the gateway
        return self.public.get(addr, NOWHERE if self.is_private(addr) else "core")

    def is_private(self, addr: str) -> bool:
        if addr not in self._private:
            ip = ipaddress.ip_address(addr)
            self._private[addr] = any(ip in lan.subnet for lan in self.plan.lans)
        return self._private[addr]


def lan_side(lan: Lan) -> str:
    return f"{lan.router_name}-lan"


def wan_side(lan: Lan) -> str:
    return f"{lan.router_name}-wan"


def _router(lan: Lan) -> list[tuple[str, str]]:
    return [(lan_side(lan), f"{lan.router_name} LAN\n{lan.router}"),
            (wan_side(lan), f"{lan.router_name} WAN\n{lan.wan_ip}")]


def columns(plan: Plan, caller: str, callees: list[str], server: bool) -> list[tuple[str, str]]:
    """Left to right: the caller's LAN, its router (LAN side, WAN side), the other router (WAN
    side, LAN side), the callee's LAN, the STUN/TURN/relay server when used."""
    c_lan = plan.lan_of(caller)
    cols = [(phone_name(caller), f"{caller}\n{c_lan.phones[caller]}"),
            (c_lan.pbx_name, f"PBX{c_lan.index}\n{c_lan.pbx}"), *_router(c_lan)]
    if not (callees and all(e in c_lan.phones for e in callees)):  # a call between the LANs
        e_lan = plan.other(c_lan)
        cols += [*_router(e_lan)[::-1], (e_lan.pbx_name, f"PBX{e_lan.index}\n{e_lan.pbx}")]
        callees = [e for e in callees if e in e_lan.phones]
        cols += [(phone_name(e), f"{e}\n{e_lan.phones[e]}") for e in callees]
    else:
        cols[2:2] = [(phone_name(e), f"{e}\n{c_lan.phones[e]}") for e in callees]
    if server:
        cols.append((SERVER, f"STUN/TURN/relay\n{plan.servers.stun}"))
    return cols


def _private_fields(msg: SipMessage, topo: Topology) -> list[str]:
    out = []
    for name in ("contact", "via", "record-route"):
        for value in msg.headers.get(name, []):
            for addr in ADDR.findall(value):
                if topo.is_private(addr):
                    out.append(f"{name.title()} {addr}")
    sdp = msg.sdp
    if sdp is not None and sdp.addr and topo.is_private(sdp.addr):
        out.append(f"c={sdp.addr}")
    return sorted(set(out))


def _sip_label(m: SipMessage) -> str:
    """INVITE, or status and a short reason: "100 trying (INVITE)", "404 No route (INVITE)"."""
    if m.is_request:
        return m.method
    reason = m.first_line[8:].split(" -- ")[0]
    return f"{' '.join(reason.split()[:3])} ({m.method})"


def _merge(arrows: dict[tuple[object, ...], Arrow], key: tuple[object, ...], make: Arrow,
           seen: Seen) -> None:
    arrow = arrows.setdefault(key, make)
    arrow.seen.append(seen)
    arrow.time = min(arrow.time, seen.time)


def build(plan: Plan, caps: Captures, call_id: str, caller: str, callees: list[str]) -> Ladder:
    """The ladder of one call (its Call-ID) from every capture of its round; a callee that
    itself dialled the number the caller dialled (a conference bridge) adds its own leg."""
    topo = Topology(plan)
    arrows: dict[tuple[object, ...], Arrow] = {}
    phones = {phone_name(e): plan.lan_of(e).phones[e] for e in [caller, *callees]}
    legs = {call_id} | _same_target(caps, call_id, phones)
    for capture, msgs in caps.sip.items():
        copies: dict[tuple[str, ...], int] = {}
        for m in msgs:
            if m.call_id not in legs:
                continue
            branch = m.header("via").split("branch=")[-1].split(";")[0]
            ident = (m.header("cseq"), m.first_line, branch)
            copies[ident] = copies.get(ident, 0) + 1
            p = m.pkt
            src, dst = topo.node(capture, p.src), topo.node(capture, p.dst)
            seen = Seen(capture, p.frame, p.time, f"{p.src}:{p.sport}", f"{p.dst}:{p.dport}")
            make = Arrow("sip", _sip_label(m), src, dst, p.time, copy=copies[ident],
                         ident=("sip", *ident, copies[ident]))
            _merge(arrows, ("sip", *ident, copies[ident], src, dst), make, seen)
            if topo.lan_index(capture) is None:
                arrows[("sip", *ident, copies[ident], src, dst)].private = \
                    _private_fields(m, topo)
    _media(topo, caps, phones, arrows)
    _crossings(plan, list(arrows.values()))
    cols = columns(plan, caller, callees, any(SERVER in (a.src, a.dst) for a in arrows.values()))
    keys = {k for k, _ in cols}
    shown = [a for a in arrows.values() if a.src in keys and (a.dst in keys or a.dst == NOWHERE)
             and a.src != a.dst]
    return Ladder(cols, sorted(shown, key=lambda a: (a.time, a.kind)))


def _user(request_line: str) -> str:
    return request_line.split(" ")[1].split("@")[0] if "@" in request_line else ""


def _same_target(caps: Captures, call_id: str, phones: dict[str, str]) -> set[str]:
    """Call-IDs of INVITEs the call's other phones sent to the user the caller's INVITE named."""
    target = next((_user(m.first_line) for msgs in caps.sip.values() for m in msgs
                   if m.call_id == call_id and m.is_request and m.method == "INVITE"), "")
    return {m.call_id for cap, ip in phones.items() for m in caps.sip.get(cap, [])
            if target and m.is_request and m.method == "INVITE" and m.pkt.src == ip
            and _user(m.first_line) == target}


def _crossings(plan: Plan, arrows: list[Arrow]) -> None:
    """For each message that entered a router on one side and left on the other (or, sent to
    the router's own public address from its LAN, came back into the LAN: a hairpin), what the
    NAT changed in the header; for one that entered and never left, the drop."""
    by_ident: dict[tuple[object, ...], list[Arrow]] = {}
    for a in arrows:
        by_ident.setdefault(a.ident, []).append(a)
    for lan in plan.lans:
        lan_in, wan_in = lan_side(lan), wan_side(lan)
        for a in arrows:
            if a.dst not in (lan_in, wan_in):
                continue
            hairpin = a.dst == lan_in and a.seen[0].dst.startswith(f"{lan.wan_ip}:")
            other = wan_in if a.dst == lan_in and not hairpin else lan_in
            out = [b for b in by_ident[a.ident] if b.src == other and b is not a]
            if out:
                out[0].nat = _rewrite(lan.router_name, a.seen[0], out[0].seen[0]) + \
                    (" (hairpin)" if hairpin else "")
            elif a.kind in ("sip", "rtp") and (a.dst == wan_in or hairpin):
                a.dropped = f"{lan.router_name} forwarded none of it into LAN{lan.index}" + \
                    (" (no hairpin)" if hairpin else "")


def _rewrite(router: str, before: Seen, after: Seen) -> str:
    changed = [f"{what} {x} -> {y}" for what, x, y in (("source", before.src, after.src),
                                                       ("destination", before.dst, after.dst))
               if x != y]
    return f"{router} rewrote " + " and ".join(changed) if changed else ""


def _media(topo: Topology, caps: Captures, phones: dict[str, str],
           arrows: dict[tuple[object, ...], Arrow]) -> None:
    """RTP streams (by SSRC) and STUN transactions of the call's phones, one arrow per
    segment; an RTP arrow counts the packets and names the first and last frame."""
    ours: set[object] = set()  # SSRCs and STUN transactions seen on the phones' own captures
    for cap, ip in phones.items():
        ours.update(ident for p, _, ident in _media_packets(caps, cap) if ip in (p.src, p.dst))
    flows: dict[tuple[str, object, str, str], list[Udp]] = {}
    for capture in caps.udp:
        for p, _, ident in _media_packets(caps, capture):
            if ident in ours:
                key = (capture, ident, topo.node(capture, p.src), topo.node(capture, p.dst))
                flows.setdefault(key, []).append(p)
    for (capture, ident, src, dst), pkts in flows.items():
        first, last = pkts[0], pkts[-1]
        if first.kind == "rtp":
            label = f"RTP x{len(pkts)} (PT {first.payload[1] & 0x7F})"
        else:
            mapped = xor_mapped(first.payload)
            label = stun_label(first.payload) + (f": mapped {mapped}" if mapped else "")
        seen = Seen(capture, first.frame, first.time, f"{first.src}:{first.sport}",
                    f"{first.dst}:{first.dport}")
        arrow = arrows.setdefault((ident, src, dst), Arrow(first.kind, label, src, dst,
                                                         first.time, ident=(ident,)))
        arrow.seen.append(seen)
        if first.kind == "rtp":
            arrow.last.append(Seen(capture, last.frame, last.time, seen.src, seen.dst))
        arrow.time = min(arrow.time, first.time)
        if first.kind == "rtp" and len(pkts) > arrow.count:
            arrow.count, arrow.label = len(pkts), label


STUN_METHODS = {1: "Binding", 3: "TURN Allocate", 4: "TURN Refresh", 6: "TURN Send",
                7: "TURN Data", 8: "TURN CreatePermission", 9: "TURN ChannelBind"}
STUN_CLASSES = {0x0000: "request", 0x0010: "indication", 0x0100: "response",
                0x0110: "error response"}


def stun_label(payload: bytes) -> str:
    """"STUN Binding request", "STUN TURN Allocate error response" (RFC 8489 §5 type bits)."""
    kind = int.from_bytes(payload[:2], "big")
    method = (kind & 0x000F) | (kind & 0x00E0) >> 1 | (kind & 0x3E00) >> 2
    name = STUN_METHODS.get(method, f"method {method:#x}")
    return f"STUN {name} {STUN_CLASSES[kind & 0x0110]}"


_MEDIA: weakref.WeakKeyDictionary[Captures, dict[str, list[tuple[Udp, str, object]]]] = \
    weakref.WeakKeyDictionary()


def _media_packets(caps: Captures, capture: str) -> list[tuple[Udp, str, object]]:
    """The RTP and STUN packets of one capture with their kind and identity, classified once
    per Captures (the calls of one round share it)."""
    per = _MEDIA.setdefault(caps, {})
    if capture not in per:
        found = []
        for p in caps.packets(capture):
            kind = p.kind
            if kind in ("rtp", "stun"):
                found.append((p, kind, _media_id(p, kind)))
        per[capture] = found
    return per[capture]


def _media_id(p: Udp, kind: str) -> object:
    if kind == "rtp":
        return ("rtp", p.payload[8:12])
    return ("stun", p.payload[8:20])


def xor_mapped(payload: bytes) -> str | None:
    """The XOR-MAPPED-ADDRESS (IPv4) of a STUN response: the public ip:port the server saw."""
    pos, end = 20, 20 + int.from_bytes(payload[2:4], "big")
    while pos + 4 <= min(end, len(payload)):
        kind, length = int.from_bytes(payload[pos:pos + 2], "big"), \
            int.from_bytes(payload[pos + 2:pos + 4], "big")
        value = payload[pos + 4:pos + 4 + length]
        if kind == 0x0020 and length >= 8 and value[1] == 1:
            port = int.from_bytes(value[2:4], "big") ^ 0x2112
            addr = bytes(a ^ b for a, b in zip(value[4:8], payload[4:8], strict=True))
            return f"{ipaddress.IPv4Address(addr)}:{port}"
        pos += 4 + (length + 3) // 4 * 4
    return None
