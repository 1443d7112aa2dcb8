"""The NAT matrix: rows are NAT behaviour pairs (LAN2 x LAN1), columns remedies; each cell is
the call's outcome, the RTP that arrived each way, the media path and the time to first media.
Cells that are lessons of their own (hairpin, ALG variants) get a table of their own."""
from __future__ import annotations

import json
from typing import Any

from analysis.nat import MATRIX_REMEDIES as COLUMNS
from analysis.verdict import Verdict
from report.qos import QosScenario

STATE = {"works": "works", "fails": "fails", "one-way": "one-way", "invalid": "INVALID"}


def cells(verdicts: list[Verdict]) -> list[tuple[Verdict, dict[str, Any]]]:
    return [(v, v.nat) for v in verdicts if v.nat]


def cell_text(cell: dict[str, Any]) -> str:
    rtp = cell["rtp"]
    first = cell.get("first_media_s")
    return (f"{STATE.get(cell['state'], cell['state'])} {rtp['caller']}/{rtp['callee']}, "
            f"{cell['path']}" + (f", {first:.2f} s" if first is not None else ""))


def _row(cell: dict[str, Any]) -> str:
    return f"{cell['lan2']} x {cell['lan1']}"


LESSON_WORDS = ("hairpin", "leaving r", "ANOTHER mapping", "no final response",
                "latched", "never got the ACK")


def _lesson(v: Verdict) -> str:
    """The sentence of a lesson cell that carries its point (the first NAT finding)."""
    lines = [line for call in (v.calls or [v.as_dict()]) for line in call.get("evidence", [])]
    for line in lines:
        if any(w in line for w in LESSON_WORDS):
            return str(line)
    return v.explanation.split(". ")[0]


def tables(verdicts: list[Verdict]) -> dict[str, list[list[str]]]:
    """{"matrix": rows, "lessons": rows, "types": rows}; the first row of each is the header."""
    found = cells(verdicts)
    grid: dict[str, dict[str, str]] = {}
    lessons = [["scenario", "NAT (LAN2 x LAN1)", "remedy", "cell", "why it matters"]]
    types = [["scenario", "r1 configured", "r1 measured", "r2 configured", "r2 measured",
              "valid"]]
    for v, cell in found:
        if not cell.get("lesson"):
            grid.setdefault(_row(cell), {})[cell["remedy"]] = f"[{cell_text(cell)}](#{v.name})"
        else:
            lessons.append([v.name, _row(cell), cell["remedy"], cell_text(cell), _lesson(v)])
        m = cell.get("measured", {})
        types.append([v.name, cell["lan1"], m.get("lan1", "-"), cell["lan2"],
                      m.get("lan2", "-"), "no" if cell["state"] == "invalid" else "yes"])
    cols = [c for c in COLUMNS if any(c in r for r in grid.values())]
    matrix = [["LAN2 x LAN1", *cols]]
    matrix += [[row, *(grid[row].get(c, "") for c in cols)] for row in grid]
    return {"matrix": matrix if grid else [], "lessons": lessons if len(lessons) > 1 else [],
            "types": types if len(types) > 1 else []}


def overhead(verdicts: list[Verdict], qos: list[QosScenario]) -> list[str]:
    """One-way delay and jitter of the same call direct, relayed (TURN) and anchored
    (rtpengine), from the QoS rows of the NAT cells that have them (same WAN profile)."""
    paths = {v.name: v.nat.get("path") for v in verdicts if v.nat}
    rows = []
    for q in qos:
        if q.name not in paths or not q.rows:
            continue
        audio = [r for r in q.rows if r.media == "audio" and r.owd_mean_ms is not None]
        if not audio:
            continue
        owd = sum(r.owd_mean_ms or 0.0 for r in audio) / len(audio)
        jit = sum(r.mean_jitter_ms for r in audio) / len(audio)
        rows.append(f"| {q.name} | {paths[q.name]} | {owd:.2f} | {jit:.2f} | "
                    f"{json.dumps(q.wan) if q.wan else 'clean'} |")
    if not rows:
        return []
    return ["### Relay overhead", "",
            "The same call through the direct path, a TURN relay and rtpengine, same WAN "
            "profile: one-way delay (each packet matched between the two phones' captures) "
            "and RFC 3550 jitter, averaged over both directions.", "",
            "| scenario | media path | one-way delay (ms) | jitter (ms) | WAN |",
            "|---|---|---|---|---|",
            *rows, ""]


def markdown(verdicts: list[Verdict]) -> list[str]:
    t = tables(verdicts)
    if not t["types"]:
        return []
    wall = sum(v.wall_s for v in verdicts if v.nat)
    out = ["## NAT behaviours x remedies", "",
           f"{len(cells(verdicts))} NAT scenarios ran in {wall:.1f} s (scenario wall times, "
           "topology up to teardown).", "",
           "Each cell: outcome, RTP packets received by caller/callee, media path (direct "
           "between the routers, relayed by TURN, anchored by rtpengine, or nowhere), time "
           "from the INVITE to the first media at both phones. Every cell links to its "
           "explanation; a cell is INVALID when a router measured other than configured.", ""]
    for key in ("matrix", "lessons", "types"):
        rows = t[key]
        if not rows:
            continue
        if key == "lessons":
            out += ["### Lessons of their own", ""]
        if key == "types":
            out += ["### NAT types: configured and measured (RFC 5780, turnutils_natdiscovery)",
                    ""]
        out += ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        out.append("")
    return out
