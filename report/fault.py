"""The fault timelines: one row per fault scenario (the fault, when, how long; the media gap
each way and what restored it; the BYE; reachability afterwards), for report.md and report.html.
Everything comes from the verdicts' `fault` timelines (analysis.fault)."""
from __future__ import annotations

from typing import Any

from analysis.fault import GAP_MS, KEEPALIVE, ONGOING, OWN_RTP
from analysis.verdict import Verdict

HEADER = ["scenario", "fault", "at (s into capture)", "restored after (s)",
          "gap caller -> callee", "gap callee -> caller", "afterwards", "verdict"]


def _gap(g: dict[str, Any]) -> str:
    if g.get("gap_ms") is None:
        return f"no media after the fault ({g['recovery']})"
    who = {ONGOING: f"{g['sender']}'s ongoing RTP stream",
           OWN_RTP: f"{g['receiver']}'s own RTP re-created the NAT mapping",
           KEEPALIVE: f"{g['receiver']}'s keepalive re-created the NAT mapping"}
    resumed = g.get("resumed_s")
    at = f", resumed at +{resumed:.2f} s" if resumed is not None and g["gap_ms"] > GAP_MS else ""
    return f"{g['gap_ms']:.0f} ms; {who.get(g['recovery'], g['recovery'])}{at}"


def _after(f: dict[str, Any]) -> str:
    """What followed the media: reachability of a later call, the BYE and the registrations
    (PBX restart), or what the phones' STUN got (coturn down)."""
    lines = [str(x) for x in [*f.get("reachability", []), *f.get("lines", [])]]
    keys = {"pbx-restart": ("sent the BYE", "forgotten"), "coturn-down": ("STUN Binding",)}
    default = ("reachable", "sent the BYE")
    picked = [x for x in lines if any(k in x for k in keys.get(f["what"], default))]
    return " ".join(picked) or "-"


def rows(verdicts: list[Verdict]) -> list[list[str]]:
    """The table, header first; just the header when no scenario had a fault."""
    out = [list(HEADER)]
    for v in verdicts:
        f = v.fault
        if not f or "what" not in f:
            continue
        ordered = f.get("gaps", [])  # caller -> callee, then callee -> caller
        at, took = f.get("at_pcap_s"), f.get("restored_s")
        out.append([v.name, f"{f['what']} {f['target']}",
                    f"{at:.2f}" if at is not None else "-",
                    f"{took:.2f}" if took is not None else "-",
                    _gap(ordered[0]) if ordered else "-",
                    _gap(ordered[1]) if len(ordered) > 1 else "-",
                    _after(f), f"[{v.verdict}](#{v.name})"])
    return out


def markdown(verdicts: list[Verdict]) -> list[str]:
    table = rows(verdicts)
    if len(table) == 1:
        return []
    out = ["## Fault timelines", "",
           "Each fault scenario's fault (from its fault.json), the largest RTP inter-arrival "
           "gap each way at the receiving phone, what restored the media, and what followed. "
           "The scenario's explanation names the frames.", "",
           "| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    out += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in table[1:]]
    return [*out, ""]
