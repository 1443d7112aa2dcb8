"""The lab guide's answer key, filled from a run (docs/lab/answers.md.tmpl -> lab-answers.md).

Placeholders: {{v:SCENARIO.path}} a field of the scenario's summary entry (dots and [i]),
{{s:SCENARIO:REGEX}} the first evidence sentence matching REGEX, {{q:SCENARIO.path|fmt}} a
figure of qos.json, {{meta:key}} a field of run.json. A scenario that did not run gives
"(not in this run: SCENARIO)"; anything else unresolved is an error.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from natlab.errors import AnalysisError

TEMPLATE = Path(__file__).resolve().parent.parent / "docs" / "lab" / "answers.md.tmpl"
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
        name, _, rest = arg.partition(":" if kind == "s" else ".")
        table = qos if kind == "q" else by_name
        if name not in table:
            return MISSING.format(name)
        try:
            if kind == "s":
                found = [e for e in table[name]["evidence"] if re.search(rest, e)]
                if not found:
                    raise KeyError(rest)
                return str(found[0])
            value = _walk(table[name], rest)
        except (KeyError, IndexError, TypeError):
            raise AnalysisError(f"lab key: {m[0]} has no value in {rundir.name}") from None
        return format(value, fmt) if fmt and value is not None else str(value)

    return PLACEHOLDER.sub(one, template.read_text())


def write(rundir: Path) -> Path:
    path = rundir / "lab-answers.md"
    path.write_text(fill(rundir))
    return path
