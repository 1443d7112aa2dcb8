"""Predict, then verify: a quiz run hides its verdicts until predictions are graded (stored
real captures, no root)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

from natlab import pipeline


def quiz_run(tmp_path: Path) -> Path:
    rundir = tmp_path / "run"
    shutil.copytree(ROOT / "tests" / "data" / "run", rundir)
    meta = json.loads((rundir / "run.json").read_text())
    (rundir / "run.json").write_text(json.dumps({**meta, "quiz": True}))
    pipeline.report(rundir, pipeline.analyse(rundir))
    return rundir


def grade(rundir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "natlab", "grade", str(rundir)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_verdicts_hidden_until_graded(tmp_path: Path) -> None:
    rundir = quiz_run(tmp_path)
    page, md = (rundir / "report.html").read_text(), (rundir / "report.md").read_text()
    assert 'class="works"' not in page and 'class="fails"' not in page
    assert "hidden until you predict" in page
    assert "<img " not in page and "NAT bindings" not in page  # ladders give verdicts away
    assert "works" not in md.split("| scenario")[1] and "natlab grade" in md
    template = (rundir / "predictions.toml").read_text()
    assert template.count(' = ""') == 13

    res = grade(rundir)  # nothing predicted yet: one line, exit 2, still hidden
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "no prediction" in res.stderr and not (rundir / "grade.json").exists()

    truth = {s["name"]: s["verdict"]
             for s in json.loads((rundir / "summary.json").read_text())["scenarios"]}
    guesses = {name: "works" for name in truth}  # a student who believes every call works
    (rundir / "predictions.toml").write_text(
        "".join(f'"{n}" = "{v}"\n' for n, v in guesses.items()))
    res = grade(rundir)
    assert res.returncode == 0, res.stderr
    right = sum(guesses[n] == truth[n] for n in truth)
    assert f"{right}/13 right" in res.stdout and right == 5  # 5 stored scenarios work
    graded = json.loads((rundir / "grade.json").read_text())
    assert graded["right"] == right and len(graded["answers"]) == 13
    assert 'class="fails"' in (rundir / "report.html").read_text()
