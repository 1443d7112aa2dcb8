"""Verdicts, explanations and QoS judged on stored real captures (tests/data/run), no root.

tests/data/run is a real run folder, trimmed to what analysis reads (pcaps, agent reports,
recordings, scenario.json, config and scenario copies): the six STUN x trunk cells, a ring
group, a conference, a failing and a working video call. Every frame an explanation cites is
checked independently with tshark: it must show what the sentence says.
"""
from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from helpers import requires

from natlab import pipeline

DATA = ROOT / "tests" / "data" / "run"
FRAME_REF = re.compile(r"([\w-]+\.pcap) frame (\d+)")


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    rundir = tmp_path_factory.mktemp("stored") / "run"
    shutil.copytree(DATA, rundir)
    analysis = pipeline.analyse(rundir)
    pipeline.report(rundir, analysis)
    summary = json.loads((rundir / "summary.json").read_text())
    yield {"dir": rundir, "by_name": {s["name"]: s for s in summary["scenarios"]},
           "summary": summary}


def tshark_frame(pcap: Path, frame: int, *fields: str) -> list[str]:
    """The named fields of one frame, as tshark decodes it (SDP sets up RTP conversations)."""
    res = subprocess.run(["tshark", "-r", str(pcap), "-Y", f"frame.number=={frame}", "-T",
                          "fields", *(x for f in fields for x in ("-e", f))],
                         capture_output=True, text=True, timeout=60, check=True)
    lines = res.stdout.splitlines()
    assert len(lines) == 1, f"{pcap.name} has no frame {frame}"
    return lines[0].split("\t")


def test_only_stun_plus_nat_aware_works(stored: dict[str, Any]) -> None:
    cells = {(s["stun"], s["trunk"]): s["verdict"] for s in stored["summary"]["scenarios"]
             if s["name"].startswith("00")}
    assert cells == {(stun, trunk): "works" if (stun, trunk) == (True, "nat-aware") else "fails"
                     for stun in (False, True) for trunk in ("none", "naive", "nat-aware")}
    for name in ("211_ringgroup_parallel", "221_conference_3party",
                 "203_video_short_stun_nataware", "311_fullcone_stun"):
        assert stored["by_name"][name]["verdict"] == "works", stored["by_name"][name]
    assert stored["by_name"]["202_video_nostun_nataware"]["verdict"] == "fails"


@requires("tshark")
def test_every_cited_frame_is_sip_or_rtp(stored: dict[str, Any]) -> None:
    cited: dict[Path, set[int]] = {}
    for name, s in stored["by_name"].items():
        for pcap, frame in FRAME_REF.findall(s["explanation"]):
            cited.setdefault(stored["dir"] / name / pcap, set()).add(int(frame))
    assert sum(len(v) for v in cited.values()) >= 40
    for pcap, frames in cited.items():
        res = subprocess.run(["tshark", "-r", str(pcap), "-Y",
                              " || ".join(f"frame.number=={f}" for f in sorted(frames)),
                              "-T", "fields", "-e", "frame.number", "-e", "frame.protocols"],
                             capture_output=True, text=True, timeout=60, check=True)
        seen = dict(line.split("\t") for line in res.stdout.splitlines())
        for frame in frames:
            proto = seen.get(str(frame), "missing")
            assert any(p in proto for p in (":sip", ":rtp", ":stun")), (pcap, frame, proto)


def _ref(text: str, before: str) -> tuple[str, int]:
    """The first frame reference after `before` in an explanation."""
    m = FRAME_REF.search(text, text.index(before))
    assert m, before
    return m.group(1), int(m.group(2))


@requires("tshark")
@pytest.mark.parametrize("name", ["001_call_nostun_none", "004_call_stun_none"])
def test_no_trunk_404_frame(stored: dict[str, Any], name: str) -> None:
    s = stored["by_name"][name]
    assert "never left LAN2" in s["explanation"]
    pcap, frame = _ref(s["explanation"], "answered the INVITE with '404")
    status, src = tshark_frame(stored["dir"] / name / pcap, frame, "sip.Status-Code", "ip.src")
    assert (status, src) == ("404", "172.16.10.10")


