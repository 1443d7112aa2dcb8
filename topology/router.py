"""NAT router and core router configuration: forwarding, MASQUERADE, WAN firewall, routes.

By default a LAN router behaves like a home router: source NAT (Linux MASQUERADE,
port-preserving, endpoint-independent mapping), no SIP ALG, a stateful WAN firewall that drops
unsolicited inbound packets, and optionally one UDP port forward to its PBX (the trunk).
Other behaviours and options: topology/nat.py renders their rules, this module applies them.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Protocol

from natlab.errors import RunFailure
from topology.nat import (
    NatOptions,
    PortForward,
    RouterIfaces,
    RouterRules,
    iptables_rules,
    render_rules,
)

__all__ = ["PortForward", "RouterError", "configure_core", "configure_nat_router", "nat_rules"]


class Node(Protocol):
    name: str

    def cmd(self, *args: str) -> str: ...


class RouterError(RunFailure):
    """A router rule could not be installed (e.g. a missing kernel feature)."""


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
    """iptables commands of the default (port-restricted) router whose public side is `wan`."""
    return iptables_rules(wan, forward)


def apply_rules(node: Node, rules: RouterRules) -> None:
    for command in rules.commands:
        run(node, command)
    if rules.nft:  # one file, one transaction (namespaces share the filesystem)
        with tempfile.NamedTemporaryFile("w", prefix=f"natlab-{node.name}-", suffix=".nft") as f:
            f.write(rules.nft)
            f.flush()
            run(node, f"nft -f {f.name}")


def configure_nat_router(node: Node, ifaces: RouterIfaces | str, gateway: str,
                         forward: PortForward | None,
                         options: NatOptions | None = None) -> RouterRules:
    """Forwarding, default route and the NAT rules; returns the rules applied.

    `ifaces` may be just the WAN interface name (then only the default router is possible).
    """
    options = options or NatOptions()
    disable_ipv6(node)
    enable_forwarding(node)
    wan = ifaces if isinstance(ifaces, str) else ifaces.wan
    run(node, f"ip route replace default via {gateway} dev {wan}")
    if isinstance(ifaces, str):
        if options != NatOptions():
            raise RouterError(f"{node.name}: NAT options need the router's interfaces")
        rules = RouterRules(tuple(nat_rules(wan, forward)), "")
    else:
        rules = render_rules(ifaces, options, forward)
    apply_rules(node, rules)
    return rules


def configure_core(node: Node) -> None:
    """The public core only routes between its connected subnets; no route to any LAN."""
    disable_ipv6(node)
    enable_forwarding(node)


SIP_PARAMS = Path("/sys/module/nf_conntrack_sip/parameters")


def sip_alg_params(base: Path = SIP_PARAMS) -> dict[str, str]:
    """The kernel SIP helper's module parameters (host-global: every namespace shares them)."""
    if not base.is_dir():
        return {}
    return {p.name: p.read_text().strip() for p in sorted(base.iterdir()) if p.is_file()}


def set_sip_alg_params(values: dict[str, str], base: Path = SIP_PARAMS) -> dict[str, str]:
    """Write the given writable parameters; return the previous values (to restore later).

    `ports` is read-only after the module loads: asking for another value is an error."""
    before = sip_alg_params(base)
    for name, value in values.items():
        if name not in before:
            raise RouterError(f"nf_conntrack_sip has no parameter {name!r}")
        if before[name] == str(value):
            continue
        try:
            (base / name).write_text(str(value))
        except OSError as exc:
            raise RouterError(f"cannot set nf_conntrack_sip {name}={value}: "
                              f"{exc.strerror}") from None
    return {name: before[name] for name in values}
