"""Predict, then verify: a quiz run hides its verdicts until the student has written a
prediction per scenario into predictions.toml; `natlab grade` then scores and reveals."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from analysis.expect import ATTACK_VERDICTS, VERDICTS
from analysis.verdict import Verdict
from natlab.errors import InputError
from topology.plan import read_toml

PREDICTIONS = "predictions.toml"
GRADE = "grade.json"


@dataclass(frozen=True)
class Answer:
    scenario: str
    predicted: str
    verdict: str

    @property
    def right(self) -> bool:
        return self.predicted == self.verdict


def write_template(rundir: Path, verdicts: list[Verdict]) -> Path:
    """predictions.toml with one empty answer per scenario, for the student to fill in."""
    lines = ["# Your prediction per scenario: \"works\" or \"fails\" (an attack: \"obtained\" or "
             "\"refused\"). Then: natlab grade "
             f"{rundir}", ""]
    lines += [f'"{v.name}" = ""  # STUN {"on" if v.stun else "off"}, trunk {v.trunk}'
              for v in verdicts]
    path = rundir / PREDICTIONS
    if not path.exists():
        path.write_text("\n".join(lines) + "\n")
    return path


def read_predictions(path: Path, names: list[str]) -> dict[str, str]:
    data = read_toml(path, "predictions")
    missing = [n for n in names if data.get(n) not in (*VERDICTS, *ATTACK_VERDICTS)]
    if missing:
        raise InputError(f"{path}: no prediction (works or fails) for {', '.join(missing)}")
    return {n: str(data[n]) for n in names}


def grade(rundir: Path, verdicts: list[Verdict], path: Path | None = None) -> list[Answer]:
    """Compare the predictions with the verdicts; write grade.json (which reveals the report)."""
    predicted = read_predictions(path or rundir / PREDICTIONS, [v.name for v in verdicts])
    answers = [Answer(v.name, predicted[v.name], v.verdict) for v in verdicts]
    (rundir / GRADE).write_text(json.dumps(
        {"right": sum(a.right for a in answers), "of": len(answers),
         "answers": [{**asdict(a), "right": a.right} for a in answers]}, indent=2) + "\n")
    return answers


def hidden(rundir: Path, meta: dict[str, object]) -> bool:
    """A quiz run keeps its verdicts out of the report until it is graded."""
    return bool(meta.get("quiz")) and not (rundir / GRADE).exists()
