"""Evidence from the captures: where the SIP messages and RTP packets of one call went.

Each router is captured on both sides (rN-lan.pcap, rN-wan.pcap); a finding names the pcap
and the Wireshark frame number that shows it.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from analysis.packets import SipMessage, Udp, read_udp, sip_messages, unwrap_turn
from topology.plan import Plan


@dataclass(frozen=True)
class Where:
    pcap: str  # file name, e.g. r2-wan.pcap
    frame: int

    def __str__(self) -> str:
        return f"{self.pcap} frame {self.frame}"


class Captures:
    """The captures of one round (routers, PBXs, phones), each read and parsed once."""

    def __init__(self, pcaps: dict[str, Path]):
        self.udp: dict[str, list[Udp]] = {k: unwrap_turn(read_udp(p)) for k, p in pcaps.items()}
        self.sip: dict[str, list[SipMessage]] = {k: sip_messages(v) for k, v in self.udp.items()}

    def packets(self, name: str) -> list[Udp]:
        """The UDP datagrams of one capture (e.g. "p1002"), none if it was not taken."""
        return self.udp.get(name, [])

    def call_sip(self, intf: str, call_id: str) -> list[SipMessage]:
        return [m for m in self.sip.get(intf, []) if m.call_id == call_id]

    def first_invite(self, intf: str, src_ip: str) -> SipMessage | None:
        for m in self.sip.get(intf, []):
            if m.is_request and m.method == "INVITE" and m.pkt.src == src_ip:
                return m
        return None

    def rtp_to(self, intf: str, dst: str, dport: int | None = None) -> list[Udp]:
        return [p for p in self.udp.get(intf, []) if p.kind == "rtp" and p.dst == dst
                and (dport is None or p.dport == dport)]

    def rtp_from(self, intf: str, src: str) -> list[Udp]:
        return [p for p in self.udp.get(intf, []) if p.kind == "rtp" and p.src == src]


def where(intf: str, msg_or_pkt: SipMessage | Udp) -> Where:
    pkt = msg_or_pkt.pkt if isinstance(msg_or_pkt, SipMessage) else msg_or_pkt
    return Where(f"{intf}.pcap", pkt.frame)


class Labels:
    """Human names for addresses of the plan: '2005 (192.168.1.25)', "r1's public address"."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.names: dict[str, str] = {plan.servers.stun: "the STUN server"}
        if plan.servers.attacker:
            self.names[plan.servers.attacker] = "the attacker"
        for lan in plan.lans:
            self.names[lan.pbx] = f"PBX{lan.index}"
            self.names[lan.router] = f"r{lan.index}"
            self.names[lan.wan_ip] = f"r{lan.index}'s public address"
            for ext, addr in lan.phones.items():
                self.names[addr] = ext

    def __call__(self, addr: str | None) -> str:
        if addr is None:
            return "no address"
        name = self.names.get(addr)
        return f"{addr} ({name})" if name else addr

    def is_private(self, addr: str) -> bool:
        return any(ipaddress.ip_address(addr) in lan.subnet for lan in self.plan.lans) or \
            ipaddress.ip_address(addr).is_private and not self.is_public(addr)

    def is_public(self, addr: str) -> bool:
        return any(ipaddress.ip_address(addr) in n for n in self.plan.public_subnets())

    def lan_name(self, addr: str) -> str | None:
        for lan in self.plan.lans:
            if ipaddress.ip_address(addr) in lan.subnet:
                return f"LAN{lan.index}"
        return None


def final_response(msgs: list[SipMessage], method: str) -> SipMessage | None:
    """The first final (>=200) response to `method` among a call's messages."""
    for m in msgs:
        if not m.is_request and m.method == method and (m.status or 0) >= 200:
            return m
    return None


def requests(msgs: list[SipMessage], method: str) -> list[SipMessage]:
    return [m for m in msgs if m.is_request and m.method == method]


def responses(msgs: list[SipMessage], method: str, status: int) -> list[SipMessage]:
    return [m for m in msgs if not m.is_request and m.method == method and m.status == status]
