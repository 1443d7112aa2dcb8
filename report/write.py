"""Write a run's results: summary.json, report.md, and the table printed on the terminal."""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

from analysis.verdict import Verdict
from topology.plan import Plan

HEADER = ("scenario", "stun", "trunk", "verdict", "paper", "RTP rx caller", "RTP rx callee")


def table_rows(verdicts: list[Verdict]) -> list[tuple[str, ...]]:
    return [(v.name, "on" if v.stun else "off", v.trunk, v.verdict,
             "agrees" if v.verdict == v.expect else f"expected {v.expect}",
             str(v.rtp_received["caller"]), str(v.rtp_received["callee"])) for v in verdicts]


def text_table(verdicts: list[Verdict]) -> str:
    rows = [HEADER, *table_rows(verdicts)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def summary(plan: Plan, verdicts: list[Verdict], meta: dict[str, Any]) -> dict[str, Any]:
    return {"natlab": 1, "config": plan.source, **meta,
            "scenarios": [v.as_dict() for v in verdicts]}


def markdown(plan: Plan, verdicts: list[Verdict], meta: dict[str, Any]) -> str:
    out = [f"# natlab run {meta['run_id']}", "",
           f"Host {platform.node()}, kernel {platform.release()}, config `{plan.source}`, "
           f"wall time {meta['wall_s']:.1f} s, scenario sets: "
           f"{', '.join(meta.get('sets', []))}.", "",
           "A call **works** when both sides reach CONFIRMED (the callee got the ACK), the BYE is "
           "answered, each direction receives >= 95 % of the RTP the other side sent, and each "
           "recording contains the other side's tone. The paper's claim: only STUN on the phones "
           "plus NAT-aware trunk settings on the PBXs make the call work.", "",
           "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(r) + " |" for r in table_rows(verdicts)]
    out += ["", "## Explanations", ""]
    for v in verdicts:
        out += [f"### {v.name}: {v.verdict}", "",
                f"STUN {'on' if v.stun else 'off'}, trunk `{v.trunk}`; files in `{v.name}/` "
                "(router pcaps `rN-lan.pcap`/`rN-wan.pcap`, `agents/*.json`, daemon logs).", ""]
        failed = [k for k, ok in v.checks.items() if not ok]
        out.append("Checks failed: " + (", ".join(failed) if failed else "none") + ".")
        out.append("")
        out += [f"- {line}" for line in v.evidence]
        out.append("")
    return "\n".join(out)


def write_run(rundir: Path, plan: Plan, verdicts: list[Verdict], meta: dict[str, Any],
              extra_md: list[str] | None = None) -> None:
    (rundir / "summary.json").write_text(json.dumps(summary(plan, verdicts, meta), indent=2) + "\n")
    text = markdown(plan, verdicts, meta)
    if extra_md:
        text += "\n" + "\n".join(extra_md) + "\n"
    (rundir / "report.md").write_text(text)


def new_run_dir(results: Path) -> Path:
    results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rundir = results / stamp
    n = 1
    while rundir.exists():
        n += 1
        rundir = results / f"{stamp}-{n}"
    rundir.mkdir()
    latest = results / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(rundir.name)
    return rundir
