"""bench/report.py: bench.md from whatever results/bench/*.json exist (no root, no timing)."""
from __future__ import annotations

import json
from pathlib import Path

from bench.report import main, render


def test_absent_figures_say_not_measured(tmp_path: Path) -> None:
    text = render(tmp_path)
    for figure in ("topology up / down", "full experiment wall time", "NAT matrix set",
                   "pcap analysis", "load knee", "WAN shaper ceiling"):
        row = next(line for line in text.splitlines() if figure in line)
        assert "not measured" in row


def test_figures_and_ratios(tmp_path: Path) -> None:
    (tmp_path / "topology_time.json").write_text(json.dumps(
        {"rounds": 5, "nodes": 11, "up_s_median": 0.5, "down_s_median": 0.5,
         "baseline_s_median": 0.01}))
    (tmp_path / "experiment.json").write_text(json.dumps(
        {"total_s": 170.0, "run_s": 160.0, "analysis_s": 10.0, "sets": {"nat": 40.0}}))
    (tmp_path / "rtp_speed.json").write_text(json.dumps(
        {"packets": 1000, "streams": 2, "ours_packets_per_s": 200, "tshark_packets_per_s": 100,
         "speedup": 2.0, "same_streams": True}))
    (tmp_path / "load.json").write_text(json.dumps({"knee": 100}))
    level = {"calls": 100, "pps_each_way": 5000, "reader": "netlink", "jitter_ms": 2.0,
             "err_ms_p50": 0.05, "err_ms_p99_abs": 0.3, "err_ms_p99_runs": [0.3, 0.2, 0.6],
             "lost": 0, "cpu_s_per_kpps": 0.08, "ok": True, "ok_median": True}
    (tmp_path / "shaper.json").write_text(json.dumps(
        {"goal": {"delay_ms": 10, "jitter_ms": 2, "err_p99_ms": 0.5, "pps_per_call": 50,
                  "seconds_per_run": 3, "repeats": 3}, "cpus": 2, "default_reader": "netlink",
         "readers": {"netlink": {"ceiling_pps": 5000, "ceiling_calls": 100,
                                 "cpu_s_per_kpps": 0.08},
                     "libnfq": {"ceiling_pps": 2500, "ceiling_calls": 50,
                                "cpu_s_per_kpps": 0.06}},
         "levels": [level, {"calls": 100, "reader": "none", "base_ms_p50": 0.007}]}))
    assert main(["--dir", str(tmp_path)]) == 0
    text = (tmp_path / "bench.md").read_text()
    assert "| x100.0 (up + down) |" in text
    assert "| full experiment wall time | 170 s |" in text
    assert "| NAT matrix set wall time | 40 s |" in text
    assert "tshark same file: 100 | x2 |" in text
    assert "| load knee (concurrent calls, 0 % loss, MOS p5 >= 4.3) | 100 |" in text
    assert "reader netlink (natlab's)" in text and "5,000 (100 calls)" in text
    assert "CPU x1.33 of the other reader" in text
    assert "| 0.300 (0.300, 0.200, 0.600) |" in text and "not measured" not in text
