"""The attacks table: attack x variant (insecure, protected, ...) -> what the attacker obtained,
from the verdicts of the security set (each verdict's `attack` entry, analysis.attack)."""
from __future__ import annotations

from typing import Any

from analysis.attack import ATTACKS
from analysis.verdict import Verdict

VARIANTS = ("insecure", "protected")  # the columns every attack has; others follow


def tables(verdicts: list[Verdict]) -> list[list[str]]:
    """Header row, then one row per attack; a cell is "[outcome (what)](#scenario)"."""
    found = [v for v in verdicts if v.attack]
    if not found:
        return []
    extra = sorted({v.attack["variant"] for v in found} - set(VARIANTS))
    cols = [*VARIANTS, *extra]
    grid: dict[str, dict[str, str]] = {}
    for v in found:
        a = v.attack
        grid.setdefault(a["attack"], {})[a["variant"]] = \
            f"[{v.verdict} ({a['short']})](#{v.name})"
    rows = [["attack", *cols]]
    rows += [[name, *(grid[name].get(c, "-") for c in cols)] for name in ATTACKS if name in grid]
    return rows


def flood_lines(verdicts: list[Verdict]) -> list[str]:
    """The legitimate call during each flood: outcome, worst G.107 MOS, worst loss."""
    out = []
    for v in verdicts:
        call: dict[str, Any] = v.attack.get("call") or {}
        if not call:
            continue
        mos = call.get("mos_g107")
        packets = "/".join(str(d["packets"]) for d in call.get("directions", []))
        out.append(f"- {v.name} ({v.attack['variant']}): the call 1002 -> 2005 "
                   f"{'works' if call['works'] else 'fails'}; RTP packets received "
                   f"{packets or '-'} (1002 -> 2005 / 2005 -> 1002), G.107 MOS "
                   f"{'-' if mos is None else f'{mos:.2f}'} and loss {call['loss_pct']:.2f} % "
                   f"(worst direction, over the packets received); the attacker sent "
                   f"{v.attack['sent']} requests.")
    return out


def markdown(verdicts: list[Verdict]) -> list[str]:
    rows = tables(verdicts)
    if not rows:
        return []
    out = ["## Attacks: what a stranger on the internet obtained", "",
           "The attacker atk sits on the public side and aims real tools (svmap, svwar, "
           "svcrack, sipsak) at the routers' public addresses. Obtained = anything beyond a "
           "refusal (401/403/407 or no answer). Each cell links to its explanation.", "",
           "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    flood = flood_lines(verdicts)
    if flood:
        out += ["", "The legitimate call during the flood:", "", *flood]
    return [*out, ""]


def summary(verdicts: list[Verdict]) -> list[dict[str, Any]]:
    """The table for summary.json: one entry per attack scenario."""
    return [{"attack": v.attack["attack"], "variant": v.attack["variant"], "scenario": v.name,
             "outcome": v.verdict, "expected": v.expect, "obtained": v.attack["short"],
             "found": v.attack["found"], "requests": v.attack["sent"],
             "answers": v.attack["answers"],
             **({"legit_call": v.attack["call"]} if v.attack.get("call") else {})}
            for v in verdicts if v.attack]
