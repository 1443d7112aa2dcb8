"""Benchmark: topology up and down time (Mininet + NAT routers), written to results/bench/."""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from natlab.guard import RunLock
from scenarios.runner import port_forwards
from topology.net import Network
from topology.plan import load_plan

ROUNDS = 5


def main() -> int:
    plan = load_plan()
    out = Path(__file__).resolve().parent.parent / "results" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    lock = RunLock()
    lock.acquire(out, sorted(e for lan in plan.lans for e in lan.phones))
    ups, downs = [], []
    try:
        for _ in range(ROUNDS):
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
               "up_s": [round(x, 3) for x in ups], "down_s": [round(x, 3) for x in downs]}
    (out / "topology_time.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"topology up {figures['up_s_median']} s, down {figures['down_s_median']} s "
          f"(median of {ROUNDS}) -> {out / 'topology_time.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
