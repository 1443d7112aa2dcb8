"""The lab guide's answer key, filled from a run (docs/lab/answers.md.tmpl -> lab-answers.md).

Placeholders: {{v:SCENARIO.path}} a field of the scenario's summary entry (dots and [i]),
{{s:SCENARIO:REGEX}} the first evidence sentence matching REGEX, {{l:SCENARIO:REGEX}} the first
arrow of the scenario's ladders (ladders/*.json) whose sentence (`arrow_sentence`) matches,
{{q:SCENARIO.path|fmt}} a figure of qos.json, {{meta:key}} a field of run.json,
{{plan:caller}} / {{plan:callee}} the phones of the run's own address plan (replaced first, so
a regex may name them). A scenario
that did not run gives "(not in this run: SCENARIO)"; anything else unresolved is an error.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from natlab.errors import AnalysisError
from topology.plan import load_plan

TEMPLATE = Path(__file__).resolve().parent.parent / "docs" / "lab" / "answers.md.tmpl"
PLAN = re.compile(r"\{\{plan:(caller|callee)\}\}")
PLACEHOLDER = re.compile(r"\{\{([a-z]+):([^}|]+)(?:\|([^}]+))?\}\}")
MISSING = "(not in this run: {})"


def _walk(value: Any, path: str) -> Any:
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("["):
            value = value[int(part[1:-1])]
        else:
            value = value[part]
    return value


def fill(rundir: Path, template: Path = TEMPLATE) -> str:
    summary = json.loads((rundir / "summary.json").read_text())
    by_name = {s["name"]: s for s in summary["scenarios"]}
    qos_path = rundir / "qos.json"
    qos = {s["name"]: s for s in json.loads(qos_path.read_text())["scenarios"]} \
        if qos_path.exists() else {}

    def one(m: re.Match[str]) -> str:
        kind, arg, fmt = m[1], m[2].strip(), m[3]
        if kind == "meta":
            return str(summary.get(arg))
        name, _, rest = arg.partition(":" if kind in ("s", "l") else ".")
        table = qos if kind == "q" else by_name
        if name not in table:
            return MISSING.format(name)
        try:
            if kind in ("s", "l"):
                lines = table[name]["evidence"] if kind == "s" else ladder_sentences(rundir, name)
                found = [e for e in lines if re.search(rest, e)]
                if not found:
                    raise KeyError(rest)
                return str(found[0])
            value = _walk(table[name], rest)
        except (KeyError, IndexError, TypeError):
            raise AnalysisError(f"lab key: {m[0]} has no value in {rundir.name}") from None
        return format(value, fmt) if fmt and value is not None else str(value)

    plan = load_plan(rundir / "config.toml")
    phones = {"caller": plan.call.caller, "callee": plan.call.callee}
    text = PLAN.sub(lambda m: phones[m[1]], template.read_text())
    return PLACEHOLDER.sub(one, text)


def arrow_sentence(a: dict[str, Any]) -> str:
    """'INVITE: r2-wan -> r1-wan, 198.51.100.2:5080 > 203.0.113.2:5080 (r1-wan.pcap frame 7,
    r2-wan.pcap frame 7); r2 rewrote source ...; still private: Contact ...'."""
    first = a["seen"][0]
    frames = ", ".join(f"{s['capture']}.pcap frame {s['frame']}" for s in a["seen"])
    label = a["label"] + (f" (resent #{a['copy']})" if a["copy"] > 1 else "")
    out = f"{label}: {a['src']} -> {a['dst']}, {first['src']} > {first['dst']} ({frames})"
    for extra in (a["nat"], a["dropped"]):
        out += f"; {extra}" if extra else ""
    return out + ("; still private: " + ", ".join(a["private"]) if a["private"] else "")


def ladder_sentences(rundir: Path, name: str) -> list[str]:
    out = []
    for path in sorted((rundir / name / "ladders").glob("*.json")):
        out += [arrow_sentence(a) for a in json.loads(path.read_text())["arrows"]]
    return out


def write(rundir: Path) -> Path:
    path = rundir / "lab-answers.md"
    path.write_text(fill(rundir))
    return path