@requires("tshark")
@pytest.mark.parametrize("name", ["002_call_nostun_naive", "005_call_stun_naive"])
def test_naive_trunk_ack_frame_and_record_route(stored: dict[str, Any], name: str) -> None:
    s = stored["by_name"][name]
    assert not s["checks"]["callee_confirmed"] and s["checks"]["invite_200"]
    pcap, frame = _ref(s["explanation"], "the ACK left toward")
    method, dst = tshark_frame(stored["dir"] / name / pcap, frame, "sip.Method", "ip.dst")
    assert (method, dst) == ("ACK", "192.168.1.10")
    pcap, frame = _ref(s["explanation"], "taken from the Record-Route")
    rr = tshark_frame(stored["dir"] / name / pcap, frame, "sip.Record-Route")[0]
    assert "<sip:192.168.1.10;lr" in rr
    copies = re.search(r"retransmitting its 200 OK: (\d+) copies", s["explanation"])
    assert copies and int(copies[1]) > 1


@requires("tshark")
def test_no_stun_rtp_sent_nowhere(stored: dict[str, Any]) -> None:
    s = stored["by_name"]["003_call_nostun_nataware"]
    assert s["checks"]["callee_confirmed"] and s["rtp_received"] == {"caller": 0, "callee": 0}
    pcap, frame = _ref(s["explanation"], "offers c=192.168.1.25")
    addr = tshark_frame(stored["dir"] / s["name"] / pcap, frame,
                        "sdp.connection_info.address")[0]
    assert "192.168.1.25" in addr
    m = re.search(r"r2-wan\.pcap has (\d+) RTP packets to 192\.168\.1\.25, first r2-wan\.pcap "
                  r"frame (\d+)", s["explanation"])
    assert m and int(m[1]) >= 0.9 * s["rtp_sent"]["caller"]
    dst, pt = tshark_frame(stored["dir"] / s["name"] / "r2-wan.pcap", int(m[2]), "ip.dst",
                           "rtp.p_type")
    assert (dst, pt) == ("192.168.1.25", "0")


@requires("tshark")
def test_ring_group_cancel_frames(stored: dict[str, Any]) -> None:
    s = stored["by_name"]["211_ringgroup_parallel"]
    assert "2001 answered first" in s["explanation"]
    pcap, frame = _ref(s["explanation"], "got CANCEL from PBX1")
    method, dst = tshark_frame(stored["dir"] / s["name"] / pcap, frame, "sip.Method", "ip.dst")
    assert (method, dst) == ("CANCEL", "192.168.1.25")
    pcap, frame = _ref(s["explanation"], "answered 487")
    status = tshark_frame(stored["dir"] / s["name"] / pcap, frame, "sip.Status-Code")[0]
    assert status == "487"


def test_conference_hears_the_others(stored: dict[str, Any]) -> None:
    s = stored["by_name"]["221_conference_3party"]
    assert all(s["checks"].values())
    for part in s["calls"]:
        assert all(db > -10.0 for db in part["heard_db"].values()), part
    assert "offered its private address 192.168.1.10" in s["explanation"]


@requires("tshark")
def test_video_frames_carry_the_negotiated_payload_type(stored: dict[str, Any]) -> None:
    works = stored["by_name"]["203_video_short_stun_nataware"]
    pcap, frame = _ref(works["explanation"], "Video 1002 -> 2005")
    dst, pt = tshark_frame(stored["dir"] / works["name"] / pcap, frame, "ip.dst", "rtp.p_type")
    assert (dst, pt) == ("192.168.1.25", "96")
    fails = stored["by_name"]["202_video_nostun_nataware"]
    assert "VP8 packets leaving toward the private address 192.168.1.25" in fails["explanation"]


