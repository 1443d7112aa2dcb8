"""report.html as a browser shows it: headless Chromium loads it from the run folder (stored
real captures, no root), every image loads, no console errors, a summary row per scenario."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT
from helpers import requires

from natlab import pipeline

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--allow-file-access-from-files"]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rundir = tmp_path_factory.mktemp("html") / "run"
    shutil.copytree(ROOT / "tests" / "data" / "run", rundir)
    pipeline.report(rundir, pipeline.analyse(rundir))
    return rundir / "report.html"


def chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chromium", *FLAGS, f"--user-data-dir={profile}", *extra,
                           page.as_uri()], capture_output=True, text=True, timeout=120)


@requires("chromium")
def test_page_loads_every_image_without_console_errors(page: Path, tmp_path: Path) -> None:
    res = chromium(page, tmp_path / "profile", "--enable-logging=stderr", "--v=0",
                   "--virtual-time-budget=10000", "--dump-dom")
    assert res.returncode == 0, res.stderr[-2000:]
    m = re.search(r'data-images="(\d+) loaded (\d+)"', res.stdout)
    assert m, "the page's load handler did not run"
    images = page.read_text().count("<img ")
    assert int(m[1]) == images >= 13 + 8 and m[2] == m[1], m[0]  # 13 ladders + QoS figures
    console = [line for line in res.stderr.splitlines() if "CONSOLE" in line]
    assert console == []
    rows = re.findall(r'<tr><td><a href="#([\w-]+)">', res.stdout)
    assert len(rows) == len(set(rows)) == 13


@requires("chromium")
def test_screenshot_on_a_laptop_screen(page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    res = chromium(page, tmp_path / "profile", "--window-size=1366,900",
                   f"--screenshot={shot}", "--hide-scrollbars")
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_frame_references_link_to_the_captures(page: Path) -> None:
    text = page.read_text()
    links = re.findall(r'<a class="frame" href="([^"]+)"', text)
    assert len(links) >= 40
    for href in links:
        assert (page.parent / href).is_file(), href
    for img in re.findall(r'<img src="([^"]+)"', text):
        assert (page.parent / img).is_file(), img


def test_first_screen_is_the_verdict_table(page: Path) -> None:
    """What a student sees first: the run's name, a one-line count, then the verdict table with
    what each scenario does (the plan's phones) and its WAN profile; details come later."""
    text = page.read_text()
    body = text.split("<body>", 1)[1]
    heads = re.findall(r"<h2[^>]*>([^<]+)", body)
    assert heads[0] == "Verdicts" and heads.index("The network") > 0
    assert body.index('<table id="summary">') < body.index("<pre>") < body.index("About this run")
    assert re.search(r"13 scenario\(s\): 5 work, 8 fail; 12 as the paper predicts", body)
    row = re.search(r'<tr><td><a href="#006_call_stun_nataware">.*?</tr>', body)
    assert row and "1002 -&gt; 2005, STUN, NAT-aware trunk" in row[0] and "<td>clean</td>" in row[0]
