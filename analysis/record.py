"""What a run writes about each scenario, so that analysis needs nothing but the run folder.

`<rundir>/<scenario>/scenario.json` lists the calls (who called whom, in which round, where
their agent reports and pcaps are), how long each took, the WAN profile and mechanism, and
whether the scenario completed. Paths are relative to the scenario folder, so a run folder can
be moved and analysed again anywhere.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from natlab.errors import AnalysisError

FILE = "scenario.json"
STATUSES = ("complete", "interrupted", "failed")


@dataclass(frozen=True)
class CallRecord:
    index: int  # 1-based
    round: int  # 1-based; calls of a round ran concurrently
    caller: str
    callee: str
    dir: str  # agent reports under <dir>/agents/, relative to the scenario folder
    pcaps: str  # the round's captures, relative to the scenario folder
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return f"call-{self.index:02d}"


@dataclass
class ScenarioRecord:
    name: str
    kind: str
    status: str = "complete"
    error: str | None = None
    seconds: float = 0.0
    calls: list[CallRecord] = field(default_factory=list)
    wan: dict[str, Any] = field(default_factory=dict)  # profile, values, links
    phases: dict[str, float] = field(default_factory=dict)  # seconds: net, services, calls...
    slot: int = 0  # 0: ran alone; N: side by side with others, in network slot N
    started: float = 0.0  # wall clock (epoch s) when it started: scenarios may run side by side

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> ScenarioRecord:
        path = folder / FILE
        try:
            data = json.loads(path.read_text())
            calls = [CallRecord(**c) for c in data.pop("calls", [])]
            rec = cls(**data, calls=calls)
        except (OSError, ValueError, TypeError) as exc:
            raise AnalysisError(f"{path}: unreadable scenario record ({exc})") from None
        if rec.status not in STATUSES:
            raise AnalysisError(f"{path}: unknown status {rec.status!r}")
        return rec


def load_reports(scenario_dir: Path, call: CallRecord) -> dict[str, dict[str, Any]]:
    """A call's agent reports by role (caller, callee, member-2001, bridge, ...). A recording
    is looked up beside its report, so a moved run folder still finds it."""
    agents = scenario_dir / call.dir / "agents"
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(agents.glob("*.json")):
        try:
            rep = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise AnalysisError(f"{path}: unreadable agent report ({exc})") from None
        rec = rep.get("recording")
        if isinstance(rec, str):
            rep["recording"] = str(agents / Path(rec).name)
        out[path.stem] = rep
    return out


def pcap_files(scenario_dir: Path, call: CallRecord) -> dict[str, Path]:
    """The captures of a call's round by name ("r1-wan" -> path)."""
    return {p.stem: p for p in sorted((scenario_dir / call.pcaps).glob("*.pcap"))}
