"""The pipeline's shape, without root: kinds in one table, bad input is one line and exit 2
before anything starts, exit codes by error class."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, requires_root

from natlab.errors import AnalysisError, InputError, NatlabError, RunFailure
from natlab.preflight import TOOLS
from scenarios.kinds import KINDS
from scenarios.model import available_sets, select
from topology.plan import ConfigError, Plan


def natlab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "natlab", *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)


def test_every_scenario_file_parses_to_a_registered_kind(plan: Plan) -> None:
    names = [sc for s in available_sets() for sc in select(plan, s)]
    assert len(names) >= 22
    assert {sc.kind for sc in names} == set(KINDS)


def test_no_if_chain_on_kind_outside_the_kinds() -> None:
    names = "|".join(map(re.escape, KINDS))
    pattern = re.compile(rf"""\bkind\s*(==|!=)\s*["']({names})["']""")
    for pkg in ("natlab", "scenarios", "analysis", "report", "capture", "topology", "services"):
        for path in (ROOT / pkg).glob("**/*.py"):
            if "kinds" in path.parts:
                continue
            text = path.read_text()
            assert not pattern.search(text), f"{path.relative_to(ROOT)} branches on a kind"


@pytest.mark.parametrize(("body", "message"), [
    ('kind = "nope"\nstun = true\ntrunk = "nat-aware"', "kind must be one of"),
    ('stun = true\ntrunk = "sideways"', "trunk must be one of"),
    ('kind = "video"\nstun = true\ntrunk = "nat-aware"', "video needs baresip"),
    ('kind = "ring-group"\nstun = true\ntrunk = "nat-aware"\ngroup = { ext = "2000", '
     'members = ["2001"] }', "two or more phones"),
])
def test_bad_scenario_is_one_line_exit_2(tmp_path: Path, body: str, message: str) -> None:
    bad = tmp_path / "900_bad.toml"
    bad.write_text(body + "\n")
    res = natlab("run", "--scenario", str(bad), "--results", str(tmp_path / "results"))
    assert res.returncode == 2
    assert res.stderr.startswith("natlab: error: ") and message in res.stderr, res.stderr
    assert res.stderr.count("\n") == 1
    assert not (tmp_path / "results").exists()  # nothing started, nothing written


def test_report_on_a_folder_that_is_no_run(tmp_path: Path) -> None:
    res = natlab("report", str(tmp_path))
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "is not a natlab run folder" in res.stderr


def test_exit_codes_by_error_class() -> None:
    assert issubclass(ConfigError, InputError) and InputError.exit_code == 2
    assert RunFailure.exit_code == 1 and AnalysisError.exit_code == 1
    assert all(issubclass(c, NatlabError) for c in (InputError, RunFailure, AnalysisError))
    assert not issubclass(ConfigError, ValueError)  # a ValueError deep down is not "input"


def test_cli_banner_uses_the_plan(plan: Plan, tmp_path: Path) -> None:
    from natlab.cli import banner

    text = banner(plan, "/venv/python", tmp_path, {plan.call.callee: "secret-pw-1"})
    callee = plan.call.callee
    assert f"--bind {plan.lan_of(callee).phones[callee]}" in text
    assert f"stun ping -c1 {plan.lan_of(callee).wan_ip}" in text
    assert "--password secret-pw-1" in text


@pytest.mark.parametrize(("body", "message"), [
    ('nat = { lan1 = "sideways-cone" }\nremedy = "stun"', "nat.lan1"),
    ('remedy = "magic"', "remedy must be one of"),
    ('remedy = "stun"\nstun = true', "give one or the other"),
    ('nat = { lan3 = "symmetric" }\nremedy = "stun"', "unknown LAN"),
])
def test_bad_nat_scenario_is_one_line_exit_2(tmp_path: Path, body: str, message: str) -> None:
    bad = tmp_path / "901_bad.toml"
    bad.write_text(body + "\n")
    res = natlab("run", "--scenario", str(bad), "--results", str(tmp_path / "results"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert message in res.stderr, res.stderr
    assert not (tmp_path / "results").exists()


@requires_root
def test_remedy_needing_a_missing_daemon_is_refused(tmp_path: Path) -> None:
    """rtpengine hidden from PATH: the anchor cell is refused before anything starts."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in {*TOOLS, "turnutils_natdiscovery", "nft", "turnserver"}:
        found = shutil.which(name)
        if found:
            (bin_dir / name).symlink_to(found)
    env = {**os.environ, "PATH": str(bin_dir)}
    res = subprocess.run([sys.executable, "-m", "natlab", "run", "--scenario",
                          "334_portrestricted_anchor", "--results", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "334_portrestricted_anchor needs rtpengine" in res.stderr
    assert not (tmp_path / "r").exists()
