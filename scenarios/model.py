"""Scenarios are data: a few TOML lines each, in scenarios/<set>/NNN_topic_variant.toml."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scenarios.extras import (
    KINDS,
    ConferenceSpec,
    RingGroupSpec,
    parse_baresip,
    parse_conference,
    parse_ring,
)
from topology.plan import ConfigError, Plan, parse_wan_profiles, read_toml

SCENARIO_ROOT = Path(__file__).resolve().parent
TRUNKS = ("none", "naive", "nat-aware")
VERDICTS = ("works", "fails")


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
    expect: str  # works | fails
    caller: str
    callee: str
    duration_s: float
    calls: int = 1
    pairs: tuple[tuple[str, str], ...] = ()  # concurrent (caller, callee) pairs; default one
    wan: str = "clean"  # WAN profile name from the config, or "inline"
    wan_values: tuple[tuple[str, float], ...] = ()  # an inline [wan] table of the scenario
    qos: bool = False  # compute the QoS table for this scenario
    kind: str = "call"  # call | ring-group | conference
    ring: RingGroupSpec | None = None
    conference: ConferenceSpec | None = None
    baresip: tuple[str, ...] = ()  # phones that run baresip instead of the pjsua2 agent
    video: bool = False  # audio + VP8 video (baresip phones)

    def call_list(self) -> list[Call]:
        """Calls in order; call i uses pair i mod len(pairs), rounds of len(pairs) calls."""
        pairs = self.pairs or ((self.caller, self.callee),)
        return [Call(i + 1, i // len(pairs) + 1, *pairs[i % len(pairs)])
                for i in range(self.calls)]

    @property
    def rounds(self) -> int:
        return max(c.round for c in self.call_list())


def wan_of(sc: Scenario, plan: Plan) -> dict[str, float]:
    """The impairment values a scenario runs with ({} = clean)."""
    return dict(sc.wan_values) if sc.wan == "inline" else dict(plan.wan_profiles.get(sc.wan, {}))


def available_sets() -> list[str]:
    return sorted(p.name for p in SCENARIO_ROOT.iterdir() if p.is_dir() and any(p.glob("*.toml")))


def _parse(path: Path, data: dict[str, Any], plan: Plan) -> Scenario:
    where = path.name
    known = {"description", "stun", "trunk", "expect", "caller", "callee", "duration_s",
             "calls", "pairs", "wan", "qos", "kind", "group", "answer_delay", "no_answer",
             "room", "participants", "baresip", "video"}
    extra = set(data) - known
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
    if not isinstance(data.get("stun"), bool):
        raise ConfigError(f"{where}: stun must be true or false")
    trunk = data.get("trunk")
    if trunk not in TRUNKS:
        raise ConfigError(f"{where}: trunk must be one of {', '.join(TRUNKS)}, got {trunk!r}")
    expect = data.get("expect", "works")
    if expect not in VERDICTS:
        raise ConfigError(f"{where}: expect must be works or fails, got {expect!r}")
    kind = str(data.get("kind", "call"))
    if kind not in KINDS:
        raise ConfigError(f"{where}: kind must be one of {', '.join(KINDS)}")
    ring = parse_ring(where, data.get("group"), data, plan) if kind == "ring-group" else None
    conf = parse_conference(where, data, plan) if kind == "conference" else None
    caller = str(data.get("caller", plan.call.caller))
    callee = str(data.get("callee", plan.call.callee))
    if ring is not None:
        callee = ring.ext
    if conf is not None:
        caller, callee = conf.participants[0], conf.room
    for ext in (caller, callee) if kind == "call" else (caller,):
        plan.lan_of(ext)  # raises ConfigError for an unknown extension
    if caller == callee:
        raise ConfigError(f"{where}: caller and callee are the same phone")
    duration = float(data.get("duration_s", plan.call.duration_s))
    if not 1.0 <= duration <= 60.0:
        raise ConfigError(f"{where}: duration_s must be within 1..60 s")
    calls = data.get("calls", 1)
    if not isinstance(calls, int) or not 1 <= calls <= 20:
        raise ConfigError(f"{where}: calls must be an integer within 1..20")
    pairs = tuple(_pair(where, p, plan) for p in data.get("pairs", []))
    phones = [e for pair in pairs for e in pair]
    if len(set(phones)) != len(phones):
        raise ConfigError(f"{where}: a phone appears in two concurrent pairs")
    wan_raw = data.get("wan", "clean")
    wan_values: tuple[tuple[str, float], ...] = ()
    if isinstance(wan_raw, dict):  # inline impairment, e.g. wan = { loss_pct = 2 }
        wan_values = tuple(sorted(parse_wan_profiles({"wan": {"inline": wan_raw}})
                                  ["inline"].items()))
        wan = "inline"
    else:
        wan = str(wan_raw)
    if wan != "inline" and wan not in plan.wan_profiles:
        raise ConfigError(f"{where}: unknown WAN profile {wan!r} "
                          f"(config has: {', '.join(sorted(plan.wan_profiles))})")
    return Scenario(name=path.stem, description=str(data.get("description", "")),
                    stun=data["stun"], trunk=trunk, expect=expect,
                    caller=caller, callee=callee, duration_s=duration, calls=calls,
                    pairs=pairs, wan=wan, wan_values=wan_values,
                    qos=bool(data.get("qos", False)), kind=kind, ring=ring, conference=conf,
                    baresip=parse_baresip(where, data, plan), video=bool(data.get("video")))


def _pair(where: str, value: Any, plan: Plan) -> tuple[str, str]:
    if not (isinstance(value, list) and len(value) == 2):
        raise ConfigError(f"{where}: pairs must be a list of [caller, callee]")
    caller, callee = str(value[0]), str(value[1])
    plan.lan_of(caller), plan.lan_of(callee)
    if caller == callee:
        raise ConfigError(f"{where}: a pair calls itself ({caller})")
    return caller, callee


def load_scenario(path: Path, plan: Plan) -> Scenario:
    return _parse(path, read_toml(path, "scenario"), plan)


def select(plan: Plan, set_name: str = "default", names: list[str] | None = None) -> list[Scenario]:
    """Scenarios of a set in file order, or the named ones (a stem, or a path to a file)."""
    if not names:
        folder = SCENARIO_ROOT / set_name
        if set_name not in available_sets():
            have = ", ".join(available_sets())
            raise ConfigError(f"unknown scenario set {set_name!r} (have: {have})")
        return [load_scenario(p, plan) for p in sorted(folder.glob("*.toml"))]
    every = {p.stem: p for p in SCENARIO_ROOT.glob("*/*.toml")}
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
