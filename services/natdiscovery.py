"""NAT behaviour measured, not assumed: coturn's `turnutils_natdiscovery` (RFC 5780).

Run from a LAN host against coturn listening on two public addresses (alternate port 3479):
`run_discovery` executes the tests and keeps the raw output; `parse_discovery` (pure) turns
that output into a `Discovery`; `compare` sets it against the configured NatOptions.

    turnutils_natdiscovery -m -f SERVER     mapping + filtering
    turnutils_natdiscovery -H SERVER        hairpinning
    turnutils_natdiscovery -t -T S SERVER   does a mapping survive S seconds of silence?
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from natlab.constants import STUN_PORT
from natlab.errors import RunFailure
from topology.nat import Filtering, Mapping, NatBehaviour, NatOptions

MAPPING_LINES = {
    "No NAT! (Endpoint Independent Mapping)": Mapping.EIM,
    "NAT with Endpoint Independent Mapping!": Mapping.EIM,
    "NAT with Address Dependent Mapping!": Mapping.ADM,
    "NAT with Address and Port Dependent Mapping!": Mapping.APDM,
}
FILTERING_LINES = {
    "NAT with Endpoint Independent Filtering!": Filtering.EIF,
    "NAT with Address Dependent Filtering!": Filtering.ADF,
    "NAT with Address and Port Dependent Filtering!": Filtering.APDF,
}
HAIRPIN_HEADER = "-= Hairpinning Behavior Discovery =-"
HAIRPIN_OK = "Received a request (maybe a successful hairpinning)"
LIFETIME_HEADER = "-= Mapping Lifetime Behavior Discovery =-"
ALG_LINE = "-= ALG detected! Mapped and XOR-Mapped differ! =-"
NO_ALG_LINE = "No ALG: Mapped == XOR-Mapped"
REFLEXIVE = "UDP reflexive addr:"
RESPONSE = "RFC 5780 response"
TIMEOUT_LINE = "STUN receive timeout.."
RUN_SLACK_S = 20.0  # beyond a test's own timer: retransmissions and interpreter start


class DiscoveryError(RunFailure):
    """natdiscovery could not be run or said nothing usable; the message is one line."""


@dataclass(frozen=True)
class Discovery:
    """What one or more natdiscovery runs measured (None: not tested / no answer)."""

    mapping: Mapping | None = None
    filtering: Filtering | None = None
    hairpin: bool | None = None
    lifetime_s: int | None = None  # a mapping survived this silence (the -T timer)
    lifetime_expired: bool | None = None  # True: the mapping did not survive the -T timer
    alg: bool | None = None  # Mapped != XOR-Mapped seen
    mapped: tuple[str, ...] = ()  # every "UDP reflexive addr" reported, in order

    @property
    def behaviour(self) -> NatBehaviour | None:
        if self.mapping is None or self.filtering is None:
            return None
        return NatBehaviour.from_pair(self.mapping, self.filtering)


def _sections(text: str) -> dict[str, list[str]]:
    """Lines grouped under natdiscovery's "-= ... =-" headers ("" before the first)."""
    out: dict[str, list[str]] = {"": []}
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("-=") and line.endswith("=-") and "ALG" not in line:
            current = line
            out.setdefault(current, [])
        else:
            out.setdefault(current, []).append(line)
    return out


def parse_discovery(text: str, lifetime_timer_s: int | None = None) -> Discovery:
    """Parse natdiscovery's stdout+stderr (one or several runs concatenated).

    `lifetime_timer_s` is the -T value of a lifetime (-t) run: its second "RFC 5780 response"
    comes back through the first mapping only if that mapping survived the silence.
    """
    mapping = filtering = None
    mapped: list[str] = []
    alg: bool | None = None
    for line in (raw.strip() for raw in text.splitlines()):
        mapping = MAPPING_LINES.get(line, mapping)
        filtering = FILTERING_LINES.get(line, filtering)
        if REFLEXIVE in line:
            mapped.append(line.partition(REFLEXIVE)[2].strip())
        if line == ALG_LINE:
            alg = True
        elif line == NO_ALG_LINE and alg is None:
            alg = False
    sections = _sections(text)
    hairpin = None
    if HAIRPIN_HEADER in sections:
        body = sections[HAIRPIN_HEADER]
        if HAIRPIN_OK in body:
            hairpin = True
        elif TIMEOUT_LINE in body:
            hairpin = False
    lifetime_s = expired = None
    if LIFETIME_HEADER in sections:
        body = sections[LIFETIME_HEADER]
        responses = sum(line.startswith(RESPONSE) for line in body)
        if responses >= 2:
            expired = False
            lifetime_s = lifetime_timer_s
        elif responses == 1 and TIMEOUT_LINE in body:
            expired = True
    return Discovery(mapping, filtering, hairpin, lifetime_s, expired, alg, tuple(mapped))


@dataclass(frozen=True)
class Comparison:
    configured: NatOptions
    measured: Discovery
    mismatches: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.mismatches


def compare(configured: NatOptions, measured: Discovery) -> Comparison:
    """Configured vs measured; only what was measured is compared."""
    b = configured.behaviour
    bad = []
    if measured.mapping is not None and measured.mapping is not b.mapping:
        bad.append(f"mapping: configured {b.mapping.name}, measured {measured.mapping.name}")
    if measured.filtering is not None and measured.filtering is not b.filtering:
        bad.append(f"filtering: configured {b.filtering.name}, "
                   f"measured {measured.filtering.name}")
    if measured.hairpin is not None and measured.hairpin != configured.hairpin:
        bad.append(f"hairpin: configured {configured.hairpin}, measured {measured.hairpin}")
    if measured.alg is not None and measured.alg and not configured.sip_alg:
        bad.append("a STUN-rewriting ALG was seen")
    return Comparison(configured, measured, tuple(bad))


def discovery_command(server: str, tests: str, port: int = STUN_PORT,
                      timer_s: int | None = None) -> list[str]:
    """`tests` is natdiscovery's flags without dashes, e.g. "mf", "H", "t"."""
    args = ["turnutils_natdiscovery", *(f"-{t}" for t in tests)]
    if "t" in tests:
        if timer_s is None:
            raise ValueError("the lifetime test (t) needs timer_s")
        args += ["-T", str(timer_s)]
    if port != STUN_PORT:
        args += ["-p", str(port)]
    return [*args, server]


def run_discovery(host: Any, server: str, outdir: Path, tests: str = "mf",
                  timer_s: int | None = None, timeout: float | None = None) -> Discovery:
    """Run natdiscovery on `host` (a Mininet node); keep the raw output in
    outdir/natdiscovery-<host>-<tests>.txt; return it parsed."""
    args = discovery_command(server, tests, timer_s=timer_s)
    limit = timeout or (timer_s or 0) + RUN_SLACK_S
    proc = host.popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                      stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    text = out.decode(errors="replace")
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / f"natdiscovery-{host.name}-{tests}.txt").write_text(
        "$ " + " ".join(args) + "\n" + text)
    result = parse_discovery(text, timer_s)
    if result == Discovery():
        first = text.strip().splitlines()[-1] if text.strip() else "no output"
        raise DiscoveryError(f"{host.name}: natdiscovery -{tests} gave nothing usable: {first}")
    return result
