"""Benchmark: the load ramp (scenarios/load: 10 ... 200 simultaneous calls, then the knee on
the paper-like WAN), written to results/bench/load.json and load.png.

    python -m bench.load                # the whole set (a few minutes)
    python -m bench.load --steps 701_load_10 704_load_100
    python -m bench.load --from RUNDIR  # figures of a finished run, nothing started
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from analysis.load import knee
from natlab import pipeline
from report.load import busiest, plot, saturation
from scenarios.model import select
from topology.plan import load_plan

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "bench"


def rows_of_run(rundir: Path) -> list[dict[str, Any]]:
    summary = json.loads((rundir / "summary.json").read_text())
    return [v["load"] for v in summary.get("scenarios", summary.get("verdicts", []))
            if isinstance(v, dict) and v.get("load")]


def write(rows: list[dict[str, Any]], rundir: Path, out: Path = OUT) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    doc = {"run": str(rundir), "cores": os.cpu_count(), "knee": knee(rows),
           "goal_calls": 100, "saturated": saturation(rows),
           "busiest": {r["name"]: busiest(r) for r in rows if not r.get("skipped")},
           "steps": rows}
    (out / "load.json").write_text(json.dumps(doc, indent=2) + "\n")
    if any(not r.get("skipped") for r in rows):
        plot(rows, out / "load.png")
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--steps", nargs="+", help="scenario names (default: the load set)")
    parser.add_argument("--from", dest="rundir", help="a finished run folder")
    args = parser.parse_args(argv)
    if args.rundir:
        rundir = Path(args.rundir).resolve()
    else:
        plan = load_plan()
        scenarios = select(plan, names=args.steps) if args.steps else select(plan, "load")
        rundir = pipeline.run(plan, scenarios, OUT / "runs", ["load"]).rundir
    rows = rows_of_run(rundir)
    doc = write(rows, rundir)
    for r in rows:
        state = r.get("skipped") or ("pass" if r["passed"] else "FAIL " + "; ".join(r["reasons"]))
        print(f"{r['name']}: {r['calls']} calls: {state}")
    print(f"knee {doc['knee']} calls -> {OUT / 'load.json'}, {OUT / 'load.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