@requires("tshark")
def test_qos_rows_equal_tshark_on_the_receiver_capture(stored: dict[str, Any]) -> None:
    qos = json.loads((stored["dir"] / "qos.json").read_text())
    checked = 0
    for sc in qos["scenarios"]:
        for row in sc["rows"]:
            pcap = "pbx1.pcap" if row["receiver"] == "bridge" else f"p{row['receiver']}.pcap"
            streams = tshark_streams(stored["dir"] / sc["name"] / pcap)
            match = [st for st in streams if st["packets"] == row["packets"]
                     and st["lost"] == row["lost"]]
            assert match, (sc["name"], row["call"], row["sender"], row["receiver"], streams)
            assert any(abs(st["mean_jitter"] - row["mean_jitter_ms"]) < 0.0015
                       and abs(st["max_jitter"] - row["max_jitter_ms"]) < 0.0015
                       for st in match), (row, match)
            checked += 1
    assert checked >= 8


STREAM_LINE = re.compile(
    r"^\s*[\d.]+\s+[\d.]+\s+(?P<src>\S+)\s+\d+\s+(?P<dst>\S+)\s+\d+\s+0x[0-9A-Fa-f]+\s+\S+"
    r"\s+(?P<packets>\d+)\s+(?P<lost>-?\d+)\s+\([-\d.]+%\)(?:\s+[\d.]+){4}"
    r"\s+(?P<mean_jitter>[\d.]+)\s+(?P<max_jitter>[\d.]+)")


def tshark_streams(pcap: Path) -> list[dict[str, Any]]:
    """`tshark -z rtp,streams` of a capture: packets, lost, mean and max jitter per stream."""
    res = subprocess.run(["tshark", "-q", "-r", str(pcap), "--enable-heuristic", "rtp_udp",
                          "-z", "rtp,streams"], capture_output=True, text=True, timeout=60,
                         check=True)
    return [{"packets": int(m["packets"]), "lost": int(m["lost"]),
             "mean_jitter": float(m["mean_jitter"]), "max_jitter": float(m["max_jitter"])}
            for m in map(STREAM_LINE.match, res.stdout.splitlines()) if m]


@requires("tshark")
def test_symmetric_nat_stun_mapping_against_the_port_used(stored: dict[str, Any]) -> None:
    """The NAT lesson of 341: STUN promised one public port, the router used another toward
    the peer; both frames say so when tshark reads them."""
    s = stored["by_name"]["341_symmetric_stun"]
    assert s["nat"]["state"] == "fails" and s["nat"]["path"] == "direct"
    assert "measured APDM/APDF (symmetric)" in s["explanation"]
    m = re.search(r"1002's STUN answer gave 198\.51\.100\.2:(\d+) for its RTP port 4000 "
                  r"\(p1002\.pcap frame (\d+)\); toward the peer r2 used 198\.51\.100\.2:(\d+) "
                  r"\(r2-wan\.pcap frame (\d+)\): ANOTHER mapping", s["explanation"])
    assert m and m[1] != m[3]
    folder = stored["dir"] / s["name"]
    ports = tshark_frame(folder / "p1002.pcap", int(m[2]), "stun.att.port")[0]
    assert ports.split(",")[0] == m[1]  # XOR-MAPPED-ADDRESS first, as tshark decodes it
    sport = tshark_frame(folder / "r2-wan.pcap", int(m[4]), "udp.srcport")[0]
    assert sport == m[3]
    nat = json.loads((folder / "nat.json").read_text())
    ct = [e for e in nat["routers"]["lan2"]["conntrack"] if e["orig"]["sport"] == 4000
          and e["orig"]["dst"] == "203.0.113.2"]
    assert ct and str(ct[0]["reply"]["dport"]) == m[3]


