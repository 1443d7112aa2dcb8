"""The load step without root: SIPp's media file, the process labels, and the analysis of a
stored step (tests/data/load/: a real 10-call step, its SIPp CSVs and trimmed captures)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agents.sippload import media_ports, ulaw, write_media
from analysis.load import analyse_step, knee, quantile, read_rtt, read_stat, sipp_directions
from analysis.pcap import read_udp
from analysis.rtp import rtp_streams
from report.load import plot, table
from scenarios.loadstat import label

DATA = Path(__file__).resolve().parent / "data" / "load"


def test_ulaw_matches_g711_reference_points() -> None:
    # G.711 mu-law: 0 -> 0xFF, the largest positive -> 0x80, the largest negative -> 0x00
    assert ulaw(0) == 0xFF
    assert ulaw(32767) == 0x80
    assert ulaw(-32768) == 0x00
    assert ulaw(-1) == 0x7F


def test_media_file_is_one_clean_pcmu_stream(tmp_path: Path) -> None:
    n = write_media(tmp_path / "media.pcap", 2.0)
    streams = rtp_streams(read_udp(tmp_path / "media.pcap"))
    assert n == 100 and len(streams) == 1
    st = streams[0]
    assert (st.packets, st.lost, st.payload_type) == (100, 0, 0)
    assert st.max_jitter_ms == 0.0


def test_auto_media_port_stride() -> None:
    assert media_ports(3) == [20000, 20004, 20008]
    assert media_ports(2501)[-1] == 20000  # SIPp wraps at 10000


def test_quantile_interpolates_like_numpy() -> None:
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert quantile([5.0], 0.05) == 5.0
    assert quantile([], 0.5) is None


def test_process_labels() -> None:
    folder = "/r/run/701_load_10"
    assert label(["kamailio", "-f", f"{folder}/pbx1/kamailio.cfg", "-DD"], folder) == \
        "kamailio pbx1"
    assert label(["sipp", "x", "-sf", "/repo/agents/sipp/uac.xml", "-stf",
                  f"{folder}/sipp/uac/stat.csv"], folder) == "sipp uac"
    assert label(["/v/bin/python3", "-m", "agents.sipagent", "--ext", "1002", "--workdir",
                  f"{folder}/phones"], folder) == "pjsua2 1002"
    assert label(["tcpdump", "-i", "p2900-eth0", "-w", f"{folder}/p2900.pcap"], folder) == \
        "tcpdump p2900-eth0"
    assert label(["kamailio", "-f", "/elsewhere/kamailio.cfg"], folder) is None


needs_data = pytest.mark.skipif(not (DATA / "step.json").exists(), reason="no stored step")


@needs_data
def test_sipp_csv_files() -> None:
    stat = read_stat(DATA / "sipp" / "uac" / "stat.csv")
    assert int(stat["TotalCallCreated"]) == 10
    assert int(stat["SuccessfulCall(C)"]) == 10
    rtt = read_rtt(next((DATA / "sipp" / "uac").glob("*_rtt.csv")))
    assert len(rtt) == 10 and all(0 < t < 1000 for t in rtt)


@needs_data
def test_stored_step_passes_with_every_call_and_direction(tmp_path: Path) -> None:
    res = analyse_step(DATA)
    assert (res.calls, res.attempted, res.established, res.completed) == (10, 10, 10, 10)
    assert res.missing == 0
    assert res.directions == 2 * 10 + 2 * len(json.loads((DATA / "step.json").read_text())
                                              ["phones"])
    assert res.loss_pct["max"] == 0.0
    assert res.mos["p5"] is not None and res.mos["p5"] >= 4.3
    assert res.passed and not res.reasons
    assert any(k.startswith("kamailio") for k in res.cpu_s)
    assert res.setup_ms["median"] is not None and res.setup_ms["median"] > 0
    rows = [res.row()]
    assert knee(rows) == 10
    assert any(line.startswith("| load | 10 | clean | 10 | 10 | 10 |") for line in table(rows))
    assert plot(rows, tmp_path / "load.png").stat().st_size > 1000


@needs_data
def test_a_lost_direction_fails_the_step(tmp_path: Path) -> None:
    step = tmp_path / "701_load_10"
    shutil.copytree(DATA, step)
    uas = json.loads((step / "step.json").read_text())["sipp"]["uas"]["ext"]
    (step / f"p{uas}.pcap").unlink()  # the callee's capture is gone: no RTP measured there
    res = analyse_step(step)
    assert not res.passed
    assert res.missing == 10
    assert res.loss_pct["max"] == 100.0


@needs_data
def test_directions_match_the_senders_stream_by_ports() -> None:
    step = json.loads((DATA / "step.json").read_text())
    a, b = step["sipp"]["uac"], step["sipp"]["uas"]
    got = sipp_directions("uac", read_udp(DATA / f"p{a['ext']}.pcap"),
                          read_udp(DATA / f"p{b['ext']}.pcap"), a["ip"], b["ip"])
    assert len(got) == 10
    assert all(s.owd_ms is not None and 0 < s.owd_ms < 50 for s in got)
    assert len({s.dst for s in got}) == 10  # one port per call
