"""Where a run's time went: wall time per scenario (and its phases), per scenario set, in all.

Read from the run folder only (run.json and each scenario's scenario.json), so a moved or
re-reported run shows the same figures.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PHASES = ("net_up", "services", "wan", "captures", "calls", "pause", "teardown", "net_down")


def _record(folder: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((folder / "scenario.json").read_text())
        return data
    except (OSError, ValueError):
        return {}


def timing(rundir: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """{"run_s", "sets": {set: s}, "scenarios": {name: {...}}}. The analysis time is not
    here: it is known only after the report is written (run.json has it)."""
    sets_of: dict[str, str] = meta.get("set_of") or {}
    scenarios: dict[str, Any] = {}
    spans: dict[str, list[tuple[float, float]]] = {}
    for name in meta.get("scenarios", []):
        rec = _record(rundir / name)
        if not rec:
            continue
        wall = float(rec.get("seconds", 0.0))
        set_name = sets_of.get(name, "custom")
        scenarios[name] = {"set": set_name, "wall_s": round(wall, 2),
                           "phases": rec.get("phases", {})}
        start = float(rec.get("started") or 0.0)
        spans.setdefault(set_name, []).append((start, start + wall))
    sets = {name: round(_covered(s), 2) for name, s in spans.items()}
    return {"run_s": meta.get("wall_s"), "sets": sets, "scenarios": scenarios}


def _covered(spans: list[tuple[float, float]]) -> float:
    """Seconds during which at least one of the spans ran (a set's elapsed time when its
    scenarios ran side by side; their sum when they ran one after another)."""
    if any(a == 0.0 for a, _ in spans):  # a record without a start time: add them up
        return sum(b - a for a, b in spans)
    total, end = 0.0, 0.0
    for a, b in sorted(spans):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def phase_totals(t: dict[str, Any]) -> dict[str, float]:
    """Seconds per phase summed over every scenario."""
    out: dict[str, float] = {}
    for sc in t["scenarios"].values():
        for k, v in sc["phases"].items():
            out[k] = round(out.get(k, 0.0) + float(v), 2)
    return out


def markdown(t: dict[str, Any]) -> list[str]:
    if not t["scenarios"]:
        return []
    out = ["## Wall times", "",
           f"Run {t['run_s']} s (analysis and report: `analysis_s` in run.json).", "",
           "| set | scenarios | wall s (elapsed) | sum of scenario wall times |",
           "|---|---|---|---|"]
    for name, secs in t["sets"].items():
        mine = [s["wall_s"] for s in t["scenarios"].values() if s["set"] == name]
        out.append(f"| {name} | {len(mine)} | {secs:.1f} | {sum(mine):.1f} |")
    totals = phase_totals(t)
    out += ["", "Per scenario, and where its time went (seconds: topology up, daemons ready, "
            "WAN shaper, captures ready, calls incl. agents' start and registration, pause "
            "between rounds, daemons stopped, topology down):", "",
            "| scenario | set | wall s | " + " | ".join(PHASES) + " |",
            "|---|---|---|" + "---|" * len(PHASES)]
    for name, sc in t["scenarios"].items():
        ph = sc["phases"]
        out.append(f"| {name} | {sc['set']} | {sc['wall_s']:.1f} | "
                   + " | ".join(f"{ph[p]:.1f}" if p in ph else "" for p in PHASES) + " |")
    out.append("| **all** | | {:.1f} | ".format(sum(sc["wall_s"] for sc in
                                                     t["scenarios"].values()))
               + " | ".join(f"{totals[p]:.1f}" if p in totals else "" for p in PHASES) + " |")
    return [*out, ""]


def experiment(rundirs: list[Path]) -> dict[str, Any]:
    """The experiment's totals over one or more run folders (a set run twice: its last run)."""
    sets: dict[str, float] = {}
    scenarios: dict[str, Any] = {}
    runs, run_s, analysis_s, jobs = [], 0.0, 0.0, set()
    verdicts: dict[str, bool] = {}
    for rundir in rundirs:
        meta = json.loads((rundir / "run.json").read_text())
        t = timing(rundir, meta)
        sets.update(t["sets"])
        scenarios.update(t["scenarios"])
        run_s += t["run_s"] or 0.0
        analysis_s += meta.get("analysis_s") or 0.0
        runs.append(rundir.name)
        jobs.add(meta.get("jobs", 1))
        try:
            summary = json.loads((rundir / "summary.json").read_text())
            verdicts.update({s["name"]: s["verdict"] == s["expect"]
                             for s in summary.get("scenarios", [])})
        except (OSError, ValueError, KeyError):
            pass
    return {"runs": runs, "jobs": sorted(jobs), "total_s": round(run_s + analysis_s, 2),
            "run_s": round(run_s, 2), "analysis_s": round(analysis_s, 2), "sets": sets,
            "sets_scenario_sum_s": {k: round(sum(s["wall_s"] for s in scenarios.values()
                                                 if s["set"] == k), 2) for k in sets},
            "phases": phase_totals({"scenarios": scenarios}),
            "scenarios": len(scenarios),
            "as_expected": sum(verdicts.values()), "not_as_expected":
                sorted(n for n, ok in verdicts.items() if not ok),
            "per_scenario_s": {n: s["wall_s"] for n, s in scenarios.items()}}


def write_experiment(rundirs: list[Path], out: Path) -> Path:
    """results/bench/experiment.json: the figures of one or more run folders."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(experiment(rundirs), indent=2) + "\n")
    return out
