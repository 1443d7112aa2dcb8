"""The lab guide's answer key, filled from stored real captures (no root): every exercise that
the stored run covers is answered, and every frame and figure it quotes is what tshark reads in
the run's pcaps."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import ROOT
from helpers import requires

from natlab import pipeline
from report import labkey

# tshark reads $HOME/.config/wireshark; as nobody with root's HOME it crashes
TSHARK_ENV = {**os.environ, "HOME": tempfile.gettempdir()}
FRAME_REF = re.compile(r"([\w-]+\.pcap) frame (\d+)")
SIP_WORDS = ("INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "200 OK", "404", "180 Ringing")
PORT = re.compile(r"\bport (\d+)")
ADDR = re.compile(r"(?<![\d.])\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\d.])")


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
    assert "ACK: r2-wan -> nowhere, 198.51.100.2:5060 > 192.168.1.10:5060" in text  # 2: ladder


@requires("tshark")
def test_every_quoted_frame_shows_what_the_key_says(key: tuple[Path, str]) -> None:
    """Each "X.pcap frame N" of the key is a SIP, RTP or STUN packet that carries (in its IP
    header or its SIP/SDP text, as tshark decodes it) an address the same sentence names, or
    for a sentence without addresses a SIP method or status it names."""
    rundir, text = key
    checked = 0
    for section in text.split("\n## ")[1:]:
        for line in _sentences(section):
            for pcap, frame in FRAME_REF.findall(line):
                folder = _scenario_folder(rundir, line)
                decoded = subprocess.run(
                    ["tshark", "-r", str(folder / pcap), "-Y", f"frame.number=={frame}", "-V"],
                    capture_output=True, text=True, timeout=60, check=True, env=TSHARK_ENV).stdout
                proto = re.search(r"\[Protocols in frame: ([^\]]+)\]", decoded)
                assert proto and any(p in proto[1] for p in (":sip", ":rtp", ":stun")), \
                    (pcap, frame)
                named = set(ADDR.findall(line)) | {f"Port: {n}" for n in PORT.findall(line)} \
                    or {w for w in SIP_WORDS if w in line}
                assert named and any(a in decoded for a in named), (pcap, frame, line[:100])
                checked += 1
    assert checked >= 25


def _sentences(section: str) -> list[str]:
    """The key's bullets, a bullet's continuation lines joined to it."""
    out: list[str] = []
    for line in section.splitlines():
        if line.startswith("  ") and out:
            out[-1] += " " + line.strip()
        else:
            out.append(line)
    return out


def _scenario_folder(rundir: Path, line: str) -> Path:
    """The scenario a sentence speaks of: the one whose explanation or ladder holds it."""
    import json

    for s in json.loads((rundir / "summary.json").read_text())["scenarios"]:
        quoted = s["evidence"] + labkey.ladder_sentences(rundir, s["name"])
        if any(q in line for q in quoted):
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
                             timeout=60, check=True, env=TSHARK_ENV).stdout.split()
        assert len(out) == int(want), (ext, len(out), want)
