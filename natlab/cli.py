"""natlab command line: parse arguments, then call the pipeline (natlab.pipeline) or a tool."""
from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path

from natlab import cmd_analyze, cmd_emodel, pipeline
from natlab.constants import SLOTS, STUN_PORT
from natlab.errors import InputError, NatlabError
from natlab.guard import AlreadyRunning, RunLock, clean_leftovers, is_locked, raise_on_term
from natlab.preflight import preflight
from natlab.reaper import Reaper
from report import labkey, quiz
from report.timing import write_experiment
from report.write import new_run_dir, text_table
from scenarios.model import TRUNKS, available_sets, select
from scenarios.parallel import JOBS
from topology.plan import Plan, load_plan

ROOT = Path(__file__).resolve().parent.parent
EXTRA_COMMANDS = (cmd_analyze, cmd_emodel)
DEFAULT_SETS = ("default", "paper-qos", "services", "nat", "linphone", "faults",
                "security")


def _plan(args: argparse.Namespace) -> Plan:
    return load_plan(Path(args.config) if args.config else None)


def _phones(plan: Plan) -> list[str]:
    return sorted(e for lan in plan.lans for e in lan.phones)


def cmd_run(args: argparse.Namespace) -> int:
    plan = _plan(args)
    sets = args.set or list(DEFAULT_SETS)
    scenarios = ([sc for s in sets for sc in select(plan, s)] if not args.scenario
                 else select(plan, names=args.scenario))  # all input is checked before any start
    out = pipeline.run(plan, scenarios, Path(args.results).resolve(),
                       sets if not args.scenario else ["custom"],
                       quiz_run=args.quiz, jobs=args.jobs)
    print(text_table(out.verdicts, hidden=args.quiz))
    if args.quiz:
        print(f"natlab: quiz: write your predictions into {out.rundir}/predictions.toml, then "
              f"run: natlab grade {out.rundir}")
    print(f"natlab: wrote {out.rundir}/summary.json and report.md; open {out.rundir}/report.html")
    if not args.set and not args.scenario and not out.interrupted and not out.failure:
        bench = Path(args.results).resolve() / "bench" / "experiment.json"  # its wall times
        print(f"natlab: wrote {write_experiment([out.rundir], bench)}")
    if out.interrupted:
        print("natlab: interrupted; everything was torn down, partial results kept",
              file=sys.stderr)
        return 130
    if out.failure:
        print(f"natlab: failed: {out.failure}", file=sys.stderr)
        return 1
    disagree = [v.name for v in out.verdicts if v.verdict != v.expect]
    if disagree and args.strict:
        print(f"natlab: verdict differs from the paper for: {', '.join(disagree)}", file=sys.stderr)
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Analyse a run folder again from its own files (run → analyse → report are separate)."""
    rundir = Path(args.rundir).resolve()
    if not (rundir / pipeline.RUN_FILE).exists():
        raise InputError(f"{rundir} is not a natlab run folder (no {pipeline.RUN_FILE})")
    analysis = pipeline.analyse(rundir)
    pipeline.report(rundir, analysis)
    print(text_table(analysis.verdicts))
    print(f"natlab: rewrote {rundir}/summary.json, report.md and report.html")
    return 0


def cmd_grade(args: argparse.Namespace) -> int:
    """Score a quiz run's predictions, then reveal its report."""
    rundir = Path(args.rundir).resolve()
    if not (rundir / pipeline.RUN_FILE).exists():
        raise InputError(f"{rundir} is not a natlab run folder (no {pipeline.RUN_FILE})")
    analysis = pipeline.analyse(rundir)
    answers = quiz.grade(rundir, analysis.verdicts,
                         Path(args.predictions) if args.predictions else None)
    for a in answers:
        print(f"{a.scenario:32} predicted {a.predicted:5}  verdict {a.verdict:5}  "
              f"{'right' if a.right else 'WRONG'}")
    print(f"natlab: {sum(a.right for a in answers)}/{len(answers)} right; the report now shows "
          f"every verdict: {rundir}/report.html")
    pipeline.report(rundir, analysis)
    return 0


