"""NAT router and core router configuration: forwarding, MASQUERADE, WAN firewall, routes.

A LAN router behaves like a home router: source NAT (Linux MASQUERADE, port-preserving,
endpoint-independent mapping), no SIP ALG, a stateful WAN firewall that drops unsolicited
inbound packets, and optionally one UDP port forward to its PBX (the trunk).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from natlab.errors import RunFailure


class Node(Protocol):
    name: str

    def cmd(self, *args: str) -> str: ...


class RouterError(RunFailure):
    """A router rule could not be installed (e.g. a missing kernel feature)."""


@dataclass(frozen=True)
class PortForward:
    port: int  # UDP port on the router's WAN address
    to_ip: str  # private address it is forwarded to


def run(node: Node, command: str) -> str:
    """Run a shell command in a node; raise RouterError with its first output line on failure."""
    out = node.cmd(f"{command} 2>&1; echo __rc=$?")
    body, _, rc = out.rpartition("__rc=")
    if rc.strip() != "0":
        first = body.strip().splitlines()[0] if body.strip() else "no output"
        raise RouterError(f"{node.name}: '{command}' failed: {first}")
    return body


def disable_ipv6(node: Node) -> None:
    run(node, "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")


def enable_forwarding(node: Node) -> None:
    run(node, "sysctl -qw net.ipv4.ip_forward=1")


def nat_rules(wan: str, forward: PortForward | None) -> list[str]:
    """iptables commands for a LAN router whose public interface is `wan`."""
    rules = [
        f"iptables -t nat -A POSTROUTING -o {wan} -j MASQUERADE",
        # WAN firewall: only replies (and the port forward) may come in.
        f"iptables -A INPUT -i {wan} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        f"iptables -A INPUT -i {wan} -j DROP",
        f"iptables -A FORWARD -i {wan} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    ]
    if forward is not None:
        rules.insert(1, f"iptables -t nat -A PREROUTING -i {wan} -p udp --dport {forward.port} "
                        f"-j DNAT --to-destination {forward.to_ip}:{forward.port}")
        rules.append(f"iptables -A FORWARD -i {wan} -m conntrack --ctstate DNAT -j ACCEPT")
    rules.append(f"iptables -A FORWARD -i {wan} -j DROP")
    return rules


def configure_nat_router(node: Node, wan: str, gateway: str, forward: PortForward | None) -> None:
    disable_ipv6(node)
    enable_forwarding(node)
    run(node, f"ip route replace default via {gateway} dev {wan}")
    for rule in nat_rules(wan, forward):
        run(node, rule)


def configure_core(node: Node) -> None:
    """The public core only routes between its connected subnets; no route to any LAN."""
    disable_ipv6(node)
    enable_forwarding(node)
