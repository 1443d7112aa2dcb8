"""Write a run's results: summary.json, report.md, and the table printed on the terminal."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from analysis.verdict import Verdict
from report import attacks, bindings, matrix
from topology.plan import Plan

HEADER = ("scenario", "stun", "trunk", "verdict", "expected", "RTP rx caller", "RTP rx callee")


def table_rows(verdicts: list[Verdict], hidden: bool = False) -> list[tuple[str, ...]]:
    if hidden:  # a quiz: nothing that gives the verdict away
        return [(v.name, "on" if v.stun else "off", v.trunk, "?", "?", "?", "?")
                for v in verdicts]
    return [(v.name, "on" if v.stun else "off", v.trunk, v.verdict,
             "agrees" if v.verdict == v.expect else f"expected {v.expect}",
             str(v.rtp_received["caller"]), str(v.rtp_received["callee"])) for v in verdicts]


def text_table(verdicts: list[Verdict], hidden: bool = False) -> str:
    rows = [HEADER, *table_rows(verdicts, hidden)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def summary(verdicts: list[Verdict], meta: dict[str, Any]) -> dict[str, Any]:
    table = attacks.summary(verdicts)
    return {**meta, "scenarios": [v.as_dict() for v in verdicts],
            **({"attacks": table} if table else {})}


def _state(meta: dict[str, Any]) -> list[str]:
    """A warning line for a run that did not complete."""
    if meta.get("interrupted"):
        return ["**Interrupted:** the run was stopped before it finished; what follows covers "
                "only the scenarios that ran.", ""]
    if meta.get("failure"):
        return [f"**Failed:** {meta['failure']}; what follows covers only the scenarios that "
                "ran.", ""]
    if not meta.get("complete"):
        return ["**Incomplete:** natlab did not record the end of this run (killed?).", ""]
    return []


def markdown(verdicts: list[Verdict], meta: dict[str, Any], hidden: bool = False,
             rundir: Path | None = None, plan: Plan | None = None) -> str:
    wall = meta.get("wall_s")
    out = [f"# natlab run {meta['run_id']}", "", *_state(meta),
           f"Host {meta.get('host')}, kernel {meta.get('kernel')}, config `{meta.get('config')}`, "
           f"wall time {f'{wall:.1f} s' if wall is not None else 'unknown'}, scenario sets: "
           f"{', '.join(meta.get('sets', []))}.", "",
           "A call **works** when both sides reach CONFIRMED (the callee got the ACK), the BYE is "
           "answered, each direction receives >= 95 % of the RTP the other side sent, and each "
           "recording contains the other side's tone. The paper's claim: only STUN on the phones "
           "plus NAT-aware trunk settings on the PBXs make the call work.", "",
           "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(r) + " |" for r in table_rows(verdicts, hidden)]
    if hidden:
        return "\n".join([*out, "", "Verdicts and explanations are hidden until you have "
                           "written your predictions into predictions.toml and run "
                           "`natlab grade`.", ""])
    out += ["", *matrix.markdown(verdicts), *attacks.markdown(verdicts)]
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
        if rundir is not None and plan is not None:
            out += bindings.markdown(plan, rundir / v.name)
            ladders = sorted((rundir / v.name / "ladders").glob("*.txt"))
            if ladders:
                out += ["Ladders (text; SVG and PNG beside them): " + ", ".join(
                    f"`{p.relative_to(rundir).as_posix()}`" for p in ladders) + ".", ""]
    return "\n".join(out)


def write_run(rundir: Path, verdicts: list[Verdict], meta: dict[str, Any],
              extra_md: list[str] | None = None, hidden: bool = False,
              plan: Plan | None = None) -> None:
    (rundir / "summary.json").write_text(json.dumps(summary(verdicts, meta), indent=2) + "\n")
    text = markdown(verdicts, meta, hidden, rundir, plan)
    if extra_md and not hidden:
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
