"""natlab command line: run the experiment, explore the topology, clean up, check a config."""
from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from analysis.packets import read_udp
from analysis.qos import call_qos, conference_qos
from analysis.services_verdict import judge_any
from analysis.verdict import Verdict, combine
from capture.tcpdump import CaptureError
from natlab import cmd_analyze, cmd_emodel
from natlab.guard import AlreadyRunning, RunLock, clean_leftovers, is_locked, raise_on_term
from natlab.preflight import PreflightError, preflight
from report.qos import QosScenario, write_qos
from report.write import new_run_dir, text_table, write_run
from scenarios.agentproc import RunError
from scenarios.extras import lan_by_prefix
from scenarios.model import Call, Scenario, available_sets, select, wan_of
from scenarios.runner import RawRun, load_raw, run_scenario
from services.daemon import DaemonError
from topology.plan import ConfigError, Plan, load_plan
from topology.router import RouterError

ROOT = Path(__file__).resolve().parent.parent
EXTRA_COMMANDS = (cmd_analyze, cmd_emodel)
DEFAULT_SETS = ("default", "paper-qos", "services")
INPUT_ERRORS = (ConfigError, PreflightError, AlreadyRunning)
RUN_ERRORS = (DaemonError, RunError, RouterError, CaptureError)


def _plan(args: argparse.Namespace) -> Plan:
    return load_plan(Path(args.config) if args.config else None)


def _phones(plan: Plan) -> list[str]:
    return sorted(e for lan in plan.lans for e in lan.phones)


def cmd_run(args: argparse.Namespace) -> int:
    plan = _plan(args)
    sets = args.set or list(DEFAULT_SETS)
    scenarios = ([sc for s in sets for sc in select(plan, s)] if not args.scenario
                 else select(plan, names=args.scenario))  # all input is checked before any start
    preflight()
    lock = RunLock()
    results = Path(args.results).resolve()
    lock.acquire(results, _phones(plan))  # every process of the run names a path under it
    rundir = new_run_dir(results)
    raise_on_term()
    started = time.monotonic()
    verdicts: list[Verdict] = []
    qos: list[QosScenario] = []
    try:
        for sc in scenarios:
            print(f"natlab: {sc.name}: {sc.description} ...", flush=True)
            t0 = time.monotonic()
            raws = run_scenario(plan, sc, rundir / sc.name)
            verdicts.append(_judge(plan, sc, raws, rundir / sc.name))
            qos += _qos(plan, sc, raws, rundir / sc.name)
            print(f"natlab: {sc.name}: {verdicts[-1].verdict} "
                  f"({time.monotonic() - t0:.1f} s)", flush=True)
    finally:
        left = clean_leftovers(lock.state_file)
        lock.release()
        if left:
            print(f"natlab: removed leftovers: {', '.join(left)}", file=sys.stderr)
    meta = {"run_id": rundir.name, "wall_s": round(time.monotonic() - started, 2),
            "sets": sets if not args.scenario else ["custom"]}
    write_run(rundir, plan, verdicts, meta, write_qos(rundir, qos))
    print(text_table(verdicts))
    print(f"natlab: wrote {rundir}/summary.json and report.md ({meta['wall_s']:.1f} s)")
    disagree = [v.name for v in verdicts if v.verdict != v.expect]
    if disagree and args.strict:
        print(f"natlab: verdict differs from the paper for: {', '.join(disagree)}", file=sys.stderr)
        return 1
    return 0


def _judge(plan: Plan, sc: Scenario, raws: list[RawRun], outdir: Path) -> Verdict:
    calls = [judge_any(plan, sc, r.call, r.reports, r.pcaps, r.seconds) for r in raws]
    verdict = combine(sc, calls)
    (outdir / "verdict.json").write_text(json.dumps(verdict.as_dict(), indent=2) + "\n")
    return verdict


def _qos(plan: Plan, sc: Scenario, raws: list[RawRun], outdir: Path) -> list[QosScenario]:
    if not sc.qos:
        return []
    wan_txt = outdir / "wan.txt"
    mech = " ".join(wan_txt.read_text().split("\n")[1:]).strip() if wan_txt.exists() else ""
    qs = QosScenario(sc.name, sc.description, wan_of(sc, plan), mech or "no impairment")
    if sc.conference is not None:
        lan = lan_by_prefix(plan, sc.conference.room, sc.name)
        caps = raws[0].pcaps
        bridge = read_udp(caps.get(lan.pbx_name, Path("/nonexistent")))
        for ext in sc.conference.participants:
            phone = read_udp(caps.get(f"p{ext}", Path("/nonexistent")))
            qs.rows += conference_qos(ext, plan.lan_of(ext).phones[ext], lan.pbx, phone, bridge)
        return [qs]
    for raw in raws:
        c = raw.call
        if sc.ring is not None:  # the member that answered
            won = [e for e in sc.ring.members
                   if raw.reports.get(f"member-{e}", {}).get("confirmed")]
            if not won:
                continue
            c = Call(c.index, c.round, c.caller, won[0])
        ips = plan.lan_of(c.caller).phones[c.caller], plan.lan_of(c.callee).phones[c.callee]
        video = (raw.reports.get("callee", {}).get("video") or {}).get("payload_type")
        pkts = [read_udp(raw.pcaps.get(f"p{e}", Path("/nonexistent")))
                for e in (c.caller, c.callee)]
        qs.rows += call_qos(c.label, c.caller, c.callee, ips[0], ips[1], pkts[0], pkts[1],
                            video if sc.video else None)
    return [qs]