@requires("tshark")
def test_alg_rewrites_the_header_not_the_forwarded_sdp(stored: dict[str, Any]) -> None:
    """335: the routers' SIP ALG is on, yet the INVITE PBX2 forwards leaves r2 with 1002's
    private address in its SDP: the header's source is rewritten, the payload is not."""
    s = stored["by_name"]["335_portrestricted_alg"]
    m = re.search(r"INVITE sip:2005@203\.0\.113\.2:5080 leaving r2 \(r2-lan\.pcap frame (\d+) "
                  r"-> r2-wan\.pcap frame (\d+)\): payload unchanged\. Still private: (.+?)\. ",
                  s["explanation"])
    assert m and "c= 172.16.10.12" in m[3], s["explanation"]
    folder = stored["dir"] / s["name"]
    inside = tshark_frame(folder / "r2-lan.pcap", int(m[1]), "ip.src",
                          "sdp.connection_info.address")
    outside = tshark_frame(folder / "r2-wan.pcap", int(m[2]), "ip.src",
                           "sdp.connection_info.address")
    assert inside == ["172.16.10.10", "172.16.10.12"] and outside[0] == "198.51.100.2"
    assert outside[1] == "172.16.10.12"
    assert "SIP helper parameters (host-wide)" in s["explanation"]


def test_nat_types_configured_and_measured_in_the_report(stored: dict[str, Any]) -> None:
    md = (stored["dir"] / "report.md").read_text()
    assert "| 341_symmetric_stun | symmetric | APDM/APDF (symmetric) |" in md
    assert "[fails 0/0, direct](#341_symmetric_stun)" in md


def test_moved_run_folder_reports_byte_for_byte(stored: dict[str, Any], tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(DATA, moved)
    pipeline.report(moved, pipeline.analyse(moved))
    for name in ("summary.json", "qos.json", "report.md"):
        assert (moved / name).read_bytes() == (stored["dir"] / name).read_bytes(), name


def test_one_broken_scenario_does_not_lose_the_others(tmp_path: Path) -> None:
    rundir = tmp_path / "run"
    shutil.copytree(DATA, rundir)
    (rundir / "003_call_nostun_nataware" / "r2-wan.pcap").write_bytes(b"not a pcap at all" * 4)
    by_name = {v.name: v for v in pipeline.analyse(rundir).verdicts}
    broken = by_name["003_call_nostun_nataware"]
    assert broken.verdict == "error" and "r2-wan.pcap" in broken.explanation
    assert len(broken.explanation.splitlines()) == 1
    assert by_name["006_call_stun_nataware"].verdict == "works"
    assert len(by_name) == len(json.loads((DATA / "run.json").read_text())["scenarios"])


def test_interrupted_run_is_marked(tmp_path: Path) -> None:
    rundir = tmp_path / "run"
    shutil.copytree(DATA, rundir)
    meta = json.loads((rundir / "run.json").read_text())
    meta.update(complete=False, interrupted=True)
    (rundir / "run.json").write_text(json.dumps(meta))
    shutil.rmtree(rundir / "221_conference_3party")  # not reached
    pipeline.report(rundir, pipeline.analyse(rundir))
    summary = json.loads((rundir / "summary.json").read_text())
    ran = json.loads((DATA / "run.json").read_text())["scenarios"]
    assert summary["interrupted"] is True and len(summary["scenarios"]) == len(ran) - 1
    assert "**Interrupted:**" in (rundir / "report.md").read_text()


def test_analysis_imports_no_runtime_code() -> None:
    """analysis/ is pure: a run folder in, verdicts out (topology.plan is data, not runtime)."""
    allowed = {"topology.plan", "natlab.errors", "natlab.constants"}
    for path in sorted((ROOT / "analysis").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for mod in names:
                top = mod.split(".")[0]
                if top in ("scenarios", "agents", "services", "topology", "natlab", "capture",
                           "impair", "report"):
                    assert mod in allowed, f"{path.name} imports {mod}"
