"""The fault timeline (analysis.fault) on stored captures of a real `natlab run --set faults`,
no root. tests/data/faults/<scenario>/ holds the scenario's fault.json and the phones' pcaps
trimmed with tshark to the frames around the fault plus every SIP/STUN frame (see
tests/data/faults/README.md); frame numbers are those of the trimmed files. Every gap is checked
against tshark's own timestamps of the frames it names."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT
from helpers import requires

from analysis import fault
from analysis.evidence import Captures
from analysis.verdict import Verdict
from natlab.errors import AnalysisError
from report.fault import markdown, rows
from topology.plan import Plan, phone_name

DATA = ROOT / "tests" / "data" / "faults"


def phone(plan: Plan, ext: str) -> fault.Phone:
    lan = plan.lan_of(ext)
    return fault.Phone(ext, lan.phones[ext], phone_name(ext), lan.router_name, lan.pbx_name)


def timeline(plan: Plan, name: str) -> fault.Timeline:
    folder = DATA / name
    log = fault.load(folder)
    assert log is not None
    caps = Captures({p.stem: p for p in folder.glob("*.pcap")})
    return fault.timeline(log, caps, phone(plan, "1002"), phone(plan, "2005"),
                          plan.servers.stun)


def frame_time(pcap: Path, frame: int) -> float:
    out = subprocess.run(["tshark", "-r", str(pcap), "-Y", f"frame.number=={frame}", "-T",
                          "fields", "-e", "frame.time_epoch"], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert len(out) == 1, f"{pcap.name} has no frame {frame}"
    return float(out[0])


def check_gap_with_tshark(folder: Path, gap: fault.Gap) -> None:
    """The two frames a gap names are as far apart in tshark's timestamps as it says."""
    assert gap.last_before is not None and gap.first_after is not None and gap.gap_ms
    (a_pcap, _, a), (b_pcap, _, b) = (x.split() for x in (gap.last_before, gap.first_after))
    dt = frame_time(folder / b_pcap, int(b)) - frame_time(folder / a_pcap, int(a))
    assert abs(dt * 1000 - gap.gap_ms) < 1.0, (dt, gap)


@requires("tshark")
def test_wan_link_down_gap_is_the_outage_each_way(plan: Plan) -> None:
    tl = timeline(plan, "604_fault_wan_link_down")
    assert (tl.what, tl.target, tl.error) == ("wan-link-down", "r1", None)
    assert [c["cmd"] for c in tl.commands] == ["ip link set core-r1 down",
                                               "ip link set core-r1 up"]
    assert tl.restored_s is not None and 1.95 <= tl.restored_s <= 2.2
    assert [(g.sender, g.receiver) for g in tl.gaps] == [("1002", "2005"), ("2005", "1002")]
    for g in tl.gaps:
        assert g.gap_ms is not None and abs(g.gap_ms - tl.restored_s * 1000) <= 60, g
        assert g.recovery == fault.ONGOING and g.outage
        assert g.resumed_s is not None and g.resumed_s >= tl.restored_s
        check_gap_with_tshark(DATA / "604_fault_wan_link_down", g)


@requires("tshark")
def test_router_reboot_media_back_by_the_phones_own_rtp(plan: Plan) -> None:
    tl = timeline(plan, "601_fault_r1_reboot")
    assert tl.what == "router-reboot" and all(c["rc"] == 0 for c in tl.commands)
    assert "conntrack -F" in [c["cmd"] for c in tl.commands]
    inbound, outbound = tl.gaps
    # 1002 -> 2005 comes in through r1: only 2005's next RTP re-creates r1's mapping
    assert inbound.recovery == fault.OWN_RTP, inbound.event
    assert "re-created r1's mapping" in inbound.event and "r1-wan.pcap frame" in inbound.event
    assert "the same public port as before the reboot" in inbound.event
    # 2005 -> 1002 leaves through r1: its stream goes on once r1 forwards again
    assert outbound.recovery == fault.ONGOING, outbound.event
    for g in tl.gaps:
        assert g.gap_ms is not None and 900 <= g.gap_ms <= 1300, g
        check_gap_with_tshark(DATA / "601_fault_r1_reboot", g)


def test_router_reboot_then_2005_reachable(plan: Plan) -> None:
    folder = DATA / "601_fault_r1_reboot"
    log = fault.load(folder)
    assert log is not None
    caps = Captures({p.stem: p for p in (folder / "round-02").glob("*.pcap")})
    lines = fault.reached(caps, phone(plan, "1002"), phone(plan, "2005"), log["start"],
                          "call-02")
    assert len(lines) == 1 and "2005 reachable again" in lines[0] and "200 OK" in lines[0]


