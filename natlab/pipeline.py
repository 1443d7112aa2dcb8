"""The pipeline: run (namespaces, daemons, agents, captures → a run folder) → analyse (pure
functions of the run folder's files → verdicts, evidence, QoS) → report (files).

`natlab run` calls all three; `natlab report RUNDIR` calls analyse and report on a finished
(or interrupted, or moved) run folder. The run folder describes itself: config.toml, a copy of
every scenario file under scenarios/, versions.json, run.json, and per scenario its
scenario.json (analysis.record).
"""
from __future__ import annotations

import json
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from analysis.evidence import Captures
from analysis.ladder import Ladder
from analysis.ladder import build as build_ladder
from analysis.nat import judge_nat
from analysis.nat import load as load_nat
from analysis.record import CallRecord, ScenarioRecord, load_reports, pcap_files
from analysis.verdict import Subject, Verdict, combine, error_verdict, with_checks
from natlab import workers
from natlab.early import EarlyAnalysis
from natlab.errors import AnalysisError, InputError, NatlabError, RunFailure
from natlab.guard import RunLock, clean_leftovers, raise_on_term
from natlab.preflight import preflight
from natlab.progress import Progress
from natlab.reaper import Reaper
from natlab.spawn import deferred
from natlab.versions import versions
from report import fault as fault_report
from report import load as load_report
from report import matrix, quiz, timing
from report.html import write_html
from report.ladder import write as draw_ladder
from report.qos import QosScenario, write_qos
from report.write import new_run_dir, write_run
from scenarios.kinds import KINDS
from scenarios.kinds.base import CallInput
from scenarios.model import Call, Scenario, load_scenario, wan_of
from scenarios.parallel import run_all
from scenarios.wan import mechanism
from services.credentials import write_credentials
from topology.plan import Plan, load_plan, phone_name

RUN_FILE = "run.json"
CREDENTIALS_FILE = "credentials.json"
CONFIG_FILE = "config.toml"
SCENARIO_DIR = "scenarios"


@dataclass
class Outcome:
    rundir: Path
    verdicts: list[Verdict]
    interrupted: bool = False
    failure: str | None = None  # the one line of the RunFailure that stopped the run


@dataclass
class Analysis:
    meta: dict[str, Any]
    verdicts: list[Verdict] = field(default_factory=list)
    qos: list[QosScenario] = field(default_factory=list)
    ladders: dict[str, list[tuple[str, Ladder]]] = field(default_factory=dict)  # per scenario
    descriptions: dict[str, str] = field(default_factory=dict)  # per scenario, plan's phones
    drawn: set[str] = field(default_factory=set)  # scenarios whose ladders are already drawn


def _phones(plan: Plan) -> list[str]:
    return sorted(e for lan in plan.lans for e in lan.phones)


