"""QoS end to end: calls across the NATs on an impaired WAN; measured must equal configured."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import requires_root

pytestmark = requires_root

SCENARIO = """description = "qos test"
stun = true
trunk = "nat-aware"
expect = "works"
duration_s = {duration}
qos = true
wan = {wan}
"""


def _run(tmp_path: Path, name: str, wan: str, duration: int = 6) -> dict[str, Any]:
    path = tmp_path / f"{name}.toml"
    path.write_text(SCENARIO.format(wan=wan, duration=duration))
    res = subprocess.run([sys.executable, "-m", "natlab", "run", "--scenario", str(path),
                          "--results", str(tmp_path / "results")], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    latest = tmp_path / "results" / "latest"
    qos = json.loads((latest / "qos.json").read_text())
    summary = json.loads((latest / "summary.json").read_text())
    assert summary["scenarios"][0]["verdict"] == "works", summary["scenarios"][0]["explanation"]
    (scenario,) = qos["scenarios"]
    assert len(scenario["rows"]) == 2  # both directions
    assert (latest / "qos.csv").read_text().count("\n") == 4  # header, 2 rows, average
    return scenario


def test_delay_and_jitter_as_configured(tmp_path: Path) -> None:
    sc = _run(tmp_path, "901_qos_delay", "{ delay_ms = 40, jitter_ms = 2 }")
    assert "delay 40" in sc["mechanism"]
    for row in sc["rows"]:
        assert abs(row["owd_mean_ms"] - 40.0) <= 0.05 * 40.0, row  # one-way delay within 5 %
        assert 1.0 <= row["mean_jitter_ms"] <= 4.0, row  # RFC 3550 jitter near the paper's
        assert 19.5 <= row["paper_delay_ms"] <= 20.5, row  # the paper's "delay" = spacing
        assert row["loss_pct"] == 0.0 and row["packets"] >= 290
        assert 4.0 < row["mos_g107"] < 4.45 and row["r_paper"] > 93.0


def test_loss_within_binomial_spread(tmp_path: Path) -> None:
    # 12 s (~600 packets a way): with 300 the verdict's "95 % of what 10 % loss lets
    # through" bar is only ~2.6 binomial sd away, and the call failed about once in 100 runs
    sc = _run(tmp_path, "902_qos_loss", "{ loss_pct = 10 }", duration=12)
    for row in sc["rows"]:
        n = row["packets"] + row["lost"]
        sd = math.sqrt(n * 0.1 * 0.9)
        assert abs(row["lost"] - 0.1 * n) <= 3.3 * sd, row  # 99.9 % binomial interval
        assert row["owd_mean_ms"] < 5.0
        assert row["mos_g107"] < 4.0  # 10 % loss costs G.711 (PLC) about 25 R points
