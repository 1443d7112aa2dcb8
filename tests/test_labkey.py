"""The lab guide's answer key, filled from stored real captures (no root): every exercise that
the stored run covers is answered, and every frame and figure it quotes is what tshark reads in
the run's pcaps."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT
from helpers import requires

from natlab import pipeline
from report import labkey

FRAME_REF = re.compile(r"([\w-]+\.pcap) frame (\d+)")


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    rundir = tmp_path_factory.mktemp("lab") / "run"
    shutil.copytree(ROOT / "tests" / "data" / "run", rundir)
    pipeline.report(rundir, pipeline.analyse(rundir))
    return rundir, labkey.write(rundir).read_text()


def test_every_placeholder_is_filled(key: tuple[Path, str]) -> None:
    _, text = key
    assert "{{" not in text
    for exercise in ("## 1.", "## 2.", "## 3.", "## 4.", "## 7."):
        body = text.split(exercise, 1)[1].split("\n## ", 1)[0]
        assert "(not in this run" not in body, exercise  # the stored run covers these
    assert "(not in this run: 102_qos_voice_paperlike)" in text  # and says what it lacks
    assert "INVITE sip:2005@203.0.113.2:5080 leaving r2" in text  # 9: the stored ALG cell


@requires("tshark")
def test_every_quoted_frame_shows_what_the_key_says(key: tuple[Path, str]) -> None:
    rundir, text = key
    checked = 0
    for section in text.split("\n## ")[1:]:
        for line in section.splitlines():
            for pcap, frame in FRAME_REF.findall(line):
                folder = _scenario_folder(rundir, pcap, int(frame), line)
                proto = subprocess.run(
                    ["tshark", "-r", str(folder / pcap), "-Y", f"frame.number=={frame}", "-T",
                     "fields", "-e", "frame.protocols"], capture_output=True, text=True,
                    timeout=60, check=True).stdout.strip()
                assert any(p in proto for p in (":sip", ":rtp", ":stun")), (pcap, frame, proto)
                checked += 1
    assert checked >= 15


def _scenario_folder(rundir: Path, pcap: str, frame: int, line: str) -> Path:
    """The scenario a sentence speaks of: the one whose explanation holds that sentence."""
    import json

    sentence = line[2:] if line.startswith("- ") else line  # a quoted sentence is a bullet
    for s in json.loads((rundir / "summary.json").read_text())["scenarios"]:
        if sentence in s["evidence"]:
            return rundir / s["name"]
    raise AssertionError(f"no scenario explains: {line[:80]}")


@requires("tshark")
def test_rtp_counts_equal_the_phones_captures(key: tuple[Path, str]) -> None:
    rundir, text = key
    m = re.search(r"RTP received by caller / callee: (\d+) /\s+(\d+)", text)
    assert m
    folder = rundir / "005_call_stun_naive"
    for ext, ip, want in (("1002", "172.16.10.12", m[1]), ("2005", "192.168.1.25", m[2])):
        out = subprocess.run(["tshark", "-r", str(folder / f"p{ext}.pcap"), "-Y",
                              f"rtp and not icmp and ip.dst=={ip} and rtp.p_type==0",
                              "-T", "fields",
                              "-e", "frame.number"], capture_output=True, text=True,
                             timeout=60, check=True).stdout.split()
        assert len(out) == int(want), (ext, len(out), want)
