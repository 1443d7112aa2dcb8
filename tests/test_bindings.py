"""Each router's NAT binding table mid-call (conntrack, recorded by the run), as the report shows
it: stored real runs, no root. The table and the ladder come from different sources (conntrack
vs the captures on both sides of the router) and must tell the same story."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import ROOT

from natlab import pipeline
from report.bindings import Binding, bindings, markdown
from topology.plan import Plan, load_plan

RUN = ROOT / "tests" / "data" / "run"


@pytest.fixture(scope="module")
def plan() -> Plan:
    return load_plan(RUN / "config.toml")


def by_inside(rows: list[Binding], router: str, inside: str) -> list[Binding]:
    return [b for b in rows if b.router == router and b.inside == inside]


def test_symmetric_router_maps_one_port_to_several(plan: Plan) -> None:
    rows, missing = bindings(plan, RUN / "341_symmetric_stun")
    assert missing == []
    rtp = by_inside(rows, "r2", "172.16.10.12:4000")
    publics = {b.remote: b.public for b in rtp}
    assert publics["192.0.2.10:3478"] == "198.51.100.2:1627"  # what STUN saw
    toward_peer = [p for r, p in publics.items() if r.startswith("203.0.113.2:")]
    assert toward_peer and toward_peer[0] != "198.51.100.2:1627"  # another port: symmetric
    assert all(b.direction == "out" and b.proto == "udp" for b in rtp)


def test_table_agrees_with_the_ladders_rewrite(plan: Plan) -> None:
    """The public port the ladder saw r2 give 1002's RTP (captures on both sides) is the one
    conntrack holds for it mid-call; the peer never answered it (UNREPLIED)."""
    (_, ladder), = pipeline.analyse(RUN, ["341_symmetric_stun"]).ladders["341_symmetric_stun"]
    out = next(a for a in ladder.arrows if a.kind == "rtp" and a.src == "r2-wan")
    public = out.seen[0].src  # 198.51.100.2:port on r2-wan.pcap
    assert out.nat.endswith(f"-> {public}")
    rows, _ = bindings(plan, RUN / "341_symmetric_stun")
    (b,) = [b for b in rows if b.router == "r2" and b.public == public]
    assert b.inside == "172.16.10.12:4000" and b.remote == out.seen[0].dst
    assert b.state.startswith("UNREPLIED")


def test_full_cone_keeps_the_port_and_the_trunk_forward(plan: Plan) -> None:
    rows, _ = bindings(plan, RUN / "311_fullcone_stun")
    rtp = by_inside(rows, "r1", "192.168.1.25:4000")
    assert rtp and {b.public for b in rtp} == {"203.0.113.2:4000"}
    assert any(b.state.startswith("replied") for b in rtp)
    trunk = by_inside(rows, "r1", "192.168.1.10:5080")
    assert trunk and trunk[0].direction == "in" and trunk[0].public == "203.0.113.2:5080"
    assert trunk[0].host == "PBX1" and rtp[0].host == "2005"


def test_conntrack_json_of_a_scenario_without_nat_setting(plan: Plan, tmp_path: Path) -> None:
    """Scenarios without a NAT setting record conntrack.json (same layout, no discovery)."""
    nat = json.loads((RUN / "311_fullcone_stun" / "nat.json").read_text())
    routers = {k: {"router": v["router"], "conntrack": v["conntrack"], "conntrack_error": None}
               for k, v in nat["routers"].items()}
    routers["lan2"] = {"router": "r2", "conntrack": [], "conntrack_error": "not taken"}
    (tmp_path / "conntrack.json").write_text(json.dumps({"routers": routers}))
    rows, missing = bindings(plan, tmp_path)
    assert rows == bindings(plan, RUN / "311_fullcone_stun")[0][:len(rows)]
    assert missing == ["r2: no table (not taken)"]
    text = "\n".join(markdown(plan, tmp_path))
    assert "| r1 | out | 2005 | 192.168.1.25:4000 | 203.0.113.2:4000 |" in text
    assert bindings(plan, RUN / "006_call_stun_nataware") == ([], [])  # none recorded


def test_report_shows_the_tables(tmp_path: Path) -> None:
    rundir = tmp_path / "run"
    shutil.copytree(RUN, rundir, ignore=shutil.ignore_patterns("2*", "00[1-5]*"))
    meta = json.loads((rundir / "run.json").read_text())
    meta["scenarios"] = [n for n in meta["scenarios"] if (rundir / n).is_dir()]
    (rundir / "run.json").write_text(json.dumps(meta))
    pipeline.report(rundir, pipeline.analyse(rundir))
    md = (rundir / "report.md").read_text()
    page = (rundir / "report.html").read_text()
    for text in (md, page):
        assert text.count("NAT bindings mid-call") == 3  # 311, 335, 341
        assert "172.16.10.12:4000" in text and "UNREPLIED" in text