def cmd_report(args: argparse.Namespace) -> int:
    """Analyse an existing run again (run -> parse -> report stages are separate)."""
    plan = _plan(args)
    rundir = Path(args.rundir).resolve()
    old = rundir / "summary.json"
    if not old.exists():
        raise ConfigError(f"{rundir} is not a natlab run (no summary.json)")
    meta = {k: v for k, v in json.loads(old.read_text()).items() if k not in ("scenarios",)}
    verdicts = []
    qos: list[QosScenario] = []
    for entry in json.loads(old.read_text())["scenarios"]:
        sc = select(plan, names=[entry["name"]])[0]
        raws = [load_raw(sc, call, rundir / sc.name) for call in sc.call_list()]
        for raw, old_call in zip(raws, entry.get("calls") or [entry], strict=False):
            raw.seconds = float(old_call.get("seconds", 0.0))
        verdicts.append(_judge(plan, sc, raws, rundir / sc.name))
        qos += _qos(plan, sc, raws, rundir / sc.name)
    write_run(rundir, plan, verdicts, meta, write_qos(rundir, qos))
    print(text_table(verdicts))
    print(f"natlab: rewrote {rundir}/summary.json and report.md")
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

    from scenarios.runner import port_forwards, start_services
    from topology.net import Network

    plan = _plan(args)
    sc = Scenario(name="cli", description="interactive", stun=True, trunk=args.trunk,
                  expect="works", caller=plan.call.caller, callee=plan.call.callee,
                  duration_s=plan.call.duration_s)
    preflight()
    lock = RunLock()
    results = Path(args.results).resolve()
    lock.acquire(results, _phones(plan))  # every process of the run names a path under it
    rundir = new_run_dir(results)
    raise_on_term()
    try:
        with ExitStack() as stack:
            net = stack.enter_context(Network(plan, port_forwards(plan, args.trunk)))
            start_services(stack, net, plan, sc, rundir)
            print(CLI_HELP.format(venv=sys.executable, pbx=plan.lans[0].pbx,
                                  stun=plan.servers.stun, rundir=rundir))
            setLogLevel("output")  # the CLI prints command output through Mininet's log
            CLI(net.net, script=args.script)
    finally:
        clean_leftovers(lock.state_file)
        lock.release()
    return 0


CLI_HELP = """
natlab: topology up, STUN + both PBXs running (logs in {rundir}). Try:
  p1002 ping -c1 192.0.2.10            LAN -> public works
  stun ping -c1 203.0.113.2            public -> LAN is blocked by the WAN firewall
  r1 conntrack -L                      the router's NAT table
  r1 tcpdump -ni r1-wan udp &          watch the trunk and RTP
  p2005 {venv} -m agents.sipagent --ext 2005 --bind 192.168.1.25 --pbx {pbx} --answer \\
        --stun {stun}:3478 --duration 5 --workdir /tmp --report /tmp/2005.json &
  p1002 {venv} -m agents.sipagent --ext 1002 --bind 172.16.10.12 --pbx 172.16.10.10 \\
        --call 2005 --stun {stun}:3478 --duration 5 --workdir /tmp --report /tmp/1002.json
Type exit (or Ctrl-D) to tear everything down.
"""


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
    run.add_argument("--strict", action="store_true",
                     help="exit 1 when a verdict differs from the scenario's expectation")
    run.set_defaults(func=cmd_run)
    rep = sub.add_parser("report", help="analyse a finished run again and rewrite its report")
    rep.add_argument("rundir", nargs="?", default=str(ROOT / "results" / "latest"))
    rep.set_defaults(func=cmd_report)
    sub.add_parser("list", help="list scenario sets and scenarios").set_defaults(func=cmd_list)
    sub.add_parser("check", help="validate the config and every scenario").set_defaults(
        func=cmd_check)
    sub.add_parser("clean", help="remove leftovers of a killed run").set_defaults(func=cmd_clean)
    cli = sub.add_parser("cli", help="topology + daemons up, then the Mininet CLI")
    cli.add_argument("--trunk", choices=("none", "naive", "nat-aware"), default="nat-aware")
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
    except (*INPUT_ERRORS, ValueError) as exc:
        print(f"natlab: error: {exc}", file=sys.stderr)
        return 2
    except RUN_ERRORS as exc:
        print(f"natlab: failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("natlab: interrupted; everything was torn down", file=sys.stderr)
        return 130
