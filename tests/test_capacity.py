"""Scenarios above the WAN shaper's measured ceiling are refused: one line, exit 2, nothing
started (impair.capacity; the ceiling comes from bench/shaper.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

from impair.apply import has_netem
from impair.capacity import CEILING_PPS, PPS_PER_CALL, ceiling_pps, over_ceiling

SHAPED = {"delay_ms": 10.0, "jitter_ms": 2.0}
SCENARIO = """description = "two concurrent calls over the paper-like WAN"
stun = true
trunk = "nat-aware"
wan = "paper-like"
calls = 2
pairs = [["2001", "1002"], ["2005", "1005"]]
"""


def _ceiling_file(tmp_path: Path, pps: int) -> Path:
    path = tmp_path / "shaper.json"
    path.write_text(json.dumps({"ceiling_pps": pps}))
    return path


def test_ceiling_source(tmp_path: Path) -> None:
    assert ceiling_pps(_ceiling_file(tmp_path, 1234)) == (1234, str(tmp_path / "shaper.json"))
    assert ceiling_pps(tmp_path / "absent.json")[0] == CEILING_PPS
    (tmp_path / "bad.json").write_text("{")
    assert ceiling_pps(tmp_path / "bad.json")[0] == CEILING_PPS


def test_over_ceiling_only_through_the_shaper(tmp_path: Path) -> None:
    path = _ceiling_file(tmp_path, 10 * PPS_PER_CALL)
    assert over_ceiling(10, SHAPED, netem=False, path=path) is None
    why = over_ceiling(11, SHAPED, netem=False, path=path)
    assert why is not None and "550 packets/s" in why and "(10 calls" in why
    assert over_ceiling(11, SHAPED, netem=True, path=path) is None  # netem: no shaper
    assert over_ceiling(11, {"loss_pct": 2.0}, netem=False, path=path) is None  # kernel rule
    assert over_ceiling(11, {"loss_pct": 2.0, "loss_burst": 3.0}, netem=False,
                        path=path) is not None  # bursty loss runs in the shaper


def test_cli_refuses_scenario_above_ceiling(tmp_path: Path) -> None:
    if os.geteuid() == 0 and has_netem():
        pytest.skip("this kernel has netem: the shaper is not used")
    scenario = tmp_path / "950_call_concurrent_shaped.toml"
    scenario.write_text(SCENARIO)
    results = tmp_path / "results"
    env = dict(os.environ, NATLAB_SHAPER_RESULT=str(_ceiling_file(tmp_path, PPS_PER_CALL)))
    res = subprocess.run([sys.executable, "-m", "natlab", "run", "--scenario", str(scenario),
                          "--results", str(results)], capture_output=True, text=True,
                         timeout=60, env=env, cwd=REPO)
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1
    assert "2 concurrent calls need 100 packets/s through the WAN shaper" in res.stderr
    assert not results.exists()
    # the shipped scenarios need 10 calls at once (the paper's calls, run concurrently)
    env["NATLAB_SHAPER_RESULT"] = str(_ceiling_file(tmp_path, 10 * PPS_PER_CALL))
    res = subprocess.run([sys.executable, "-m", "natlab", "check"], capture_output=True,
                         text=True, timeout=60, env=env, cwd=REPO)
    assert res.returncode == 0, res.stderr


def test_load_steps_above_the_ceiling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed load step over a shaped WAN is refused when its file is read; the knee step
    (its count known only at run time) runs at the most calls the shaper keeps on time."""
    from scenarios.kinds.load import _within_shaper
    from scenarios.model import load_scenario
    from topology.plan import ConfigError, load_plan

    if os.geteuid() == 0 and has_netem():
        pytest.skip("this kernel has netem: the shaper is not used")
    monkeypatch.setenv("NATLAB_SHAPER_RESULT", str(_ceiling_file(tmp_path, 100 * PPS_PER_CALL)))
    plan = load_plan()
    step = tmp_path / "790_load_shaped.toml"
    step.write_text('kind = "load"\nload = 150\nstun = true\ntrunk = "nat-aware"\n'
                    'duration_s = 10\nwan = "paper-like"\n')
    with pytest.raises(ConfigError, match="152 concurrent calls need 7600 packets/s"):
        load_scenario(step, plan)  # 150 SIPp calls + the 2 phones' calls
    knee = load_scenario(REPO / "scenarios" / "load" / "710_load_knee_paperlike.toml", plan)
    assert _within_shaper(90, knee.spec, SHAPED) == (90, None)
    most, why = _within_shaper(200, knee.spec, SHAPED)
    assert most == 100 - len(knee.spec.phone_pairs) and why is not None
    assert why.startswith(f"capped at {most} calls: the knee's 200 would need")
