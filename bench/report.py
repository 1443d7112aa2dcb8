"""results/bench/bench.md: every figure `make bench` measured, from the json files beside it.

    python -m bench.report [--dir results/bench]

Reads topology_time.json, experiment.json (written by a full `natlab run`), rtp_speed.json,
load.json (the load set) and shaper.json; a file that is absent shows as "not measured".
Machine-dependent figures come with the baseline measured in the same run and their ratio.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

DIR = Path(__file__).resolve().parent.parent / "results" / "bench"
NOT = "not measured"


def _load(folder: Path, name: str) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / name).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _num(x: Any, unit: str = "", digits: int = 3) -> str:
    if x is None:
        return NOT
    if isinstance(x, float):
        x = round(x, digits)
    return f"{x:,}{unit}" if isinstance(x, int) else f"{x:g}{unit}"


def topology_rows(t: dict[str, Any] | None) -> list[list[str]]:
    if t is None:
        return [["topology up / down (median of 5)", NOT, "", ""]]
    base = t.get("baseline_s_median")
    up, down = t.get("up_s_median"), t.get("down_s_median")
    ratio = f"x{(up + down) / base:.1f} (up + down)" if base and up and down else ""
    return [[f"topology up / down (median of {t.get('rounds', 5)}, {t.get('nodes')} nodes)",
             f"{_num(up, ' s')} / {_num(down, ' s')}",
             f"bare namespace + veth pair, made and removed: {_num(base, ' s')}" if base else "",
             ratio]]


def experiment_rows(e: dict[str, Any] | None) -> list[list[str]]:
    if e is None:
        return [["full experiment wall time", NOT, "", ""],
                ["NAT matrix set wall time", NOT, "", ""]]
    rows = [["full experiment wall time", _num(e.get("total_s"), " s"),
             f"run {_num(e.get('run_s'), ' s')}, analysis {_num(e.get('analysis_s'), ' s')}",
             ""]]
    sets = e.get("sets") or {}
    for name, secs in sets.items():
        label = "NAT matrix set" if name in ("nat", "matrix") else f"set {name}"
        rows.append([f"{label} wall time", _num(secs, " s"), "", ""])
    if not any(n in sets for n in ("nat", "matrix")):
        rows.append(["NAT matrix set wall time", NOT, "", ""])
    return rows


def rtp_rows(r: dict[str, Any] | None) -> list[list[str]]:
    if r is None:
        return [["pcap analysis (packets/s)", NOT, "", ""]]
    ts = r.get("tshark_packets_per_s")
    return [[f"pcap analysis, {_num(r.get('packets'))} packets, {r.get('streams')} RTP streams "
             "(packets/s)", _num(r.get("ours_packets_per_s")),
             f"tshark same file: {_num(ts)}" if ts else "tshark absent",
             f"x{r['speedup']:g}" + ("" if r.get("same_streams") else " (tables differ!)")
             if r.get("speedup") else ""]]


def load_rows(d: dict[str, Any] | None) -> list[list[str]]:
    if d is None:
        return [["load knee (concurrent calls, 0 % loss, MOS p5 >= 4.3)", NOT, "", ""]]
    knee = d.get("knee")
    steps = d.get("steps") or []
    tried = [s.get("calls") for s in steps if isinstance(s, dict)]
    return [["load knee (concurrent calls, 0 % loss, MOS p5 >= 4.3)",
             NOT if knee is None else _num(knee),
             f"steps: {', '.join(str(c) for c in tried)}" if tried else "", ""]]


def shaper_rows(s: dict[str, Any] | None) -> list[list[str]]:
    if s is None:
        return [["WAN shaper ceiling (packets/s each way)", NOT, "", ""]]
    readers = s.get("readers") or {}
    cpu = {r: f.get("cpu_s_per_kpps") for r, f in readers.items()}
    rows = []
    for reader, f in readers.items():
        others = [c for r, c in cpu.items() if r != reader and c]
        mine = cpu[reader]
        ratio = f"CPU x{mine / others[0]:.2f} of the other reader" if mine and others else ""
        tag = " (natlab's)" if reader == s.get("default_reader") else ""
        rows.append([f"WAN shaper ceiling, reader {reader}{tag} (packets/s each way, "
                     f"p99 error <= {s['goal']['err_p99_ms']:g} ms, no loss)",
                     f"{_num(f.get('ceiling_pps'))} ({f.get('ceiling_calls')} calls)",
                     f"CPU {_num(mine, ' s')} per 1,000 packets/s", ratio])
    return rows


def _ok(r: dict[str, Any]) -> str:
    """Best run within the goal; the median run's verdict when it differs."""
    ok = "yes" if r["ok"] else "no"
    if "ok_median" in r and r["ok_median"] != r["ok"]:
        ok += f" (median run: {'yes' if r['ok_median'] else 'no'})"
    return ok


def shaper_levels(s: dict[str, Any]) -> list[str]:
    base = {r["calls"]: r for r in s.get("levels", []) if r.get("reader") == "none"}
    out = ["| calls | packets/s each way (sent) | reader | jitter ms | error p50 ms | "
           "error p99 ms (each run) | lost | CPU s per 1,000 packets/s | "
           "path without shaper p50 ms | within goal |",
           "|---:|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in s.get("levels", []):
        if r.get("reader") == "none":
            continue
        b = base.get(r["calls"], {})
        sent = f" ({r['pps_sent_each_way']:,})" if "pps_sent_each_way" in r else ""
        each = r.get("err_ms_p99_runs") or []
        runs = f" ({', '.join(f'{x:.3f}' for x in each)})" if len(each) > 1 else ""
        out.append(f"| {r['calls']} | {r['pps_each_way']:,}{sent} | {r['reader']} | "
                   f"{r['jitter_ms']:g}"
                   f" | {r['err_ms_p50']:.3f} | {r['err_ms_p99_abs']:.3f}{runs} | {r['lost']} | "
                   f"{r['cpu_s_per_kpps']:.3f} | {b.get('base_ms_p50', '')} | "
                   f"{_ok(r)} |")
    return out


def render(folder: Path) -> str:
    shaper = _load(folder, "shaper.json")
    rows = (topology_rows(_load(folder, "topology_time.json"))
            + experiment_rows(_load(folder, "experiment.json"))
            + rtp_rows(_load(folder, "rtp_speed.json"))
            + load_rows(_load(folder, "load.json")) + shaper_rows(shaper))
    lines = ["# natlab bench", "",
             "Written by `make bench` (bench/report.py) from results/bench/*.json. Ratios compare",
             "with a baseline measured on the same machine in the same run.", "",
             "| figure | value | baseline (same run) | ratio |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(r)} |" for r in rows]
    if shaper is not None:
        g = shaper["goal"]
        lines += ["", f"## WAN shaper per load level (configured {g['delay_ms']:g} ms ± "
                      f"{g['jitter_ms']:g} ms, {g['pps_per_call']} packets/s per call each "
                      f"way, {g['repeats']} runs of >= {g['seconds_per_run']:g} s per level "
                      f"and reader, the median run shown, {shaper.get('cpus')} CPUs)",
                  "", "Error: measured one-way delay minus the delay the shaper intended "
                  "(its seeded draws replayed) minus the path's own latency. Within goal: p99 "
                  "<= 0.5 ms in the best run, no packet lost in any run.", ""]
        lines += shaper_levels(shaper)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    ap.add_argument("--dir", type=Path, default=DIR)
    args = ap.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    out = args.dir / "bench.md"
    out.write_text(render(args.dir))
    print(f"bench table -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
