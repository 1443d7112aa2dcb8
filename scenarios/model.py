"""Scenarios are data: a few TOML lines each, in scenarios/<set>/NNN_topic_variant.toml.

The keys every scenario has are parsed here; a kind (scenarios/kinds/) parses its own keys
into its spec. Everything is validated before anything starts: one ConfigError line.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from impair.capacity import over_ceiling
from scenarios.remedy import REMEDIES, Remedy
from services.kamailio import TrunkMode
from topology.nat import NatOptions, nat_table
from topology.plan import ConfigError, Plan, parse_wan_profiles, read_toml

SCENARIO_ROOT = Path(__file__).resolve().parent
TRUNKS = tuple(m.value for m in TrunkMode)
PHONE_AGENTS = ("baresip", "linphone")  # phones may run these instead of the pjsua2 agent
LINPHONE_POLICIES = ("none", "stun", "stun-ice")  # linphonec's NAT policy (protocols=...)
COMMON_KEYS = frozenset({"description", "kind", "stun", "trunk", "expect", "caller", "callee",
                         "duration_s", "calls", "pairs", "wan", "qos", "insecure", "nat",
                         "remedy", "measure", "linphone_policy", "sequence", "pause_s",
                         "forward", "trunk_keepalive_s", "alone", *PHONE_AGENTS})
MEASURES = ("mapping", "filtering", "hairpin")  # RFC 5780 discovery tests a scenario asks for


@dataclass(frozen=True)
class Call:
    """One call of a scenario: who calls whom, in which round (calls of a round are concurrent)."""
    index: int  # 1-based
    round: int  # 1-based
    caller: str
    callee: str

    @property
    def label(self) -> str:
        return f"call-{self.index:02d}"


@dataclass(frozen=True)
class Scenario:
    name: str  # file stem, e.g. 006_call_stun_nataware
    description: str
    stun: bool
    trunk: str  # none | naive | nat-aware
    expect: str  # works | fails (an attack: obtained | refused)
    caller: str
    callee: str
    duration_s: float
    calls: int = 1
    pairs: tuple[tuple[str, str], ...] = ()  # concurrent (caller, callee) pairs; default one
    wan: str = "clean"  # WAN profile name from the config, or "inline"
    wan_values: tuple[tuple[str, float], ...] = ()  # an inline [wan] table of the scenario
    qos: bool = False  # compute the QoS table for this scenario
    kind: str = "call"  # a key of scenarios.kinds.KINDS
    spec: Any = None  # the kind's own settings (ring group, conference room, ...)
    agents: tuple[tuple[str, str], ...] = ()  # (extension, agent) for phones not on pjsua2
    insecure: bool = False  # the PBXs without digest auth, trunk check and flood guard
    nat: tuple[tuple[str, NatOptions], ...] = ()  # per LAN name; missing = today's router
    remedy: Remedy | None = None  # a named remedy (sets stun and trunk)
    measure: tuple[str, ...] = ()  # discovery tests before the calls ((): none)
    linphone_policy: str | None = None  # None: stun-ice with STUN, none without
    sequence: tuple[tuple[str, str], ...] = ()  # one call per round, in this order
    pause_s: float = 0.0  # idle time between rounds
    no_forward: tuple[str, ...] = ()  # LANs whose router gets no trunk port forward
    trunk_keepalive_s: int = 0  # the PBXs ping the peer's trunk (keeps NAT mappings alive)
    alone: bool | None = None  # the machine to itself under --jobs; None: the kind decides
    source: Path | None = None  # the TOML file it came from

    def call_list(self) -> list[Call]:
        """Calls in order; call i uses pair i mod len(pairs), rounds of len(pairs) calls
        (with a sequence: one call per round, in its order)."""
        if self.sequence:
            return [Call(i + 1, i + 1, a, b) for i, (a, b) in enumerate(self.sequence)]
        pairs = self.pairs or ((self.caller, self.callee),)
        return [Call(i + 1, i // len(pairs) + 1, *pairs[i % len(pairs)])
                for i in range(self.calls)]

    @property
    def rounds(self) -> int:
        return max(c.round for c in self.call_list())

    def agent_of(self, ext: str) -> str:
        """The phone agent an extension runs: pjsua2 unless the scenario says otherwise."""
        return dict(self.agents).get(ext, "pjsua2")


def wan_of(sc: Scenario, plan: Plan) -> dict[str, float]:
    """The impairment values a scenario runs with ({} = clean)."""
    return dict(sc.wan_values) if sc.wan == "inline" else dict(plan.wan_profiles.get(sc.wan, {}))


def available_sets() -> list[str]:
    return sorted(p.name for p in SCENARIO_ROOT.iterdir() if p.is_dir() and any(p.glob("*.toml")))


def _choice(where: str, key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"{where}: {key} must be one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def parse_scenario(path: Path, data: dict[str, Any], plan: Plan) -> Scenario:
    from scenarios.kinds import KINDS  # the kinds import this module

    where = path.name
    kind_name = _choice(where, "kind", data.get("kind", "call"), tuple(KINDS))
    kind = KINDS[kind_name]
    extra = set(data) - COMMON_KEYS - kind.keys
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
    remedy = _remedy(where, data)
    if remedy is not None:
        data = {**data, "stun": remedy.stun, "trunk": remedy.trunk}
    if not isinstance(data.get("stun"), bool):
        raise ConfigError(f"{where}: stun must be true or false")
    trunk = _choice(where, "trunk", data.get("trunk"), TRUNKS)
    nat = _nat(where, data.get("nat"), remedy)
    expect = _choice(where, "expect", data.get("expect", kind.verdicts[0]), kind.verdicts)
    spec = kind.parse(where, data, plan)
    caller, callee = kind.endpoints(spec, str(data.get("caller", plan.call.caller)),
                                    str(data.get("callee", plan.call.callee)))
    for ext in (caller, callee) if kind.callee_is_phone else (caller,):
        plan.lan_of(ext)  # raises ConfigError for an unknown extension
    if caller == callee:
        raise ConfigError(f"{where}: caller and callee are the same phone")
    duration = float(data.get("duration_s", plan.call.duration_s))
    if not 1.0 <= duration <= 60.0:
        raise ConfigError(f"{where}: duration_s must be within 1..60 s")
    calls = data.get("calls", len(data.get("sequence", [])) or 1)
    if not isinstance(calls, int) or not 1 <= calls <= 20:
        raise ConfigError(f"{where}: calls must be an integer within 1..20")
    if data.get("sequence") and calls != len(data["sequence"]):
        raise ConfigError(f"{where}: a sequence sets the calls: leave calls out")
    pairs = tuple(_pair(where, p, plan) for p in data.get("pairs", []))
    phones = [e for pair in pairs for e in pair]
    if len(set(phones)) != len(phones):
        raise ConfigError(f"{where}: a phone appears in two concurrent pairs")
    wan, wan_values = _wan(where, data.get("wan", "clean"), plan)
    try:  # descriptions name the phones of the plan in use
        description = str(data.get("description", "")).format(
            caller=caller, callee=callee, **kind.fields(spec))
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"{where}: description names an unknown field {exc}") from None
    sc = Scenario(name=path.stem, description=description,
                  stun=data["stun"], trunk=trunk, expect=expect, caller=caller, callee=callee,
                  duration_s=duration, calls=calls, pairs=pairs, wan=wan,
                  wan_values=wan_values, qos=bool(data.get("qos", False)), kind=kind_name,
                  spec=spec, agents=_agents(where, data, plan),
                  insecure=_flag(where, data, "insecure"), nat=nat, remedy=remedy,
                  measure=_measure(where, data, nat),
                  linphone_policy=_linphone_policy(where, data),
                  sequence=tuple(_pair(where, p, plan) for p in data.get("sequence", [])),
                  pause_s=_number(where, data, "pause_s", 0.0, 60.0),
                  no_forward=_no_forward(where, data, plan),
                  trunk_keepalive_s=int(_number(where, data, "trunk_keepalive_s", 0, 60)),
                  alone=_flag(where, data, "alone") if "alone" in data else None,
                  source=path)
    kind.validate(sc)
    _capacity(where, kind.concurrent_calls(sc), wan_of(sc, plan))
    return sc


def _capacity(where: str, calls: int | None, values: dict[str, float]) -> None:
    """Refuse more concurrent calls than the WAN shaper keeps on time (bench/shaper.py)."""
    why = None if calls is None else over_ceiling(calls, values, netem=False)
    if why:
        from impair.apply import has_netem  # a kernel probe: only when it matters

        if not has_netem():
            raise ConfigError(f"{where}: {why}")


def _remedy(where: str, data: dict[str, Any]) -> Remedy | None:
    if "remedy" not in data:
        return None
    name = _choice(where, "remedy", data["remedy"], tuple(REMEDIES))
    if "stun" in data or "trunk" in data:
        raise ConfigError(f"{where}: remedy {name} sets stun and trunk; give one or the other")
    return REMEDIES[name]


def _nat(where: str, raw: Any, remedy: Remedy | None) -> tuple[tuple[str, NatOptions], ...]:
    try:
        table = nat_table(raw)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if remedy is not None and remedy.alg:  # the ALG runs on both routers
        table = {lan: NatOptions(o.behaviour, o.hairpin, o.udp_timeout_s,
                                 o.udp_stream_timeout_s, True)
                 for lan, o in {"lan1": NatOptions(), "lan2": NatOptions(), **table}.items()}
    return tuple(sorted(table.items()))


def _measure(where: str, data: dict[str, Any],
             nat: tuple[tuple[str, NatOptions], ...]) -> tuple[str, ...]:
    """Discovery runs wherever a NAT is configured: mapping and filtering by default."""
    raw = data.get("measure", list(MEASURES[:2]) if nat else [])
    if not isinstance(raw, list) or any(m not in MEASURES for m in raw):
        raise ConfigError(f"{where}: measure must be a list of {', '.join(MEASURES)}")
    return tuple(str(m) for m in raw)


def _linphone_policy(where: str, data: dict[str, Any]) -> str | None:
    if "linphone_policy" not in data:
        return None
    if not data.get("linphone"):
        raise ConfigError(f"{where}: linphone_policy needs linphone phones")
    return _choice(where, "linphone_policy", data["linphone_policy"], LINPHONE_POLICIES)


def _number(where: str, data: dict[str, Any], key: str, low: float, high: float) -> float:
    value = data.get(key, low)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(f"{where}: {key} must be a number within {low:g}..{high:g}")
    return float(value)


def _no_forward(where: str, data: dict[str, Any], plan: Plan) -> tuple[str, ...]:
    raw = data.get("forward", {})
    names = {lan.name for lan in plan.lans}
    if not isinstance(raw, dict) or set(raw) - names or any(
            not isinstance(v, bool) for v in raw.values()):
        raise ConfigError(f"{where}: forward must be a table like {{ lan2 = false }}")
    return tuple(sorted(lan for lan, on in raw.items() if not on))


def _flag(where: str, data: dict[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be true or false")
    return value


def _wan(where: str, raw: Any, plan: Plan) -> tuple[str, tuple[tuple[str, float], ...]]:
    if isinstance(raw, dict):  # inline impairment, e.g. wan = { loss_pct = 2 }
        values = parse_wan_profiles({"wan": {"inline": raw}})["inline"]
        return "inline", tuple(sorted(values.items()))
    if str(raw) not in plan.wan_profiles:
        raise ConfigError(f"{where}: unknown WAN profile {raw!r} "
                          f"(config has: {', '.join(sorted(plan.wan_profiles))})")
    return str(raw), ()


def _agents(where: str, data: dict[str, Any], plan: Plan) -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {}
    for agent in PHONE_AGENTS:
        for ext in data.get(agent, []):
            plan.lan_of(str(ext))
            if str(ext) in out:
                raise ConfigError(f"{where}: phone {ext} is given two agents")
            out[str(ext)] = agent
    return tuple(sorted(out.items()))


def _pair(where: str, value: Any, plan: Plan) -> tuple[str, str]:
    if not (isinstance(value, list) and len(value) == 2):
        raise ConfigError(f"{where}: pairs must be a list of [caller, callee]")
    caller, callee = str(value[0]), str(value[1])
    plan.lan_of(caller), plan.lan_of(callee)
    if caller == callee:
        raise ConfigError(f"{where}: a pair calls itself ({caller})")
    return caller, callee


def load_scenario(path: Path, plan: Plan) -> Scenario:
    try:
        return parse_scenario(path, read_toml(path, "scenario"), plan)
    except ConfigError as exc:  # name the file, e.g. a phone the plan in use does not have
        if str(exc).startswith(path.name) or str(path) in str(exc):
            raise
        hint = (f" (the scenario names it; the address plan {plan.source} has no such phone)"
                if "not a phone of any LAN" in str(exc) else "")
        raise ConfigError(f"{path.name}: {exc}{hint}") from None


def select(plan: Plan, set_name: str = "default", names: list[str] | None = None,
           root: Path = SCENARIO_ROOT) -> list[Scenario]:
    """Scenarios of a set in file order, or the named ones (a stem, or a path to a file)."""
    if not names:
        folder = root / set_name
        if set_name not in available_sets():
            have = ", ".join(available_sets())
            raise ConfigError(f"unknown scenario set {set_name!r} (have: {have})")
        return [load_scenario(p, plan) for p in sorted(folder.glob("*.toml"))]
    every = {p.stem: p for p in root.glob("*/*.toml")}
    chosen = []
    for name in names:
        path = Path(name)
        if path.suffix == ".toml" and path.exists():
            chosen.append(load_scenario(path, plan))
        elif name in every:
            chosen.append(load_scenario(every[name], plan))
        else:
            raise ConfigError(f"unknown scenario {name!r} (see: natlab list)")
    return chosen