def test_pbx_restart_media_goes_on_and_bye_follows_record_route(plan: Plan) -> None:
    tl = timeline(plan, "602_fault_pbx1_restart")
    assert tl.what == "pbx-restart" and tl.error is None
    assert all(not g.outage and g.recovery == fault.NONE_NEEDED for g in tl.gaps), tl.gaps
    bye = next(line for line in tl.lines if "sent the BYE" in line)
    assert "pbx1 relayed it" in bye and "reached 2005" in bye and "'200 OK'" in bye
    probes = [line for line in tl.lines if line.startswith("An OPTIONS for 2005")]
    assert len(probes) == 2, tl.lines
    assert "before the kill" in probes[0] and "'200 OK'" in probes[0]
    assert "after the restart" in probes[1] and "'404 Not Found'" in probes[1]
    assert any("had forgotten 2005's registration" in line for line in tl.lines)


def test_coturn_down_stun_unanswered_private_sdp(plan: Plan) -> None:
    tl = timeline(plan, "603_fault_coturn_down")
    assert tl.what == "coturn-down" and tl.gaps == []
    for ext, private in (("1002", "172.16.10.12"), ("2005", "192.168.1.25")):
        line = next(x for x in tl.lines if x.startswith(ext))
        assert "and got 0 answer(s)" in line and f"c={private}" in line, line


def test_missing_and_broken_fault_record(tmp_path: Path) -> None:
    assert fault.load(tmp_path) is None
    (tmp_path / fault.FILE).write_text("{not json")
    with pytest.raises(AnalysisError, match="unreadable fault record"):
        fault.load(tmp_path)
    (tmp_path / fault.FILE).write_text("[]")
    with pytest.raises(AnalysisError, match="not a fault record"):
        fault.load(tmp_path)


def test_fault_never_injected_says_why(plan: Plan) -> None:
    log: dict[str, object] = {"what": "router-reboot", "target": "r1", "start": None,
                              "steps": [], "error": "the round ended before the fault was due"}
    tl = fault.timeline(log, Captures({}), phone(plan, "1002"), phone(plan, "2005"),
                        plan.servers.stun)
    assert tl.gaps == [] and "not injected: the round ended" in tl.lines[0]


def test_timeline_table_row(plan: Plan) -> None:
    tl = timeline(plan, "604_fault_wan_link_down")
    v = Verdict("604_fault_wan_link_down", True, "nat-aware", "works", "works", {}, {}, {}, "",
                fault=json.loads(json.dumps(tl.as_dict())))
    table = rows([v])
    assert table[0][0] == "scenario" and len(table) == 2
    row = table[1]
    assert row[1] == "wan-link-down r1" and row[-1].startswith("[works]")
    assert row[4].startswith(f"{tl.gaps[0].gap_ms:.0f} ms; 1002's ongoing RTP stream")
    assert row[5].startswith(f"{tl.gaps[1].gap_ms:.0f} ms; 2005's ongoing RTP stream")
    md = markdown([v])
    assert md[0] == "## Fault timelines" and any(line.startswith("| 604_fault") for line in md)
    assert markdown([]) == []


@pytest.mark.parametrize("fault_value, message", [
    ('{ what = "meteor" }', "fault.what must be one of"),
    ('{ what = "router-reboot", at_s = 4 }', "needs router = one of r1, r2"),
    ('{ what = "router-reboot", router = "r9", at_s = 4 }', "needs router = one of"),
    ('{ what = "pbx-restart", pbx = "pbx1", router = "r1", at_s = 4 }', "takes no router"),
    ('{ what = "wan-link-down", router = "r1", at_s = 0.2 }', "at_s must be >= 1"),
    ('{ what = "wan-link-down", router = "r1", at_s = 4, down_s = 60 }', "down_s must be"),
    ('{ what = "coturn-down", at_s = 3 }', "before the call: no at_s"),
    ('{ what = "wan-link-down", router = "r1", at_s = 7, down_s = 2 }', "must end before"),
    ('{ what = "router-reboot", router = "r1", at_s = 4, color = 1 }', "unknown key(s) color"),
])
def test_bad_fault_is_one_config_error(plan: Plan, tmp_path: Path, fault_value: str,
                                       message: str) -> None:
    from scenarios.model import load_scenario
    from topology.plan import ConfigError

    path = tmp_path / "699_fault_bad.toml"
    path.write_text(f'kind = "fault"\nstun = true\ntrunk = "nat-aware"\nduration_s = 8\n'
                    f"fault = {fault_value}\n")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_scenario(path, plan)


def test_faults_set_parses(plan: Plan) -> None:
    from scenarios.model import select

    scs = select(plan, "faults")
    assert [sc.spec.what for sc in scs] == ["router-reboot", "pbx-restart", "coturn-down",
                                            "wan-link-down"]
    assert all(sc.kind == "fault" and sc.stun and sc.trunk == "nat-aware" for sc in scs)
