"""The NAT side of a scenario's run: measure each router, and record its state mid-call.

While the first round runs: RFC 5780 discovery (coturn's turnutils_natdiscovery) from a phone
of each LAN that is not in the call, and, halfway through the media, each router's conntrack
table; after the round, the WAN firewall's drop counters. All of it goes to nat.json (plus the
raw discovery output and each router's rules), so analysis needs nothing else. A scenario
without a NAT setting still records the conntrack tables mid-call, in conntrack.json (the
report's NAT binding tables).
"""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from scenarios.model import Scenario
from services.natdiscovery import Discovery, compare, run_discovery
from topology.conntrack import Entry, read_conntrack, wan_drops
from topology.nat import NatOptions
from topology.plan import Lan, Plan, phone_name
from topology.router import sip_alg_params

FILE = "nat.json"
BINDINGS = "conntrack.json"
CALL_SETUP_S = 2.0  # registration and INVITE before the media starts
TESTS = {"mapping": "m", "filtering": "f", "hairpin": "H"}


def _prober(lan: Lan, busy: set[str], built: set[str] | None = None) -> str:
    """A phone of the LAN (of those the network has) that is not in the call, or the first."""
    have = [e for e in sorted(lan.phones) if built is None or e in built]
    free = [e for e in have if e not in busy]
    return phone_name(free[0] if free else have[0])


def configured(o: NatOptions) -> dict[str, Any]:
    return {"behaviour": o.behaviour.value, "rfc4787": o.behaviour.rfc4787,
            "hairpin": o.hairpin, "udp_timeout_s": o.udp_timeout_s,
            "udp_stream_timeout_s": o.udp_stream_timeout_s, "sip_alg": o.sip_alg}


def measured(d: Discovery) -> dict[str, Any]:
    return {"mapping": d.mapping.name if d.mapping else None,
            "filtering": d.filtering.name if d.filtering else None,
            "behaviour": d.behaviour.value if d.behaviour else None,
            "hairpin": d.hairpin, "alg": d.alg, "mapped": list(d.mapped)}


@contextmanager
def watch(net: Any, plan: Plan, sc: Scenario, outdir: Path, busy: set[str]) -> Iterator[None]:
    """Around the first round of a scenario with a NAT setting; a no-op otherwise."""
    if not sc.nat and not sc.measure:
        with bindings(net, plan, sc, outdir):
            yield
        return
    nat = dict(sc.nat)
    results: dict[str, Discovery | str] = {}
    tables: dict[str, list[Entry] | str] = {}
    tests = "".join(TESTS[m] for m in sc.measure)

    def discover(lan: Lan) -> None:
        try:
            host = net.host(_prober(lan, busy, net.phones))
            results[lan.name] = run_discovery(host, plan.servers.stun, outdir / "natdiscovery",
                                              tests=tests)
        except Exception as exc:  # kept as the reason; the scenario still runs
            results[lan.name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__

    workers = [threading.Thread(target=discover, args=(lan,), daemon=True)
               for lan in plan.lans] if tests else []
    for w in workers:
        w.start()
    timer = _mid_call(net, plan, sc, tables)
    try:
        yield
    finally:
        timer.cancel()
        for w in workers:
            w.join(timeout=30.0)
        drops = {lan.name: {c: asdict(d) for c, d in
                            wan_drops(net.host(lan.router_name), f"{lan.router_name}-wan").items()}
                 for lan in plan.lans}
        _write(outdir, plan, net, nat, results, tables, drops)


def _snapshot(net: Any, plan: Plan, tables: dict[str, list[Entry] | str]) -> None:
    for lan in plan.lans:
        try:
            tables[lan.name] = read_conntrack(net.host(lan.router_name))
        except Exception as exc:
            tables[lan.name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _mid_call(net: Any, plan: Plan, sc: Scenario,
              tables: dict[str, list[Entry] | str]) -> threading.Timer:
    """A started timer that takes each router's conntrack table halfway through the media."""
    timer = threading.Timer(CALL_SETUP_S + sc.duration_s / 2, _snapshot, (net, plan, tables))
    timer.daemon = True
    timer.start()
    return timer


@contextmanager
def bindings(net: Any, plan: Plan, sc: Scenario, outdir: Path) -> Iterator[None]:
    """Each router's conntrack table halfway through the first round's media, only."""
    tables: dict[str, list[Entry] | str] = {}
    timer = _mid_call(net, plan, sc, tables)
    try:
        yield
    finally:
        timer.cancel()
        timer.join(timeout=15.0)
        routers = {}
        for lan in plan.lans:
            table = tables.get(lan.name, "not taken: the round ended before mid-call")
            routers[lan.name] = {
                "router": lan.router_name,
                "conntrack": [asdict(e) for e in table] if isinstance(table, list) else [],
                "conntrack_error": table if isinstance(table, str) else None}
        (outdir / BINDINGS).write_text(json.dumps({"routers": routers}, indent=2) + "\n")


def _write(outdir: Path, plan: Plan, net: Any, nat: dict[str, NatOptions],
           results: dict[str, Discovery | str], tables: dict[str, list[Entry] | str],
           drops: dict[str, Any]) -> None:
    routers: dict[str, Any] = {}
    for lan in plan.lans:
        opts = nat.get(lan.name, NatOptions())
        rules = net.rules.get(lan.name)
        if rules is not None:
            (outdir / f"{lan.router_name}-rules.txt").write_text(rules.text() + "\n")
        found = results.get(lan.name)
        entry: dict[str, Any] = {"router": lan.router_name, "configured": configured(opts)}
        if isinstance(found, Discovery):
            entry["measured"] = measured(found)
            entry["mismatches"] = list(compare(opts, found).mismatches)
        else:
            entry["measured"] = None
            entry["mismatches"] = []
            entry["discovery_error"] = found
        table = tables.get(lan.name)
        entry["conntrack"] = ([asdict(e) for e in table] if isinstance(table, list) else [])
        entry["conntrack_error"] = table if isinstance(table, str) else None
        entry["drops"] = drops.get(lan.name, {})
        routers[lan.name] = entry
    params = sip_alg_params() if any(o.sip_alg for o in nat.values()) else {}
    (outdir / FILE).write_text(json.dumps({"routers": routers, "sip_alg_params": params},
                                          indent=2) + "\n")
