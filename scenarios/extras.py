"""Scenario parts beyond a plain call: ring group, conference, baresip phones, video."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from topology.plan import ConfigError, Lan, Plan

KINDS = ("call", "ring-group", "conference")
CONF_TONES = (440, 1000, 1500, 2000)  # participant i plays CONF_TONES[i]


@dataclass(frozen=True)
class RingGroupSpec:
    ext: str
    members: tuple[str, ...]
    strategy: str  # parallel | sequential
    ring_s: int
    answer_delay: tuple[tuple[str, float], ...]  # member -> seconds before 200 OK
    no_answer: tuple[str, ...]  # members that ring but never answer

    def delay_of(self, ext: str) -> float:
        return dict(self.answer_delay).get(ext, 0.2)


@dataclass(frozen=True)
class ConferenceSpec:
    room: str  # extension of the bridge (runs beside the PBX of its LAN)
    participants: tuple[str, ...]

    def tone_of(self, ext: str) -> int:
        return CONF_TONES[self.participants.index(ext)]


def lan_by_prefix(plan: Plan, ext: str, where: str) -> Lan:
    for lan in plan.lans:
        if re.fullmatch(rf"{lan.prefix}[0-9]{{3}}", ext):
            return lan
    raise ConfigError(f"{where}: extension {ext} matches no LAN prefix")


def parse_ring(where: str, raw: Any, data: dict[str, Any], plan: Plan) -> RingGroupSpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: group must be a table {{ ext, members, strategy, ring_s }}")
    ext = str(raw.get("ext", ""))
    lan = lan_by_prefix(plan, ext, where)
    if ext in lan.phones:
        raise ConfigError(f"{where}: group extension {ext} is a phone")
    members = tuple(str(m) for m in raw.get("members", []))
    if len(members) < 2 or any(m not in lan.phones for m in members):
        raise ConfigError(f"{where}: group members must be two or more phones of {lan.name}")
    strategy = str(raw.get("strategy", "parallel"))
    if strategy not in ("parallel", "sequential"):
        raise ConfigError(f"{where}: group strategy must be parallel or sequential")
    delays = data.get("answer_delay", {})
    no_answer = tuple(str(m) for m in data.get("no_answer", []))
    if not isinstance(delays, dict) or set(delays) - set(members) or set(no_answer) - set(members):
        raise ConfigError(f"{where}: answer_delay/no_answer may only name group members")
    return RingGroupSpec(ext, members, strategy, int(raw.get("ring_s", 5)),
                         tuple(sorted((str(k), float(v)) for k, v in delays.items())), no_answer)


def parse_conference(where: str, data: dict[str, Any], plan: Plan) -> ConferenceSpec:
    room = str(data.get("room", ""))
    lan = lan_by_prefix(plan, room, where)
    if room in lan.phones:
        raise ConfigError(f"{where}: conference room {room} is a phone")
    parts = tuple(str(p) for p in data.get("participants", []))
    if not 3 <= len(parts) <= len(CONF_TONES) or len(set(parts)) != len(parts):
        raise ConfigError(f"{where}: a conference needs 3..{len(CONF_TONES)} distinct phones")
    for p in parts:
        plan.lan_of(p)
    return ConferenceSpec(room, parts)


def parse_baresip(where: str, data: dict[str, Any], plan: Plan) -> tuple[str, ...]:
    phones = tuple(str(p) for p in data.get("baresip", []))
    for p in phones:
        plan.lan_of(p)
    if data.get("video") and not phones:
        raise ConfigError(f"{where}: video needs baresip phones (the pjsua2 wheel has no video)")
    return phones


def bridge_address(plan: Plan, room: str) -> str:
    """The bridge runs in its PBX's namespace, on the PBX's address."""
    return lan_by_prefix(plan, room, "room").pbx


def is_private(addr: str) -> bool:
    return ipaddress.ip_address(addr).is_private