def cmd_lab_key(args: argparse.Namespace) -> int:
    """The lab guide's answer key, filled from a run."""
    rundir = Path(args.rundir).resolve()
    if not (rundir / "summary.json").exists():
        raise InputError(f"{rundir} has no summary.json: run natlab report on it first")
    print(f"natlab: wrote {labkey.write(rundir)}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """A scenario's verdict, explanation and SIP ladder, on the terminal."""
    rundir = Path(args.rundir).resolve()
    if not (rundir / pipeline.RUN_FILE).exists():
        raise InputError(f"{rundir} is not a natlab run folder (no {pipeline.RUN_FILE})")
    print(pipeline.explain(rundir, args.scenario or None))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    plan = _plan(args)
    for set_name in available_sets():
        for sc in select(plan, set_name):
            stun = "stun" if sc.stun else "no-stun"
            print(f"{set_name}/{sc.name}  {stun:7}  trunk={sc.trunk:9}  expect={sc.expect}  "
                  f"{sc.description}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    plan = _plan(args)
    n = sum(len(select(plan, s)) for s in available_sets())
    print(f"natlab: {plan.source}: valid ({len(_phones(plan))} phones, {n} scenarios)")
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    if is_locked():
        raise AlreadyRunning("a natlab run is active; stop it first (Ctrl-C) instead of cleaning")
    removed = clean_leftovers()
    print("natlab: removed " + (", ".join(removed) if removed else "nothing (already clean)"))
    return 0


def cmd_cli(args: argparse.Namespace) -> int:
    from mininet.cli import CLI
    from mininet.log import setLogLevel

    from scenarios.runner import credentials, port_forwards, start_services
    from services.credentials import write_credentials
    from topology.net import Network

    plan = _plan(args)
    preflight()
    lock = RunLock()
    results = Path(args.results).resolve()
    lock.acquire(results, _phones(plan))  # every process of the run names a path under it
    reaper = Reaper(lock)  # cleans up at once if natlab is killed (SIGKILL)
    rundir = new_run_dir(results)
    raise_on_term()
    try:
        with ExitStack() as stack:
            net = stack.enter_context(Network(plan, port_forwards(plan, args.trunk)))
            creds = credentials(plan, [])
            write_credentials(rundir / pipeline.CREDENTIALS_FILE, creds)
            start_services(stack, net, plan, args.trunk, None, rundir, creds)
            print(banner(plan, sys.executable, rundir, creds))
            setLogLevel("output")  # the CLI prints command output through Mininet's log
            CLI(net.net, script=args.script)
    finally:
        clean_leftovers(lock.state_file)
        reaper.stop()
        lock.release()
    return 0


def banner(plan: Plan, venv: str, rundir: Path, creds: dict[str, str]) -> str:
    """What to try in the CLI, with the addresses of the plan in use."""
    caller, callee = plan.call.caller, plan.call.callee
    c_lan, e_lan = plan.lan_of(caller), plan.lan_of(callee)
    stun = f"{plan.servers.stun}:{STUN_PORT}"
    agent = f"{venv} -m agents.sipagent"
    return f"""
natlab: topology up, STUN + both PBXs running (logs in {rundir}). Try:
  p{caller} ping -c1 {plan.servers.stun}            LAN -> public works
  stun ping -c1 {e_lan.wan_ip}            public -> LAN is blocked by the WAN firewall
  {e_lan.router_name} conntrack -L                      the router's NAT table
  {e_lan.router_name} tcpdump -ni {e_lan.router_name}-wan udp &          watch the trunk and RTP
  p{callee} {agent} --ext {callee} --bind {e_lan.phones[callee]} --pbx {e_lan.pbx} --answer \\
        --password {creds.get(callee, '')} \\
        --stun {stun} --duration 5 --workdir /tmp --report /tmp/{callee}.json &
  p{caller} {agent} --ext {caller} --bind {c_lan.phones[caller]} --pbx {c_lan.pbx} \\
        --password {creds.get(caller, '')} \\
        --call {callee} --stun {stun} --duration 5 --workdir /tmp --report /tmp/{caller}.json
Type exit (or Ctrl-D) to tear everything down.
"""


def _jobs(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= SLOTS:
        raise argparse.ArgumentTypeError(f"must be a whole number within 1..{SLOTS}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="natlab", description=__doc__)
    p.add_argument("--config", help="address plan TOML (default: config/default.toml)")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run scenarios, capture, analyse, write results/<run-id>/")
    run.add_argument("--set", action="append", metavar="SET",
                     help="scenario set, a folder in scenarios/ (repeatable; default: "
                          f"{' and '.join(DEFAULT_SETS)})")
    run.add_argument("--scenario", action="append", metavar="NAME",
                     help="run only this scenario (repeatable; a name or a .toml path)")
    run.add_argument("--results", default=str(ROOT / "results"), help="results folder")
    run.add_argument("--quiz", action="store_true",
                     help="hide the verdicts until predictions are written and graded")
    run.add_argument("--jobs", type=_jobs, default=JOBS, metavar="N",
                     help=f"scenarios side by side, each in its own network (default {JOBS}; "
                          "QoS scenarios and load steps run alone unless their file says "
                          "alone = false; 1: one after another)")
    run.add_argument("--strict", action="store_true",
                     help="exit 1 when a verdict differs from the scenario's expectation")
    run.set_defaults(func=cmd_run)
    rep = sub.add_parser("report", help="analyse a finished run again and rewrite its report")
    rep.add_argument("rundir", nargs="?", default=str(ROOT / "results" / "latest"))
    rep.set_defaults(func=cmd_report)
    grd = sub.add_parser("grade", help="score a quiz run's predictions and reveal its report")
    grd.add_argument("rundir", help="a quiz run folder")
    grd.add_argument("predictions", nargs="?", help="predictions TOML (default: in the run)")
    grd.set_defaults(func=cmd_grade)
    key = sub.add_parser("lab-key", help="fill the lab guide's answer key from a run")
    key.add_argument("rundir", help="a run folder, e.g. results/latest")
    key.set_defaults(func=cmd_lab_key)
    exp = sub.add_parser("explain", help="a scenario's verdict, explanation and SIP ladder")
    exp.add_argument("rundir", help="a run folder, e.g. results/latest")
    exp.add_argument("scenario", nargs="*", help="scenario names (default: all)")
    exp.set_defaults(func=cmd_explain)
    sub.add_parser("list", help="list scenario sets and scenarios").set_defaults(func=cmd_list)
    sub.add_parser("check", help="validate the config and every scenario").set_defaults(
        func=cmd_check)
    sub.add_parser("clean", help="remove leftovers of a killed run").set_defaults(func=cmd_clean)
    cli = sub.add_parser("cli", help="topology + daemons up, then the Mininet CLI")
    cli.add_argument("--trunk", choices=TRUNKS, default="nat-aware")
    cli.add_argument("--results", default=str(ROOT / "results"), help="results folder")
    cli.add_argument("--script", help="run Mininet CLI commands from this file, then tear down")
    cli.set_defaults(func=cmd_cli)
    for module in EXTRA_COMMANDS:
        module.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except NatlabError as exc:
        word = "error" if exc.exit_code == 2 else "failed"
        print(f"natlab: {word}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("natlab: interrupted; everything was torn down", file=sys.stderr)
        return 130
