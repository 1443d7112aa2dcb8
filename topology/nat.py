"""NAT behaviours of a LAN router and the rules each one gets (pure: no root, no namespaces).

Names both ways: RFC 3489 cone names and RFC 4787 mapping/filtering.

    behaviour         mapping  filtering  how
    full-cone         EIM      EIF        MASQUERADE + nft map: mapped port -> LAN host (DNAT)
    restricted-cone   EIM      ADF        as full-cone, only from addresses the host contacted
    port-restricted   EIM      APDF       MASQUERADE + WAN firewall (conntrack only; default)
    symmetric         APDM     APDF       MASQUERADE --random-fully (the trunk port kept static)

iptables (nf_tables backend) keeps today's base rules; the dynamic parts (learned mappings,
hairpinning) live in one nft table `natlab`. `render_rules` returns both as text.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from natlab.constants import SIP_PORT, TRUNK_PORT

NFT_TABLE = "natlab"
KERNEL_UDP_TIMEOUT_S = 30  # nf_conntrack_udp_timeout default
KERNEL_UDP_STREAM_TIMEOUT_S = 120  # nf_conntrack_udp_timeout_stream default


class Mapping(Enum):
    """RFC 4787 mapping behaviour."""

    EIM = "endpoint-independent"
    ADM = "address-dependent"
    APDM = "address-and-port-dependent"


class Filtering(Enum):
    """RFC 4787 filtering behaviour."""

    EIF = "endpoint-independent"
    ADF = "address-dependent"
    APDF = "address-and-port-dependent"


class NatBehaviour(Enum):
    """RFC 3489 cone names; `.mapping` / `.filtering` give the RFC 4787 pair."""

    FULL_CONE = "full-cone"
    RESTRICTED_CONE = "restricted-cone"
    PORT_RESTRICTED = "port-restricted"
    SYMMETRIC = "symmetric"

    @property
    def mapping(self) -> Mapping:
        return Mapping.APDM if self is NatBehaviour.SYMMETRIC else Mapping.EIM

    @property
    def filtering(self) -> Filtering:
        return {NatBehaviour.FULL_CONE: Filtering.EIF,
                NatBehaviour.RESTRICTED_CONE: Filtering.ADF}.get(self, Filtering.APDF)

    @property
    def rfc4787(self) -> str:
        """e.g. "EIM/APDF"."""
        return f"{self.mapping.name}/{self.filtering.name}"

    @classmethod
    def parse(cls, text: str) -> NatBehaviour:
        """A cone name ("full-cone") or an RFC 4787 pair ("EIM/EIF", "eim-eif", "APDM+APDF")."""
        key = text.strip().lower()
        for b in cls:
            if key in (b.value, b.name.lower(), b.rfc4787.lower(),
                       b.rfc4787.lower().replace("/", "-"), b.rfc4787.lower().replace("/", "+")):
                return b
        names = ", ".join(f"{b.value} ({b.rfc4787})" for b in cls)
        raise ValueError(f"unknown NAT behaviour {text!r} (known: {names})")

    @classmethod
    def from_pair(cls, mapping: Mapping, filtering: Filtering) -> NatBehaviour | None:
        """The cone name of a measured pair, or None (e.g. APDM with EIF has none)."""
        for b in cls:
            if (b.mapping, b.filtering) == (mapping, filtering):
                return b
        return None


@dataclass(frozen=True)
class NatOptions:
    """One router's NAT: behaviour and options (the defaults are today's router)."""

    behaviour: NatBehaviour = NatBehaviour.PORT_RESTRICTED
    hairpin: bool = False
    udp_timeout_s: int | None = None  # None: kernel default (30 s)
    udp_stream_timeout_s: int | None = None  # None: kernel default (120 s)
    sip_alg: bool = False  # kernel nf_conntrack_sip / nf_nat_sip on the SIP ports

    def __post_init__(self) -> None:
        for name in ("udp_timeout_s", "udp_stream_timeout_s"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= 86400:
                raise ValueError(f"{name} must be within 1..86400 s, got {value}")

    @property
    def needs_map(self) -> bool:
        """Does the router learn mappings in an nft map (DNAT on inbound or hairpin)?"""
        return self.hairpin or self.behaviour in (NatBehaviour.FULL_CONE,
                                                  NatBehaviour.RESTRICTED_CONE)

    @property
    def mapping_timeout_s(self) -> int:
        """How long a learned mapping lives without outbound traffic (as conntrack's UDP)."""
        udp = self.udp_timeout_s or KERNEL_UDP_TIMEOUT_S
        stream = self.udp_stream_timeout_s or KERNEL_UDP_STREAM_TIMEOUT_S
        return max(udp, stream)


@dataclass(frozen=True)
class PortForward:
    port: int  # UDP port on the router's WAN address
    to_ip: str  # private address it is forwarded to


@dataclass(frozen=True)
class RouterRules:
    """What a router gets: command lines in order, then an nft ruleset ("" = none)."""

    commands: tuple[str, ...]
    nft: str

    def text(self) -> str:
        """Both, readable (for logs and reports)."""
        return "\n".join(self.commands) + ("\n# nft -f -\n" + self.nft if self.nft else "")


@dataclass(frozen=True)
class RouterIfaces:
    wan: str  # e.g. "r1-wan"
    lan: str  # e.g. "r1-lan"
    wan_ip: str
    lan_subnet: str  # e.g. "192.168.1.0/24"


def _masquerade(wan: str, opts: NatOptions, forward: PortForward | None) -> list[str]:
    if opts.behaviour is not NatBehaviour.SYMMETRIC:
        return [f"iptables -t nat -A POSTROUTING -o {wan} -j MASQUERADE"]
    rules = []
    if forward is not None:  # the trunk keeps its public port so signalling still works
        rules.append(f"iptables -t nat -A POSTROUTING -o {wan} -p udp -s {forward.to_ip} "
                     f"--sport {forward.port} -j MASQUERADE --to-ports {forward.port}")
    rules.append(f"iptables -t nat -A POSTROUTING -o {wan} -j MASQUERADE --random-fully")
    return rules


def iptables_rules(wan: str, forward: PortForward | None,
                   opts: NatOptions | None = None) -> list[str]:
    """iptables commands: MASQUERADE, the WAN firewall and the port forward."""
    opts = opts or NatOptions()
    rules = _masquerade(wan, opts, forward)
    if forward is not None:
        rules.append(f"iptables -t nat -A PREROUTING -i {wan} -p udp --dport {forward.port} "
                     f"-j DNAT --to-destination {forward.to_ip}:{forward.port}")
    rules += [
        # WAN firewall: only replies (and what is forwarded) may come in.
        f"iptables -A INPUT -i {wan} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        f"iptables -A INPUT -i {wan} -j DROP",
        f"iptables -A FORWARD -i {wan} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    ]
    if forward is not None or opts.needs_map:
        rules.append(f"iptables -A FORWARD -i {wan} -m conntrack --ctstate DNAT -j ACCEPT")
    rules.append(f"iptables -A FORWARD -i {wan} -j DROP")
    return rules


def option_commands(ifaces: RouterIfaces, opts: NatOptions) -> list[str]:
    """Conntrack timeouts (per namespace) and the SIP helper assignment."""
    cmds = []
    if opts.udp_timeout_s is not None:
        cmds.append(f"sysctl -qw net.netfilter.nf_conntrack_udp_timeout={opts.udp_timeout_s}")
    if opts.udp_stream_timeout_s is not None:
        cmds.append("sysctl -qw net.netfilter.nf_conntrack_udp_timeout_stream="
                    f"{opts.udp_stream_timeout_s}")
    if opts.sip_alg:
        for iface in (ifaces.lan, ifaces.wan):
            cmds.append(f"iptables -t raw -A PREROUTING -i {iface} -p udp -m multiport "
                        f"--dports {SIP_PORT},{TRUNK_PORT} -j CT --helper sip")
    return cmds


def nft_ruleset(ifaces: RouterIfaces, opts: NatOptions) -> str:
    """The nft table for learned mappings (cone filtering, hairpinning); "" if not needed."""
    if not opts.needs_map:
        return ""
    t = opts.mapping_timeout_s
    wan, lan = ifaces.wan, ifaces.lan
    lines = [
        f"table ip {NFT_TABLE} {{",
        "  # public UDP port -> the LAN host (address . port) that opened it",
        "  map cone {",
        "    type inet_service : ipv4_addr . inet_service",
        f"    flags dynamic,timeout; timeout {t}s",
        "  }",
        "  # public UDP port . remote address the LAN host sent to (restricted cone)",
        "  set peers {",
        "    type inet_service . ipv4_addr",
        f"    flags dynamic,timeout; timeout {t}s",
        "  }",
        "  chain learn {",
        "    # after source NAT: udp sport is the public port",
        "    type filter hook postrouting priority srcnat + 10; policy accept;",
        f"    oifname \"{wan}\" ip saddr {ifaces.wan_ip} meta l4proto udp ct direction original "
        "update @cone { udp sport : ct original ip saddr . ct original proto-src }",
        f"    oifname \"{wan}\" ip saddr {ifaces.wan_ip} meta l4proto udp ct direction original "
        "update @peers { udp sport . ip daddr }",
        "  }",
        "  chain inbound {",
        "    type nat hook prerouting priority dstnat + 10; policy accept;",
    ]
    b = opts.behaviour
    if b is NatBehaviour.FULL_CONE:
        lines.append(f"    iifname \"{wan}\" meta l4proto udp "
                     "dnat ip to udp dport map @cone")
    elif b is NatBehaviour.RESTRICTED_CONE:
        lines.append(f"    iifname \"{wan}\" meta l4proto udp udp dport . ip saddr @peers "
                     "dnat ip to udp dport map @cone")
    if opts.hairpin:
        lines.append(f"    iifname \"{lan}\" ip daddr {ifaces.wan_ip} meta l4proto udp "
                     "dnat ip to udp dport map @cone")
    lines.append("  }")
    if opts.hairpin:
        lines += [
            "  chain hairpin {",
            "    type nat hook postrouting priority srcnat + 10; policy accept;",
            f"    oifname \"{lan}\" ip saddr {ifaces.lan_subnet} ct status dnat "
            f"snat ip to {ifaces.wan_ip}",
            "  }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_rules(ifaces: RouterIfaces, opts: NatOptions,
                 forward: PortForward | None) -> RouterRules:
    """Everything a LAN router gets for a behaviour + options + its port forward."""
    cmds = iptables_rules(ifaces.wan, forward, opts) + option_commands(ifaces, opts)
    return RouterRules(tuple(cmds), nft_ruleset(ifaces, opts))


NAT_KEYS = ("behaviour", "hairpin", "udp_timeout_s", "udp_stream_timeout_s", "sip_alg")


def nat_options(value: object, where: str = "nat") -> NatOptions:
    """One router's NAT from scenario data: a name ("symmetric", "EIM/ADF") or a table
    {behaviour = "...", hairpin = true, udp_timeout_s = 30, udp_stream_timeout_s = 120,
    sip_alg = false}. ValueError (one line, naming `where`) on anything else."""
    if isinstance(value, str):
        try:
            return NatOptions(NatBehaviour.parse(value))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a behaviour name or a table, got {value!r}")
    unknown = set(value) - set(NAT_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                         f"(allowed: {', '.join(NAT_KEYS)})")
    for key in ("hairpin", "sip_alg"):
        if not isinstance(value.get(key, False), bool):
            raise ValueError(f"{where}.{key} must be true or false")
    for key in ("udp_timeout_s", "udp_stream_timeout_s"):
        if not isinstance(value.get(key, 1), int) or isinstance(value.get(key), bool):
            raise ValueError(f"{where}.{key} must be a whole number of seconds")
    try:
        return NatOptions(
            behaviour=NatBehaviour.parse(str(value.get("behaviour", "port-restricted"))),
            hairpin=value.get("hairpin", False), udp_timeout_s=value.get("udp_timeout_s"),
            udp_stream_timeout_s=value.get("udp_stream_timeout_s"),
            sip_alg=value.get("sip_alg", False))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def nat_table(value: object, lans: tuple[str, ...] = ("lan1", "lan2")) -> dict[str, NatOptions]:
    """A scenario's `nat = { lan1 = ..., lan2 = ... }` -> options per LAN (missing: default)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"nat must be a table like {{ lan1 = \"symmetric\" }}, got {value!r}")
    unknown = set(value) - set(lans)
    if unknown:
        raise ValueError(f"nat: unknown LAN(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(lans)})")
    return {lan: nat_options(v, f"nat.{lan}") for lan, v in value.items()}
