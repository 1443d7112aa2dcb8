"""Wall times read from a run folder alone: per scenario and its phases, per set; which
scenarios run alone under natlab run --jobs (no root)."""
from __future__ import annotations

import json
from pathlib import Path

from report.timing import _covered, experiment, markdown, timing
from scenarios.model import select
from scenarios.parallel import alone
from topology.plan import load_plan


def _run(tmp_path: Path) -> Path:
    for name, secs in (("a", 4.0), ("b", 6.0), ("c", 2.0)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "scenario.json").write_text(json.dumps(
            {"seconds": secs, "phases": {"net_up": 0.5, "calls": secs - 1.0}}))
    meta = {"scenarios": ["a", "b", "c", "missing"], "set_of": {"a": "x", "b": "x", "c": "y"},
            "wall_s": 12.5, "analysis_s": 3.0}
    (tmp_path / "run.json").write_text(json.dumps(meta))
    return tmp_path


def test_timing_per_set_and_phase(tmp_path: Path) -> None:
    rundir = _run(tmp_path)
    meta = json.loads((rundir / "run.json").read_text())
    t = timing(rundir, meta)
    assert t["sets"] == {"x": 10.0, "y": 2.0} and t["run_s"] == 12.5
    assert "analysis_s" not in t  # known only after the report: would break re-reports
    assert set(t["scenarios"]) == {"a", "b", "c"}
    text = "\n".join(markdown(t))
    assert "| x | 2 | 10.0 |" in text and "| **all** | | 12.0 | 1.5 |" in text


def test_experiment_adds_the_analysis_time(tmp_path: Path) -> None:
    f = experiment([_run(tmp_path)])
    assert f["run_s"] == 12.5 and f["analysis_s"] == 3.0 and f["total_s"] == 15.5
    assert f["phases"] == {"net_up": 1.5, "calls": 9.0} and f["scenarios"] == 3


def test_covered_counts_overlap_once() -> None:
    assert _covered([(10.0, 20.0), (15.0, 25.0), (30.0, 31.0)]) == 16.0
    assert _covered([(0.0, 5.0), (0.0, 2.0)]) == 7.0  # no start times: the sum


def test_side_by_side_spans_count_once(tmp_path: Path) -> None:
    meta = {"scenarios": ["a", "b"], "set_of": {"a": "x", "b": "x"}, "wall_s": 12.0}
    for name, start, secs in (("a", 100.0, 8.0), ("b", 104.0, 6.0)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "scenario.json").write_text(json.dumps(
            {"seconds": secs, "started": start, "phases": {"calls": secs - 1}}))
    assert timing(tmp_path, meta)["sets"] == {"x": 10.0}  # 100..110, not 8 + 6


def test_qos_and_load_scenarios_run_alone() -> None:
    plan = load_plan()
    sets = ("paper-qos", "services", "load", "default", "nat")
    lone = {sc.name for s in sets for sc in select(plan, s) if alone(sc)}
    assert {"101_qos_voice_clean", "201_video_stun_nataware", "701_load_10"} <= lone
    assert not any(alone(sc) for sc in select(plan, "default"))
    assert "310_fullcone_none" not in lone
