"""Address plan: the two LANs, the public side and the call settings, loaded from TOML.

Everything is validated before anything starts; a bad plan raises ConfigError with one line.
"""
from __future__ import annotations

import ipaddress
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from natlab.errors import InputError
from services.credentials import check_password

if sys.version_info >= (3, 11):
    import tomllib
else:  # Ubuntu 22.04's Python 3.10
    import tomli as tomllib

DEFAULT_PLAN = Path(__file__).resolve().parent.parent / "config" / "default.toml"
DOC_RANGES = [ipaddress.IPv4Network(n)
              for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
EXT_RE = re.compile(r"^[0-9]{4}$")


class ConfigError(InputError):
    """An invalid address plan; the message is one line."""


@dataclass(frozen=True)
class Lan:
    name: str  # "lan1"
    index: int  # 1 or 2: node names r1, pbx1, s1
    subnet: ipaddress.IPv4Network
    router: str
    pbx: str
    prefix: str
    wan_subnet: ipaddress.IPv4Network
    wan_ip: str
    phones: dict[str, str]  # extension -> address

    @property
    def wan_gateway(self) -> str:
        """The core router's address on this LAN's public subnet (its first host)."""
        return str(next(self.wan_subnet.hosts()))

    @property
    def router_name(self) -> str:
        return f"r{self.index}"

    @property
    def pbx_name(self) -> str:
        return f"pbx{self.index}"


@dataclass(frozen=True)
class Servers:
    subnet: ipaddress.IPv4Network
    stun: str
    stun2: str | None = None  # second public address of the server host (RFC 5780 discovery)
    attacker: str | None = None  # a stranger on the public side (the security set's attacker)

    @property
    def gateway(self) -> str:
        return str(next(self.subnet.hosts()))


@dataclass(frozen=True)
class CallSettings:
    caller: str
    callee: str
    duration_s: float
    caller_tone_hz: int
    callee_tone_hz: int


@dataclass(frozen=True)
class Plan:
    lans: tuple[Lan, Lan]
    servers: Servers
    call: CallSettings
    source: str  # file it came from
    wan_profiles: dict[str, dict[str, float]] = field(default_factory=lambda: {"clean": {}})
    # [auth] passwords: extension -> digest password; the others get one per run
    passwords: dict[str, str] = field(default_factory=dict, repr=False)

    def lan_of(self, ext: str) -> Lan:
        for lan in self.lans:
            if ext in lan.phones:
                return lan
        raise ConfigError(f"extension {ext} is not a phone of any LAN")

    def other(self, lan: Lan) -> Lan:
        return self.lans[1] if lan is self.lans[0] else self.lans[0]

    def public_subnets(self) -> list[ipaddress.IPv4Network]:
        return [self.lans[0].wan_subnet, self.lans[1].wan_subnet, self.servers.subnet]


def phone_name(ext: str) -> str:
    return f"p{ext}"


def _net(value: Any, where: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(str(value), strict=True)
    except ValueError as exc:
        raise ConfigError(f"{where}: not an IPv4 subnet: {value!r} ({exc})") from None


def _host(value: Any, subnet: ipaddress.IPv4Network, where: str) -> str:
    try:
        addr = ipaddress.IPv4Address(str(value))
    except ValueError:
        raise ConfigError(f"{where}: not an IPv4 address: {value!r}") from None
    if addr not in subnet or addr in (subnet.network_address, subnet.broadcast_address):
        raise ConfigError(f"{where}: {addr} is not a host address of {subnet}")
    return str(addr)


def _section(data: dict[str, Any], key: str) -> dict[str, Any]:
    section = data.get(key)
    if not isinstance(section, dict):
        raise ConfigError(f"missing section [{key}]")
    return section


def _lan(data: dict[str, Any], name: str, index: int) -> Lan:
    sec = _section(data, name)
    subnet = _net(sec.get("subnet"), f"{name}.subnet")
    if not subnet.is_private or any(subnet.overlaps(d) for d in DOC_RANGES):
        raise ConfigError(f"{name}.subnet {subnet} is not a private (RFC 1918) subnet")
    wan_subnet = _net(sec.get("wan_subnet"), f"{name}.wan_subnet")
    prefix = str(sec.get("prefix", ""))
    if not re.fullmatch(r"[0-9]", prefix):
        raise ConfigError(f"{name}.prefix must be one digit, got {prefix!r}")
    phones_raw = sec.get("phones")
    if not isinstance(phones_raw, dict) or not phones_raw:
        raise ConfigError(f"{name}.phones must map extensions to addresses")
    phones: dict[str, str] = {}
    for ext, addr in phones_raw.items():
        if not EXT_RE.match(ext) or not ext.startswith(prefix):
            raise ConfigError(
                f"{name}.phones: extension {ext} does not belong to {name} "
                f"(its extensions are {prefix}xxx)")
        phones[ext] = _host(addr, subnet, f"{name}.phones.{ext}")
    return Lan(
        name=name, index=index, subnet=subnet,
        router=_host(sec.get("router"), subnet, f"{name}.router"),
        pbx=_host(sec.get("pbx"), subnet, f"{name}.pbx"),
        prefix=prefix, wan_subnet=wan_subnet,
        wan_ip=_host(sec.get("wan_ip"), wan_subnet, f"{name}.wan_ip"),
        phones=phones,
    )


def _check_public(plan: Plan) -> None:
    for lan in plan.lans:
        if lan.wan_ip == lan.wan_gateway:
            raise ConfigError(f"{lan.name}.wan_ip {lan.wan_ip} is taken by the core router")
    if plan.servers.stun == plan.servers.gateway:
        raise ConfigError(f"servers.stun {plan.servers.stun} is taken by the core router")
    if plan.servers.stun2 in (plan.servers.gateway, plan.servers.stun):
        raise ConfigError(f"servers.stun2 {plan.servers.stun2} is taken by the core router "
                          "or servers.stun")
    if plan.servers.attacker is not None and plan.servers.attacker in (
            plan.servers.gateway, plan.servers.stun, plan.servers.stun2):
        raise ConfigError(f"servers.attacker {plan.servers.attacker} is taken by the core "
                          "router or the STUN server")


def _check_unique(plan: Plan) -> None:
    if plan.lans[0].prefix == plan.lans[1].prefix:
        raise ConfigError("lan1 and lan2 use the same extension prefix")
    for lan in plan.lans:
        addrs = [lan.router, lan.pbx, *lan.phones.values()]
        if len(set(addrs)) != len(addrs):
            raise ConfigError(f"{lan.name}: two nodes share an address")


def _call(data: dict[str, Any], plan_lans: tuple[Lan, Lan]) -> CallSettings:
    sec = _section(data, "call")
    exts = {e for lan in plan_lans for e in lan.phones}
    caller, callee = str(sec.get("caller")), str(sec.get("callee"))
    for role, ext in (("caller", caller), ("callee", callee)):
        if ext not in exts:
            raise ConfigError(f"call.{role} {ext} is not a phone in the plan")
    try:
        duration = float(sec.get("duration_s", 4.0))
        tones = int(sec.get("caller_tone_hz", 440)), int(sec.get("callee_tone_hz", 1000))
    except (TypeError, ValueError):
        raise ConfigError("call: duration_s and *_tone_hz must be numbers") from None
    if not 1.0 <= duration <= 60.0:
        raise ConfigError(f"call.duration_s must be within 1..60 s, got {duration}")
    if tones[0] == tones[1] or not all(100 <= t <= 3400 for t in tones):
        raise ConfigError("call tones must differ and lie within 100..3400 Hz")
    return CallSettings(caller, callee, duration, tones[0], tones[1])


def _check_subnets(data: dict[str, Any]) -> None:
    """Subnet-level rules first, so the error names the real mistake."""
    nets = []
    for name in ("lan1", "lan2"):
        sec = _section(data, name)
        nets.append((name, _net(sec.get("subnet"), f"{name}.subnet"), False))
        nets.append((f"{name}.wan", _net(sec.get("wan_subnet"), f"{name}.wan_subnet"), True))
    nets.append(("servers", _net(_section(data, "servers").get("subnet"), "servers.subnet"), True))
    for name, net, public in nets:
        if public and not any(net.subnet_of(d) for d in DOC_RANGES):
            raise ConfigError(
                f"{name} subnet {net} is outside the documentation ranges "
                "192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24")
    for i, (name_a, a, _) in enumerate(nets):
        for name_b, b, _ in nets[i + 1:]:
            if a.overlaps(b):
                raise ConfigError(f"subnets overlap: {name_a} {a} and {name_b} {b}")


WAN_KEYS = ("delay_ms", "jitter_ms", "loss_pct", "loss_burst", "rate_kbit")


def parse_wan_profiles(data: dict[str, Any]) -> dict[str, dict[str, float]]:
    """[wan.<name>] tables: impairments applied on the public core's links (clean = none)."""
    raw = data.get("wan", {})
    if not isinstance(raw, dict):
        raise ConfigError("[wan] must hold tables like [wan.clean]")
    profiles: dict[str, dict[str, float]] = {"clean": {}}
    for name, table in raw.items():
        if not isinstance(table, dict):
            raise ConfigError(f"wan.{name} must be a table")
        unknown = set(table) - set(WAN_KEYS)
        if unknown:
            raise ConfigError(f"wan.{name}: unknown key(s) {', '.join(sorted(unknown))} "
                              f"(allowed: {', '.join(WAN_KEYS)})")
        try:
            values = {k: float(v) for k, v in table.items()}
        except (TypeError, ValueError):
            raise ConfigError(f"wan.{name}: values must be numbers") from None
        if any(v < 0 for v in values.values()) or values.get("loss_pct", 0) > 100:
            raise ConfigError(f"wan.{name}: values must be >= 0 and loss_pct <= 100")
        profiles[name] = values
    return profiles


def parse_passwords(data: dict[str, Any], lans: tuple[Lan, Lan]) -> dict[str, str]:
    """[auth] passwords = { "2001" = "...", ... }: fixed digest passwords (optional)."""
    auth = data.get("auth", {})
    if not isinstance(auth, dict) or set(auth) - {"passwords"}:
        raise ConfigError("[auth] takes only passwords = { EXT = PASSWORD, ... }")
    raw = auth.get("passwords", {})
    if not isinstance(raw, dict):
        raise ConfigError("auth.passwords must map extensions to passwords")
    prefixes = {lan.prefix for lan in lans}
    out: dict[str, str] = {}
    for ext, pw in raw.items():
        if not EXT_RE.match(ext) or ext[0] not in prefixes:
            raise ConfigError(f"auth.passwords: {ext} is not an extension of lan1 or lan2")
        try:
            check_password(ext, str(pw) if isinstance(pw, str) else "")
        except ValueError as exc:
            raise ConfigError(f"auth.passwords: {exc}") from None
        out[ext] = pw
    return out


def parse_plan(data: dict[str, Any], source: str = "<dict>") -> Plan:
    _check_subnets(data)
    lans = (_lan(data, "lan1", 1), _lan(data, "lan2", 2))
    srv = _section(data, "servers")
    subnet = _net(srv.get("subnet"), "servers.subnet")
    stun2, attacker = srv.get("stun2"), srv.get("attacker")
    servers = Servers(subnet=subnet, stun=_host(srv.get("stun"), subnet, "servers.stun"),
                      stun2=None if stun2 is None else _host(stun2, subnet, "servers.stun2"),
                      attacker=None if attacker is None
                      else _host(attacker, subnet, "servers.attacker"))
    plan = Plan(lans=lans, servers=servers, call=_call(data, lans), source=source,
                wan_profiles=parse_wan_profiles(data), passwords=parse_passwords(data, lans))
    _check_unique(plan)
    _check_public(plan)
    return plan


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A TOML file as a dict; a missing or malformed file is one ConfigError line."""
    try:
        return tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def load_plan(path: Path | None = None) -> Plan:
    path = path or DEFAULT_PLAN
    return parse_plan(read_toml(path, "config"), str(path))
