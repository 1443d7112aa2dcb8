"""Benchmark: topology up and down time (Mininet + NAT routers), written to results/bench/.

Baseline in the same run: one bare namespace with a veth pair, made and removed (`ip`), so
the ratio says how much natlab adds on top of what this machine's kernel costs."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from pathlib import Path

from natlab.guard import RunLock
from scenarios.runner import port_forwards
from topology.net import Network
from topology.plan import load_plan

ROUNDS = 5


def bare_namespace() -> float:
    """Seconds to add a namespace with a veth pair inside, bring it up, and delete it."""
    ns = f"bench-bare{os.getpid()}"
    t0 = time.monotonic()
    for cmd in (["ip", "netns", "add", ns],
                ["ip", "-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
                ["ip", "-n", ns, "link", "set", "v0", "up"], ["ip", "netns", "del", ns]):
        subprocess.run(cmd, check=True, capture_output=True, timeout=10)
    return time.monotonic() - t0


def main() -> int:
    plan = load_plan()
    out = Path(__file__).resolve().parent.parent / "results" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    lock = RunLock()
    lock.acquire(out, sorted(e for lan in plan.lans for e in lan.phones))
    ups, downs, bare = [], [], []
    try:
        for _ in range(ROUNDS):
            bare.append(bare_namespace())
            net = Network(plan, port_forwards(plan, "nat-aware"))
            t0 = time.monotonic()
            net.start()
            t1 = time.monotonic()
            net.stop()
            ups.append(t1 - t0)
            downs.append(time.monotonic() - t1)
    finally:
        lock.release()
    figures = {"rounds": ROUNDS, "nodes": 11, "up_s_median": round(statistics.median(ups), 3),
               "down_s_median": round(statistics.median(downs), 3),
               "baseline_s_median": round(statistics.median(bare), 4),
               "up_s": [round(x, 3) for x in ups], "down_s": [round(x, 3) for x in downs]}
    (out / "topology_time.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"topology up {figures['up_s_median']} s, down {figures['down_s_median']} s "
          f"(median of {ROUNDS}; bare namespace {figures['baseline_s_median']} s) "
          f"-> {out / 'topology_time.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
