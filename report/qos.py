"""The QoS table: qos.json, qos.csv, the report.md section and its figures."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.qos import CODEC, JITTER_BUFFER_MS, Direction, averages
from report import plots

# The paper's Table 4.1 averages (10 voice calls) and Table 4.2 (video).
PAPER_VOICE = {"paper_delay_ms": 19.97, "mean_jitter_ms": 2.2, "loss_pct": 0.0,
               "r_paper": 93.83, "mos_paper": 4.4}
PAPER_VIDEO = {"mean_jitter_ms": 3.7, "loss_pct": 0.0, "r_paper": 83.83, "mos_paper": 4.1}

COLUMNS = [("call", "call"), ("sender", "from"), ("receiver", "to"), ("media", "media"),
           ("packets", "Total Paket"),
           ("total_delay_s", "Total delay (s)"), ("loss_pct", "Loss (%)"),
           ("paper_delay_ms", "\"Delay\" (ms)"), ("mean_jitter_ms", "Jitter (ms)"),
           ("owd_mean_ms", "one-way delay (ms)"), ("r_g107", "R G.107"),
           ("mos_g107", "MOS G.107"), ("r_paper", "R paper"), ("mos_paper", "MOS paper")]


SHARED = ("Ran side by side with other scenarios (`natlab run --jobs`; its file says "
          "`alone = false`): the testbed's own jitter is higher than with the machine to itself.")


@dataclass
class QosScenario:
    name: str
    description: str
    wan: dict[str, float]
    mechanism: str
    rows: list[Direction] = field(default_factory=list)
    shared: bool = False  # ran side by side with other scenarios (natlab run --jobs)

    @property
    def sweep_axis(self) -> str | None:
        if "_sweep_loss_" in self.name:
            return "loss"
        if "_sweep_delay_" in self.name:
            return "delay"
        return None


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


def _table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(_fmt(r.get(k)) for k, _ in COLUMNS) + " |" for r in rows]
    return out


def write_qos(rundir: Path, scenarios: list[QosScenario]) -> list[str]:
    """Write qos.json, qos.csv and the figures; return the report.md lines."""
    if not scenarios:
        return []
    figs = rundir / "figures"
    figs.mkdir(exist_ok=True)
    doc: dict[str, Any] = {"codec": CODEC, "jitter_buffer_ms": JITTER_BUFFER_MS,
                           "paper_voice": PAPER_VOICE, "scenarios": []}
    md = ["## QoS (the paper's Tables 4.1 and 4.2, reproduced)", "",
          "Per call and direction, from the receiving phone's capture. The paper's columns are "
          "computed as it did: Total delay = sum of inter-arrival deltas, \"Delay\" = Total "
          "delay / packets — the mean packet spacing (~20 ms = ptime), not a network delay. "
          "The true one-way delay comes from matching each packet (SSRC, sequence) between "
          "the sender's and the receiver's capture (one clock for all namespaces). R/MOS: "
          f"ITU-T G.107 with {CODEC} (G.113 App. I), one-way delay + codec + a fixed "
          f"{JITTER_BUFFER_MS:.0f} ms jitter buffer (late packets count as lost); and the "
          "paper's own formula with its d = the mean spacing.", ""]
    sweep_points: list[tuple[str, float, Direction]] = []
    with open(rundir / "qos.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        head = ["scenario", "wan", *[k for k, _ in COLUMNS[:3]],
                *[k for k in Direction.__dataclass_fields__ if k not in
                  ("call", "sender", "receiver", "series")]]
        writer.writerow(head)
        for qs in scenarios:
            if not qs.rows:  # no RTP reached either phone: nothing to measure
                md += [f"### {qs.name}: {qs.description}", "",
                       "No QoS rows: no RTP stream reached either phone (see its verdict).", ""]
                continue
            rows = [r.row() for r in qs.rows]
            avgs = _averages(qs.rows)
            avg = avgs[0]
            for r in [*rows, *avgs]:
                writer.writerow([qs.name, json.dumps(qs.wan)] + [r.get(k) for k in head[2:]])
            doc["scenarios"].append({"name": qs.name, "wan": qs.wan, "mechanism": qs.mechanism,
                                     "rows": rows, "average": avg,
                                     "averages": {a["media"]: a for a in avgs}})
            if qs.sweep_axis:
                value = qs.wan.get("loss_pct" if qs.sweep_axis == "loss" else "delay_ms", 0.0)
                sweep_points += [(qs.sweep_axis, value, r) for r in qs.rows]
                continue
            md += _scenario_md(qs, rows, avgs, figs)
    if sweep_points:
        plots.sweep(sweep_points, figs / "sweep.png")
        md += ["### Impairment sweep", "",
               "One call per point: MOS by G.107 from what was measured (dots, placed at the "
               "configured value) against the G.107 curve for the configured impairment alone; "
               "a dot off the curve is the difference between configured and measured (e.g. "
               "the binomial spread of loss over ~300 packets).", "",
               "![sweep](figures/sweep.png)", ""]
        md += _table([{**r.row(), "call": f"{axis} {value:g}"}
                      for axis, value, r in sweep_points]) + [""]
    (rundir / "qos.json").write_text(json.dumps(doc, indent=2) + "\n")
    return md


def _averages(rows: list[Direction]) -> list[dict[str, Any]]:
    """One averages row per media type (audio first)."""
    out = []
    for media in ("audio", "video"):
        sel = [r for r in rows if r.media == media]
        if sel:
            out.append({**averages(sel), "call": f"average {media}", "media": media})
    return out


def _scenario_md(qs: QosScenario, rows: list[dict[str, Any]], avgs: list[dict[str, Any]],
                 figs: Path) -> list[str]:
    stem = qs.name
    avg = avgs[0]
    plots.jitter_over_time(qs.rows, figs / f"{stem}-jitter.png", f"{stem}: jitter over time")
    plots.delta_histogram(qs.rows, figs / f"{stem}-delta.png", f"{stem}: inter-arrival deltas")
    plots.owd_distribution(qs.rows, figs / f"{stem}-owd.png", f"{stem}: one-way delay")
    plots.mos_per_call(qs.rows, figs / f"{stem}-mos.png", f"{stem}: MOS per call")
    paper = [{"call": "paper voice", "media": "audio", **PAPER_VOICE}]
    if len(avgs) > 1:
        paper.append({"call": "paper video", "media": "video", **PAPER_VIDEO})
    owd = avg.get("owd_mean_ms")
    words = (f"Here \"Delay\" averages {avg['paper_delay_ms']:.2f} ms (paper 19.97 ms): both are "
             f"the 20 ms packet spacing. The real one-way delay averages "
             f"{owd if owd is not None else float('nan'):.2f} ms on this WAN "
             f"({json.dumps(qs.wan) if qs.wan else 'no impairment'}). Jitter averages "
             f"{avg['mean_jitter_ms']:.2f} ms (paper 2.2 ms). The paper's R 93.83 follows from "
             f"d = 19.97 ms in its formula; G.107 with the true delay gives "
             f"R {avg['r_g107']:.2f}, MOS {avg['mos_g107']:.2f}.")
    if len(avgs) > 1:
        v = avgs[1]
        words += (f" Video (VP8, 90 kHz clock): jitter averages {v['mean_jitter_ms']:.2f} ms "
                  f"(paper 3.7 ms), loss {v['loss_pct']:.2f} %. G.107 is a speech model and "
                  "is not applied to video; the paper's video R used its formula with Ie = 10: "
                  f"here R {v['r_paper']:.2f}, MOS {v['mos_paper']:.2f} (paper 83.83 / 4.1).")
    return [f"### {stem}: {qs.description}", "",
            f"WAN: {json.dumps(qs.wan) if qs.wan else 'clean'} — {qs.mechanism}", "",
            *([SHARED, ""] if qs.shared else []),
            *_table([*rows, *avgs, *paper]), "", words, "",
            f"![jitter](figures/{stem}-jitter.png) ![delta](figures/{stem}-delta.png)",
            f"![owd](figures/{stem}-owd.png) ![mos](figures/{stem}-mos.png)", ""]
