"""Config and scenario validation: one clear line, exit code 2, nothing started."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, assert_nothing_left, requires, requires_root

from scenarios.model import select
from topology.plan import DEFAULT_PLAN, ConfigError, Plan, load_plan

BASE = DEFAULT_PLAN.read_text()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("old,new,message", [
    ('subnet = "172.16.10.0/24"', 'subnet = "192.168.1.0/24"', "overlap"),
    ('"1002" = "172.16.10.12"', '"2002" = "172.16.10.12"', "does not belong to lan2"),
    ('wan_subnet = "203.0.113.0/24"', 'wan_subnet = "8.8.8.0/24"', "documentation ranges"),
    ('stun = "192.0.2.10"', 'stun = "198.51.100.10"', "not a host address of 192.0.2.0/24"),
    ('pbx = "192.168.1.10"', 'pbx = "192.168.1.21"', "share an address"),
    ('subnet = "192.168.1.0/24"', 'subnet = "8.8.4.0/24"', "not a private"),
    ('callee = "2005"', 'callee = "2999"', "not a phone"),
    ('duration_s = 4.0', 'duration_s = 999', "within 1..60"),
])
def test_invalid_plans(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in BASE
    with pytest.raises(ConfigError, match=message) as err:
        load_plan(_write(tmp_path, BASE.replace(old, new, 1)))
    assert "\n" not in str(err.value)


def test_default_plan_and_scenarios_are_valid(plan: Plan) -> None:
    scenarios = select(plan, "default")
    assert [(s.stun, s.trunk) for s in scenarios] == [
        (stun, trunk) for stun in (False, True) for trunk in ("none", "naive", "nat-aware")]


def test_unknown_scenario(plan: Plan) -> None:
    with pytest.raises(ConfigError, match="unknown scenario 'nope'"):
        select(plan, names=["nope"])


def test_bad_scenario_file(plan: Plan, tmp_path: Path) -> None:
    path = tmp_path / "900_call_bad.toml"
    path.write_text('stun = true\ntrunk = "sideways"\n')
    with pytest.raises(ConfigError, match="trunk must be one of"):
        select(plan, names=[str(path)])


def _natlab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "natlab", *args], capture_output=True,
                          text=True, timeout=60)


def test_cli_bad_config_one_line_nothing_started(tmp_path: Path) -> None:
    bad = _write(tmp_path, BASE.replace('"1002" = "172.16.10.12"', '"2002" = "172.16.10.12"'))
    res = _natlab("--config", str(bad), "run", "--results", str(tmp_path / "results"))
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "does not belong to lan2" in res.stderr
    assert not (tmp_path / "results").exists()
    assert_nothing_left(["1002", "1005", "2001", "2005"])


def test_cli_unknown_scenario(tmp_path: Path) -> None:
    res = _natlab("run", "--scenario", "999_nope", "--results", str(tmp_path / "r"))
    assert res.returncode == 2 and res.stderr.strip().startswith("natlab: error: unknown scenario")
    assert res.stderr.count("\n") == 1


def test_cli_check_and_list() -> None:
    res = _natlab("check")
    assert res.returncode == 0 and "valid" in res.stdout
    res = _natlab("list")
    assert res.returncode == 0 and "006_call_stun_nataware" in res.stdout


def _as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           *argv], capture_output=True, text=True, timeout=60, cwd=REPO)


@requires_root  # to switch to nobody
@requires("setpriv")
def test_not_root_one_line_nothing_started(tmp_path: Path) -> None:
    # the precondition is checked by itself, so a broken import below fails instead of skipping
    readable = _as_nobody("sh", "-c", 'test -r "$1" && test -x "$2"', "-",
                          str(REPO / "natlab" / "cli.py"), sys.executable)
    if readable.returncode != 0:
        pytest.skip("the checkout or the interpreter is not readable by nobody")
    res = _as_nobody(sys.executable, "-m", "natlab", "run", "--scenario",
                     "006_call_stun_nataware", "--results", str(tmp_path / "r"))
    assert res.returncode == 2, res.stderr
    assert res.stderr == "natlab: error: natlab needs root (network namespaces, bridges): " \
                         "run it with sudo\n"
    assert not (tmp_path / "r").exists()
