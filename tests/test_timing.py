"""Wall times read from a run folder alone: per scenario and its phases, per set."""
from __future__ import annotations

import json
from pathlib import Path

from report.timing import experiment, markdown, timing


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
