"""The load table and figure: one row per load step (analysis.load), the knee, what saturated."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from analysis.load import MOS_P5_MIN, knee
from analysis.verdict import Verdict
from report.plots import _plt

SATURATED_PCT = 90.0  # a process busier than this in its busiest second held a whole core


def rows_of(verdicts: list[Verdict]) -> list[dict[str, Any]]:
    return [v.load for v in verdicts if v.load]


def _f(v: Any, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def busiest(row: dict[str, Any]) -> tuple[str, float] | None:
    """The process with the busiest second of the step (percent of one core)."""
    peaks = row.get("peak_pct") or {}
    if not peaks:
        return None
    name = max(peaks, key=lambda k: peaks[k])
    return name, float(peaks[name])


def saturation(rows: list[dict[str, Any]]) -> list[str]:
    """One line per step whose busiest process held a core (or the host was busy)."""
    out = []
    for r in rows:
        top = busiest(r)
        if top and top[1] >= SATURATED_PCT:
            out.append(f"{r['calls']} calls ({r['wan']}): {top[0]} peaked at {top[1]:.0f} % "
                       "of a core")
    return out


def table(rows: list[dict[str, Any]]) -> list[str]:
    head = ("| step | calls | WAN | attempted | established | completed | setup ms med/p95 | "
            "loss % med/p95/max | jitter ms med/p95/max | MOS p5 (phones min) | "
            "conntrack r1/r2 | CPU s (top 3) | busiest second | result |")
    md = [head, "|" + "---|" * 14]
    for r in rows:
        if r.get("skipped"):
            md.append(f"| {r['name']} | {_f(r['calls'])} | {r['wan']} | | | | | | | | | | | "
                      f"{r['skipped']} |")
            continue
        s, lo, j, m = r["setup_ms"], r["loss_pct"], r["jitter_ms"], r["mos"]
        ct = r.get("conntrack") or {}
        cpu = sorted((r.get("cpu_s") or {}).items(), key=lambda kv: -kv[1])[:3]
        top = busiest(r)
        md.append(
            f"| {r['name']} | {r['calls']} | {r['wan']} | {r['attempted']} | "
            f"{r['established']} | {r['completed']} | {_f(s.get('median'), 1)}/"
            f"{_f(s.get('p95'), 1)} | {_f(lo.get('median'))}/{_f(lo.get('p95'))}/"
            f"{_f(lo.get('max'))} | {_f(j.get('median'))}/{_f(j.get('p95'))}/"
            f"{_f(j.get('max'))} | {_f(m.get('p5'))} ({_f(m.get('phones_min'))}) | "
            f"{(ct.get('r1') or {}).get('total', '-')}/{(ct.get('r2') or {}).get('total', '-')}"
            f" | {', '.join(f'{k} {v:.1f}' for k, v in cpu)} | "
            f"{f'{top[0]} {top[1]:.0f} %' if top else '-'} | "
            f"{'pass' if r['passed'] else 'FAIL: ' + '; '.join(r['reasons'])} |")
    return md


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Calls (x) against loss, jitter p95, MOS p5 and CPU seconds per process (clean WAN)."""
    plt = _plt()
    run = [r for r in rows if not r.get("skipped") and r.get("wan") == "clean"]
    xs = [r["calls"] for r in run]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    (a, b), (c, d) = axes
    a.plot(xs, [r["loss_pct"]["max"] for r in run], "o-", label="max")
    a.plot(xs, [r["loss_pct"]["p95"] for r in run], "s--", label="p95")
    a.set(ylabel="RTP loss per direction (%)", title="loss")
    a.legend(fontsize=8)
    b.plot(xs, [r["jitter_ms"]["p95"] for r in run], "o-", label="p95 of mean jitter")
    b.plot(xs, [r["jitter_ms"].get("max_of_max") for r in run], "s--", label="max jitter")
    b.set(ylabel="RFC 3550 jitter (ms)", title="jitter")
    b.legend(fontsize=8)
    c.plot(xs, [r["mos"]["p5"] for r in run], "o-", label="MOS p5 (all directions)")
    c.plot(xs, [r["mos"].get("phones_min") for r in run], "s--", label="pjsua2 phones, min")
    c.axhline(MOS_P5_MIN, color="k", ls=":", lw=1, label=f"goal {MOS_P5_MIN}")
    c.set(xlabel="simultaneous calls", ylabel="G.107 MOS", title="MOS")
    c.legend(fontsize=8)
    names = sorted({k for r in run for k in (r.get("cpu_s") or {})},
                   key=lambda k: -max((r.get("cpu_s") or {}).get(k, 0.0) for r in run))[:6]
    for name in names:
        d.plot(xs, [(r.get("cpu_s") or {}).get(name, 0.0) for r in run], "o-", label=name)
    d.plot(xs, [(r.get("host") or {}).get("softirq_s", 0.0) for r in run], "k:",
           label="host softirq")
    d.set(xlabel="simultaneous calls", ylabel="CPU seconds in the step", title="CPU")
    d.legend(fontsize=7)
    k = knee(rows)
    fig.suptitle(f"natlab load: calls through both NATs (knee: {k if k else 'none'})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def section(rundir: Path, verdicts: list[Verdict]) -> list[str]:
    """report.md lines (and figures/load.png) for the run's load steps; [] without any."""
    rows = rows_of(verdicts)
    if not rows:
        return []
    md = ["## Load: simultaneous calls through both NATs", "",
          "SIPp (UAC in LAN2, UAS in LAN1, digest auth, calls set up at a bounded rate, each "
          "with >= 10 s of G.711 both ways, all N up together for 10 s) beside pjsua2 calls. "
          "Loss and jitter per call direction from the SIPp hosts' and phones' captures "
          "(distribution over directions), G.107 MOS p5, SIPp's setup time (first INVITE to "
          "200 OK, 407 round included), conntrack entries mid-step, CPU seconds per process.",
          "", *table(rows), ""]
    k = knee(rows)
    md.append(f"Knee (largest N with every call completed, 0 % loss, MOS p5 >= {MOS_P5_MIN}): "
              f"**{k if k else 'none'}**.")
    sat = saturation(rows)
    if sat:
        md += ["", "Saturated: " + "; ".join(sat) + "."]
    if any(not r.get("skipped") and r.get("wan") == "clean" for r in rows):
        figs = rundir / "figures"
        figs.mkdir(exist_ok=True)
        plot(rows, figs / "load.png")
        md += ["", "![load](figures/load.png)"]
    return md + [""]
