"""Scenarios are data: a few TOML lines each, in scenarios/<set>/NNN_topic_variant.toml."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from topology.plan import ConfigError, Plan

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

SCENARIO_ROOT = Path(__file__).resolve().parent
TRUNKS = ("none", "naive", "nat-aware")
VERDICTS = ("works", "fails")


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


def available_sets() -> list[str]:
    return sorted(p.name for p in SCENARIO_ROOT.iterdir() if p.is_dir() and any(p.glob("*.toml")))


def _parse(path: Path, data: dict[str, Any], plan: Plan) -> Scenario:
    where = path.name
    known = {"description", "stun", "trunk", "expect", "caller", "callee", "duration_s"}
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
    caller = str(data.get("caller", plan.call.caller))
    callee = str(data.get("callee", plan.call.callee))
    for ext in (caller, callee):
        plan.lan_of(ext)  # raises ConfigError for an unknown extension
    if caller == callee:
        raise ConfigError(f"{where}: caller and callee are the same phone")
    duration = float(data.get("duration_s", plan.call.duration_s))
    if not 1.0 <= duration <= 60.0:
        raise ConfigError(f"{where}: duration_s must be within 1..60 s")
    return Scenario(name=path.stem, description=str(data.get("description", "")),
                    stun=data["stun"], trunk=trunk, expect=expect,
                    caller=caller, callee=callee, duration_s=duration)


def load_scenario(path: Path, plan: Plan) -> Scenario:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read scenario {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name}: invalid TOML: {exc}") from None
    return _parse(path, data, plan)


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