def _freeze(rundir: Path, plan: Plan, scenarios: list[Scenario], sets: list[str]) -> dict[str, Any]:
    """Copy what the run uses into its folder; write run.json (not yet complete)."""
    shutil.copyfile(plan.source, rundir / CONFIG_FILE)
    (rundir / SCENARIO_DIR).mkdir()
    for sc in scenarios:
        assert sc.source is not None
        shutil.copyfile(sc.source, rundir / SCENARIO_DIR / f"{sc.name}.toml")
    (rundir / "versions.json").write_text(json.dumps(versions(), indent=2) + "\n")
    meta = {"natlab": 2, "run_id": rundir.name, "config": plan.source, "sets": sets,
            "scenarios": [sc.name for sc in scenarios], "host": platform.node(),
            "set_of": {sc.name: sc.source.parent.name for sc in scenarios if sc.source},
            "kernel": platform.release(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "ended": None, "wall_s": None, "complete": False, "interrupted": False,
            "failure": None}
    _write_meta(rundir, meta)
    return meta


def _write_meta(rundir: Path, meta: dict[str, Any]) -> None:
    (rundir / RUN_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def run(plan: Plan, scenarios: list[Scenario], results: Path, sets: list[str],
        progress: Progress | None = None, quiz_run: bool = False, jobs: int = 1) -> Outcome:
    """Run every scenario (up to `jobs` side by side, scenarios.parallel), then analyse and
    report what finished. Ctrl-C or a run failure stops the run; what finished is still
    analysed and the run is marked."""
    from scenarios.runner import credentials  # needs Mininet: only when running

    progress = progress or Progress()
    raise_on_term()  # SIGTERM/SIGHUP stop the run as Ctrl-C does
    preflight(tools_needed(scenarios))
    lock, reaper = RunLock(), None
    extra = {e for sc in scenarios for e in KINDS[sc.kind].registrants(sc)}  # load hosts
    early: EarlyAnalysis | None = None
    interrupted, failure = False, None
    started = time.monotonic()
    try:
        with deferred():  # a stop signal waits until the run is set up and its folder marked
            lock.acquire(results, sorted(set(_phones(plan)) | extra))  # processes name its path
            reaper = Reaper(lock)  # cleans up at once if natlab is killed (SIGKILL)
            rundir = new_run_dir(results)
            meta = _freeze(rundir, plan, scenarios, sets)
            meta["quiz"] = quiz_run
            meta["jobs"] = jobs
            creds = credentials(plan, scenarios)
            write_credentials(rundir / CREDENTIALS_FILE, creds)  # 0600; never in a report
            early = EarlyAnalysis(rundir, _analyse_and_draw, jobs > 1)  # forked before threads
        run_all(plan, scenarios, rundir, creds, progress, jobs, early.done)
    except KeyboardInterrupt:
        interrupted = True
    except RunFailure as exc:
        failure = str(exc)
    finally:
        interrupted = _tear_down(lock, reaper) or interrupted
    if reaper is None:  # stopped before the run took its lock: nothing started
        raise KeyboardInterrupt
    meta.update(ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                wall_s=round(time.monotonic() - started, 2),
                complete=not interrupted and failure is None, interrupted=interrupted,
                failure=failure)
    _write_meta(rundir, meta)
    t0 = time.monotonic()
    done = early.results() if early is not None else {}  # analysed while others ran
    try:
        analysis = analyse(rundir, done=done)
        report(rundir, analysis)
    except KeyboardInterrupt:  # stopped while reporting: report again, marked, undisturbed
        interrupted = True
        meta.update(complete=False, interrupted=True)
        _write_meta(rundir, meta)
        with deferred():
            analysis = analyse(rundir, done=done)
            report(rundir, analysis)
    meta["analysis_s"] = round(time.monotonic() - t0, 2)  # analysis and report
    _write_meta(rundir, meta)
    return Outcome(rundir, analysis.verdicts, interrupted, failure)


def _tear_down(lock: RunLock, reaper: Reaper | None) -> bool:
    """Remove what the run left, let the reaper go, release the lock; a further stop signal
    waits until this is done. True if one came."""
    try:
        with deferred():
            left = clean_leftovers(lock.state_file) if lock.fh is not None else []
            if reaper is not None:
                reaper.stop()
            lock.release()
            if left:
                print(f"natlab: removed leftovers: {', '.join(left)}", file=sys.stderr)
    except KeyboardInterrupt:
        return True
    return False


AGENT_TOOLS = {"baresip": "baresip", "linphone": "linphonec"}


def tools_needed(scenarios: list[Scenario]) -> dict[str, str]:
    """Programs that only some scenarios use -> the first scenario that needs each."""
    out: dict[str, str] = {}
    for sc in scenarios:
        wants = [AGENT_TOOLS[a] for _, a in sc.agents if a in AGENT_TOOLS]
        if sc.remedy is not None and sc.remedy.anchor:
            wants.append("rtpengine")
        if sc.measure:
            wants.append("turnutils_natdiscovery")
        if any(o.needs_map for _, o in sc.nat):
            wants.append("nft")
        wants += KINDS[sc.kind].tools
        for tool in wants:
            out.setdefault(tool, f"scenario {sc.name}")
    return out


def _subject(sc: Scenario) -> Subject:
    return Subject(sc.name, sc.stun, sc.trunk, sc.expect)


def call_ladder(plan: Plan, sc: Scenario, call: CallRecord, caps: Captures) -> Ladder | None:
    """The ladder of one call: its Call-ID is the caller's first INVITE on its own capture."""
    ip = plan.lan_of(call.caller).phones[call.caller]
    invite = caps.first_invite(phone_name(call.caller), ip) or \
        caps.first_invite(plan.lan_of(call.caller).pbx_name, ip)
    if invite is None:
        return None
    calls = [Call(call.index, call.round, call.caller, call.callee)]
    callees = sorted(KINDS[sc.kind].phones(sc, calls) - {call.caller})
    return build_ladder(plan, caps, invite.call_id, call.caller, callees)


def analyse_scenario(rundir: Path, plan: Plan, sc: Scenario,
                     ladders: list[tuple[str, Ladder]] | None = None
                     ) -> tuple[Verdict, QosScenario | None]:
    """One scenario's verdict and QoS rows (and, given a list, its ladders) from its folder;
    each capture is read once."""
    folder = rundir / sc.name
    rec = ScenarioRecord.load(folder)
    kind = KINDS[sc.kind]
    plan = kind.plan(sc, plan)
    if not rec.calls:
        why = rec.error or f"the run was {rec.status} before any call finished"
        return error_verdict(_subject(sc), why, rec.seconds), None
    caps: dict[str, Captures] = {}
    calls: list[Verdict] = []
    nat = load_nat(folder)
    qos = QosScenario(sc.name, sc.description, wan_of(sc, plan), mechanism(rec.wan),
                      shared=rec.slot > 0) if sc.qos else None
    for call in rec.calls:
        if call.pcaps not in caps:
            caps[call.pcaps] = Captures(pcap_files(folder, call))
        inp = CallInput(plan, sc, call, load_reports(folder, call), caps[call.pcaps], folder)
        verdict = kind.judge(inp)
        if nat is not None:
            checks, lines, cell = judge_nat(plan, caps[call.pcaps], nat, call.caller,
                                            call.callee, inp.reports,
                                            sc.remedy.name if sc.remedy else "custom",
                                            dict(verdict.checks))
            verdict = with_checks(verdict, checks, lines)
            verdict.nat = asdict(cell)
            if cell.state == "invalid":
                verdict.verdict = "invalid"
        calls.append(verdict)
        if qos is not None:
            qos.rows += kind.qos(inp)
        if ladders is not None:
            ladder = call_ladder(plan, sc, call, caps[call.pcaps])
            if ladder is not None:
                ladders.append((call.label if sc.calls > 1 else "call", ladder))
    verdict = combine(_subject(sc), calls)
    verdict.wall_s = rec.seconds
    if rec.status != "complete":
        verdict.explanation += f" (The run was {rec.status} in this scenario.)"
    return verdict, qos


def explain(rundir: Path, names: list[str] | None = None) -> str:
    """Verdict, explanation and text ladder of some scenarios (all without names)."""
    from report.ladder import text as ladder_text

    analysis = analyse(rundir, names)
    out = []
    for v in analysis.verdicts:
        out += [f"== {v.name}: {v.verdict} (paper: {v.expect})", "", v.explanation, ""]
        for label, ladder in analysis.ladders.get(v.name, []):
            out += [f"-- ladder {label} --", ladder_text(ladder)]
    return "\n".join(out)


def analyse(rundir: Path, names: list[str] | None = None,
            done: dict[str, Any] | None = None) -> Analysis:
    """Verdicts and QoS of every scenario the run folder holds, from its own copies of the
    config and scenario files. A scenario whose analysis fails gets verdict "error" with the
    reason; the others are still analysed. `done`: scenarios already analysed (natlab.early)."""
    try:
        meta = json.loads((rundir / RUN_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise AnalysisError(f"{rundir} is not a natlab run folder (no readable {RUN_FILE}: "
                            f"{exc})") from None
    out = Analysis(meta)
    unknown = set(names or []) - set(meta.get("scenarios", []))
    if unknown:
        raise InputError(f"{rundir} has no scenario {', '.join(sorted(unknown))}")
    reached = [n for n in names or meta.get("scenarios", []) if (rundir / n).is_dir()]
    known = done or {}
    todo = [n for n in reached if n not in known]
    found = dict(zip(todo, workers.map_all(_analyse_one, [(rundir, n) for n in todo]),
                     strict=True))  # one process per core
    out.drawn = set(known) & set(reached)
    for name in reached:
        verdict, qos, ladders, description = known[name] if name in known else found[name]
        if description is not None:
            out.descriptions[name] = description
        out.verdicts.append(verdict)
        if ladders is not None:
            out.ladders[name] = ladders
        if qos is not None:
            out.qos.append(qos)
    return out


Analysed = tuple[Verdict, QosScenario | None, list[tuple[str, Ladder]] | None, str | None]


def _analyse_and_draw(rundir: Path, name: str) -> Analysed:
    """_analyse_one, and the scenario's ladders drawn (natlab.early, while others run)."""
    res = _analyse_one(rundir, name)
    for drawing in _drawings(rundir, name, res[2] or []):
        draw_ladder(*drawing)
    return res


def _drawings(rundir: Path, name: str,
              ladders: list[tuple[str, Ladder]]) -> list[tuple[Ladder, str, Path]]:
    """draw_ladder's arguments for each of a scenario's ladders: title and file stem."""
    return [(ladder, f"{name} {label}", rundir / name / "ladders" / label)
            for label, ladder in ladders]


def _analyse_one(rundir: Path, name: str) -> Analysed:
    """One scenario of a run folder: its verdict (an error verdict if its analysis fails:
    the others are still analysed), QoS rows, ladders and description."""
    plan = load_plan(rundir / CONFIG_FILE)
    try:
        sc = load_scenario(rundir / SCENARIO_DIR / f"{name}.toml", plan)
    except NatlabError as exc:
        return error_verdict(Subject(name, False, "none", "works"), str(exc)), None, None, None
    ladders: list[tuple[str, Ladder]] = []
    try:
        verdict, qos = analyse_scenario(rundir, plan, sc, ladders)
    except Exception as exc:  # one scenario's failure must not lose the others
        line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        verdict, qos = error_verdict(_subject(sc), f"{type(exc).__name__}: {line}"), None
    return verdict, qos, ladders, sc.description


def report(rundir: Path, analysis: Analysis) -> None:
    """summary.json, verdict.json per scenario, qos.json/csv and figures, report.md,
    report.html (verdicts hidden in an ungraded quiz run, with a predictions template)."""
    hide = quiz.hidden(rundir, analysis.meta)
    if hide:
        quiz.write_template(rundir, analysis.verdicts)
    drawings = []
    for v in analysis.verdicts:
        folder = rundir / v.name
        if folder.is_dir():
            (folder / "verdict.json").write_text(json.dumps(v.as_dict(), indent=2) + "\n")
        if v.name not in analysis.drawn:
            drawings += _drawings(rundir, v.name, analysis.ladders.get(v.name, []))
    workers.map_all(draw_ladder, drawings)  # ~0.5 s each (matplotlib): one process per core
    plan = load_plan(rundir / CONFIG_FILE)
    times = timing.timing(rundir, analysis.meta)
    write_run(rundir, analysis.verdicts, {**analysis.meta, "timing": times},
              write_qos(rundir, analysis.qos)
              + matrix.overhead(analysis.verdicts, analysis.qos)
              + fault_report.markdown(analysis.verdicts)
              + load_report.section(rundir, analysis.verdicts)
              + timing.markdown(times), hide, plan)
    write_html(rundir, plan, analysis.verdicts, analysis.meta, hide, analysis.descriptions)
