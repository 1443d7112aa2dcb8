"""What every scenario kind gives: its keys, its phones, how it runs a round, how it is judged
and its QoS rows. A kind is one module under scenarios/kinds/, registered in KINDS."""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.evidence import Captures
from analysis.expect import VERDICTS
from analysis.qos import Direction
from analysis.record import CallRecord
from analysis.verdict import CallSpec, Subject, Verdict
from scenarios.model import Call, Scenario, wan_of
from services.kamailio import RingGroup
from topology.plan import Lan, Plan


@dataclass
class RoundContext:
    """What running one round needs: the live network, and where its files go."""
    stack: ExitStack  # callbacks run when the round ends (agents stopped)
    net: Any  # topology.net.Network
    plan: Plan
    sc: Scenario
    outdir: Path  # the scenario folder
    creds: dict[str, str]  # extension -> digest password at its PBX
    daemons: list[Any] = field(default_factory=list)  # the scenario's running daemons

    def password(self, ext: str) -> str | None:
        return self.creds.get(ext)


@dataclass
class CallInput:
    """What judging one call needs, all read from the run folder."""
    plan: Plan
    sc: Scenario
    call: CallRecord
    reports: dict[str, dict[str, Any]]  # agent reports by role
    caps: Captures  # the call's round, each pcap read once
    folder: Path | None = None  # the scenario's folder in the run

    @property
    def subject(self) -> Subject:
        name = self.sc.name if self.sc.calls == 1 else f"{self.sc.name}/{self.call.label}"
        return Subject(name, self.sc.stun, self.sc.trunk, self.sc.expect)

    def spec(self, callee: str | None = None) -> CallSpec:
        return CallSpec(self.call.caller, callee or self.call.callee, self.sc.duration_s,
                        self.plan.call.caller_tone_hz, self.plan.call.callee_tone_hz,
                        wan_of(self.sc, self.plan).get("loss_pct", 0.0))

    def ip(self, ext: str) -> str:
        return self.plan.lan_of(ext).phones[ext]


class Kind:
    """The defaults are a plain two-party call's; a kind overrides what differs."""
    name = "call"
    keys: frozenset[str] = frozenset()  # TOML keys of its own
    callee_is_phone = True  # False when the callee is a group or a room
    tools: tuple[str, ...] = ()  # programs it needs beyond the phones' (preflight)
    capture_buffer_kib = 0  # tcpdump's kernel buffer (-B); 0: its default
    verdicts: tuple[str, ...] = VERDICTS  # what `expect` may say (the first is the default)

    def parse(self, where: str, data: dict[str, Any], plan: Plan) -> Any:
        return None

    def endpoints(self, spec: Any, caller: str, callee: str) -> tuple[str, str]:
        return caller, callee

    def registrants(self, sc: Scenario) -> set[str]:
        """Extensions that register besides the plan's phones (a conference room)."""
        return set()

    def fields(self, spec: Any) -> dict[str, str]:
        """Names a description may use besides {caller} and {callee}."""
        return {}

    def credentials(self, sc: Scenario, creds: dict[str, str]) -> dict[str, str]:
        """The digest passwords this scenario's PBXs and phones use (default: the run's)."""
        return creds

    def validate(self, sc: Scenario) -> None:
        """Checks across common keys and the kind's own (ConfigError)."""

    def concurrent_calls(self, sc: Scenario) -> int | None:
        """The most calls crossing the WAN at once (the shaper's load); None: not known
        before the run (the kind then checks impair.capacity itself)."""
        rounds = [c.round for c in sc.call_list()]
        return max(rounds.count(r) for r in set(rounds))

    def phones(self, sc: Scenario, calls: list[Call]) -> set[str]:
        return {e for c in calls for e in (c.caller, c.callee)}

    def alone(self, sc: Scenario) -> bool:
        """True: the scenario must have the machine to itself (natlab run --jobs): its
        figures (jitter, delay, MOS) depend on the CPU being its own. A scenario's own
        `alone = false` lets it share (its QoS table then says so)."""
        return sc.qos if sc.alone is None else sc.alone

    def ring_groups(self, sc: Scenario, lan: Lan) -> tuple[RingGroup, ...]:
        return ()

    def plan(self, sc: Scenario, plan: Plan) -> Plan:
        """The plan the scenario runs on (a kind may add hosts of its own, e.g. load)."""
        return plan

    def flood_limit(self, sc: Scenario) -> int | None:
        """The PBXs' flood guard (requests per source per window); None: the default."""
        return None

    def capture_points(self, plan: Plan, phones: set[str],
                       default: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
        """(node, interface, pcap name) of a round; default: both sides of both routers,
        both PBXs and the phones."""
        return default

    def agent_args(self, sc: Scenario, ext: str) -> list[str]:
        """Extra command-line options of a phone's agent."""
        return []

    def run_round(self, ctx: RoundContext, calls: list[Call]) -> None:
        raise NotImplementedError

    def judge(self, inp: CallInput) -> Verdict:
        raise NotImplementedError

    def qos(self, inp: CallInput) -> list[Direction]:
        return []
