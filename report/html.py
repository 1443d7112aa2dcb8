"""report.html: one self-contained page per run (inline CSS; images relative to the run folder).

What a student sees first: the run's name and state, then the verdict table (one row per
scenario, with the phones it calls and the WAN profile), the NAT tables when present, the
network drawn from the plan actually used; then per scenario its explanation (every "X.pcap
frame N" links to the capture), its NAT binding table, its ladders and its QoS table and
plots. No network access is needed to read it.
"""
from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from analysis.verdict import Verdict
from report import attacks, bindings, matrix
from report import fault as fault_report
from report.topology import diagram
from topology.plan import Plan

FRAME_REF = re.compile(r"([\w-]+\.pcap) frame (\d+)")
QOS_COLUMNS = [("call", "call"), ("sender", "from"), ("receiver", "to"), ("media", "media"),
               ("packets", "packets"), ("loss_pct", "loss %"), ("paper_delay_ms", "\"Delay\" ms"),
               ("mean_jitter_ms", "jitter ms"), ("owd_mean_ms", "one-way delay ms"),
               ("mos_g107", "MOS G.107"), ("mos_paper", "MOS paper")]

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 80em; padding: 0 1em;
       color: #222; line-height: 1.45; font-size: 17px; }
h1 { font-size: 1.6em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .55em; text-align: left; }
th { background: #f2f2f2; }
.works { color: #1b6e20; font-weight: bold; } .fails { color: #b71c1c; font-weight: bold; }
.error { color: #8e6c00; font-weight: bold; }
.obtained { color: #b71c1c; font-weight: bold; } .refused { color: #1b6e20; font-weight: bold; }
.banner { background: #fff3cd; border: 1px solid #e0c060; padding: .5em 1em; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: .8em; }
img { max-width: 100%; border: 1px solid #eee; margin: .3em 0; }
.evidence li { margin: .3em 0; } a.frame { font-family: monospace; }
.hidden { color: #777; font-style: italic; }
.lead { font-size: 1.05em; } .small { font-size: .85em; color: #555; }
#summary td, #summary th { padding: .3em .7em; white-space: nowrap; }
#summary td.what { white-space: normal; min-width: 14em; }
#summary th { white-space: normal; }
@media (max-width: 1100px) { body { font-size: 15px; }
  #summary td, #summary th { padding: .25em .4em; } }
@media (min-width: 1600px) { body { font-size: 20px; max-width: 96em; } }
"""

# Marks the page when every image has loaded (read by the browser test and by nothing else).
CHECK_IMAGES = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  document.body.setAttribute('data-images', imgs.length + ' loaded ' + (imgs.length - bad.length));
});
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def _evidence(name: str, line: str) -> str:
    """A sentence with every pcap/frame reference linked to the capture file."""
    out, pos = [], 0
    for m in FRAME_REF.finditer(line):
        out.append(_e(line[pos:m.start()]))
        out.append(f'<a class="frame" href="{_e(name)}/{_e(m[1])}" title="open in Wireshark, '
                   f'then Go to frame {m[2]}">{_e(m[0])}</a>')
        pos = m.end()
    out.append(_e(line[pos:]))
    return "".join(out)


def _verdict(v: Verdict, hidden: bool) -> str:
    if hidden:
        return '<span class="hidden">hidden until you predict</span>'
    return f'<span class="{_e(v.verdict)}">{_e(v.verdict)}</span>'


def _summary(verdicts: list[Verdict], hidden: bool, about: dict[str, tuple[str, str]]
             ) -> list[str]:
    rows = ['<table id="summary"><tr><th>scenario</th><th>what it does</th><th>STUN</th>'
            '<th>trunk</th><th>WAN</th><th>verdict</th><th>expected</th><th>RTP rx caller</th>'
            '<th>RTP rx callee</th></tr>']
    for v in verdicts:
        paper = "" if hidden else ("agrees" if v.verdict == v.expect else f"expected {v.expect}")
        rx = ("?", "?") if hidden else (v.rtp_received["caller"], v.rtp_received["callee"])
        what, wan = about.get(v.name, ("", ""))
        rows.append(f'<tr><td><a href="#{_e(v.name)}">{_e(v.name)}</a></td>'
                    f'<td class="what">{_e(what)}</td>'
                    f'<td>{"on" if v.stun else "off"}</td><td>{_e(v.trunk)}</td>'
                    f'<td>{_e(wan)}</td><td>{_verdict(v, hidden)}</td><td>{_e(paper)}</td>'
                    f'<td>{rx[0]}</td><td>{rx[1]}</td></tr>')
    return [*rows, "</table>"]


def _wan(rundir: Path, name: str) -> str:
    """The scenario's WAN profile as recorded by the run (scenario.json)."""
    try:
        wan = json.loads((rundir / name / "scenario.json").read_text()).get("wan") or {}
    except (OSError, ValueError):
        return ""
    values = ", ".join(f"{k} {v:g}" for k, v in (wan.get("values") or {}).items())
    return str(wan.get("profile", "")) + (f" ({values})" if values else "")


def _bindings(plan: Plan, folder: Path) -> list[str]:
    rows, missing = bindings.bindings(plan, folder)
    if not rows and not missing:
        return []
    kept, more = bindings.capped(rows)
    out = ["<p><b>NAT bindings mid-call</b> (each router's conntrack table: the private "
           "address and port, the public one the router gave it, toward whom)</p>"]
    if kept:
        out += _rows([list(bindings.HEADER), *[list(b.row()) for b in kept]])
    if more:
        out.append(f'<p class="small">({more} more entries left out)</p>')
    out += [f'<p class="small">{_e(m)}</p>' for m in missing]
    return out


LINK = re.compile(r"\[([^\]]+)\]\(#([\w-]+)\)")


def _rows(rows: list[list[str]]) -> list[str]:
    """A table whose cells may hold markdown links to a scenario ([text](#name))."""
    def cell(text: str) -> str:
        m = LINK.fullmatch(text)
        if m is None:
            return _e(text)
        state = m[1].split()[0]
        return f'<a href="#{_e(m[2])}" class="{_e(state)}">{_e(m[1])}</a>'

    out = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in rows[0]) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{cell(c)}</td>" for c in r) + "</tr>" for r in rows[1:]]
    return [*out, "</table>"]


def _qos_table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for _, h in QOS_COLUMNS) + "</tr>"]
    for r in rows:
        cells = []
        for k, _ in QOS_COLUMNS:
            v = r.get(k)
            cells.append("-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v))
        out.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    return [*out, "</table>"]


def _scenario(rundir: Path, plan: Plan, v: Verdict, qos: dict[str, Any] | None, hidden: bool,
              about: tuple[str, str]) -> list[str]:
    what, wan = about
    pcaps = sorted(p.relative_to(rundir).as_posix() for p in (rundir / v.name).rglob("*.pcap"))
    out = [f'<h2 id="{_e(v.name)}">{_e(v.name)}: {_verdict(v, hidden)}</h2>',
           f"<p>{_e(what) + '. ' if what else ''}STUN {'on' if v.stun else 'off'}, trunk "
           f"<code>{_e(v.trunk)}</code>, WAN {_e(wan or 'clean')}; files in "
           f'<a href="{_e(v.name)}/">{_e(v.name)}/</a>.</p>']
    if pcaps:
        out.append('<p class="small">Captures: ' + ", ".join(
            f'<a href="{_e(p)}">{_e(p.split("/", 1)[1])}</a>' for p in pcaps) + "</p>")
    if not hidden:
        failed = [k for k, ok in v.checks.items() if not ok]
        out.append(f"<p>Checks failed: {_e(', '.join(failed) if failed else 'none')}.</p>")
        out.append('<ul class="evidence">' + "".join(
            f"<li>{_evidence(v.name, line)}</li>" for line in v.evidence) + "</ul>")
        out += _bindings(plan, rundir / v.name)
    if hidden:  # a ladder or a loss figure would give the verdict away
        out.append('<p class="hidden">Ladders and QoS are shown once you have predicted.</p>')
        return out
    for svg in sorted((rundir / v.name / "ladders").glob("*.svg")):
        rel = f"{v.name}/ladders/{svg.name}"
        out.append(f'<p><b>Ladder {_e(svg.stem)}</b> (<a href="{_e(rel)}">full size</a>, '
                   f'<a href="{_e(rel[:-4])}.txt">as text</a>)</p><a href="{_e(rel)}">'
                   f'<img src="{_e(rel)}" alt="SIP ladder of {_e(v.name)} {_e(svg.stem)}"></a>')
    if qos is not None:
        out.append(f"<p><b>QoS</b> ({_e(qos.get('mechanism', ''))})</p>")
        out += _qos_table([*qos["rows"], *qos.get("averages", {}).values()])
        for fig in ("jitter", "delta", "owd", "mos"):
            path = f"figures/{v.name}-{fig}.png"
            if (rundir / path).exists():
                out.append(f'<img src="{_e(path)}" alt="{_e(fig)} of {_e(v.name)}">')
    return out


def write_html(rundir: Path, plan: Plan, verdicts: list[Verdict], meta: dict[str, Any],
               hidden: bool = False, descriptions: dict[str, str] | None = None) -> Path:
    """Write report.html; `hidden` keeps verdicts and explanations out (the quiz)."""
    about = {v.name: ((descriptions or {}).get(v.name, ""), _wan(rundir, v.name))
             for v in verdicts}
    qos_doc = json.loads((rundir / "qos.json").read_text()) \
        if (rundir / "qos.json").exists() else {"scenarios": []}
    qos = {s["name"]: s for s in qos_doc["scenarios"]}
    versions = json.loads((rundir / "versions.json").read_text()) \
        if (rundir / "versions.json").exists() else {}
    state = ("interrupted: partial results" if meta.get("interrupted") else
             f"failed: {meta['failure']}" if meta.get("failure") else
             "" if meta.get("complete") else "incomplete")
    works = sum(v.verdict == "works" for v in verdicts)
    agree = sum(v.verdict == v.expect for v in verdicts)
    body = [f"<h1>natlab run {_e(meta.get('run_id'))}</h1>"]
    if state:
        body.append(f'<p class="banner"><b>{_e(state)}</b></p>')
    if hidden:
        body.append('<p class="lead banner">A quiz: write <code>works</code> or '
                    '<code>fails</code> per scenario into <code>predictions.toml</code> in this '
                    "folder, then run <code>natlab grade</code> on it to see the verdicts.</p>")
    else:
        fails = len(verdicts) - works
        body.append(f'<p class="lead">{len(verdicts)} scenario(s): {works} work'
                    f"{'s' if works == 1 else ''}, {fails} fail{'s' if fails == 1 else ''}; "
                    f"{agree} as the paper predicts. A call "
                    "<b>works</b> when both sides reach CONFIRMED, the BYE is answered, each "
                    "direction receives at least 95 % of the RTP the other side sent, and each "
                    "recording holds the far tone. Click a scenario for its explanation and "
                    "ladder; frame numbers are Wireshark's (open the pcap, Go to packet).</p>")
    body += ["<h2>Verdicts</h2>", *_summary(verdicts, hidden, about)]
    nat = matrix.tables(verdicts) if not hidden else {}
    titles = {"matrix": "NAT behaviours x remedies", "lessons": "NAT lessons of their own",
              "types": "NAT types: configured and measured"}
    for key, rows in nat.items():
        if rows:
            body += [f"<h2>{titles[key]}</h2>", *_rows(rows)]
    atk = attacks.tables(verdicts) if not hidden else []
    if atk:
        body += ["<h2>Attacks: what a stranger on the internet obtained</h2>",
                 "<p>Obtained = anything beyond a refusal (401/403/407 or no answer).</p>",
                 *_rows(atk), *(f"<p>{_e(line[2:])}</p>" for line in
                                attacks.flood_lines(verdicts))]
    faults = fault_report.rows(verdicts) if not hidden else []
    if len(faults) > 1:
        body += ["<h2>Fault timelines</h2>", *_rows(faults)]
    body += ["<h2>The network</h2>", f"<pre>{_e(diagram(plan))}</pre>"]
    if (rundir / "figures" / "sweep.png").exists():
        body.append('<h2>Impairment sweep</h2><img src="figures/sweep.png" alt="sweep">')
    for v in verdicts:
        body += _scenario(rundir, plan, v, qos.get(v.name), hidden, about[v.name])
    wall = meta.get("wall_s")
    body += ["<h2>About this run</h2>",
             f"<p>Host {_e(meta.get('host'))}, kernel {_e(meta.get('kernel'))}, config "
             f"<code>{_e(meta.get('config'))}</code>, wall time "
             f"{_e(f'{wall:.1f} s' if wall is not None else 'unknown')}.</p>"]
    if versions:
        body.append("<p>Versions: " + ", ".join(f"{_e(k)} {_e(v)}" for k, v in versions.items()
                                              if v) + ".</p>")
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>natlab run {_e(meta.get('run_id'))}</title>"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<style>{CSS}</style><script>{CHECK_IMAGES}</script></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
    path = rundir / "report.html"
    path.write_text(page)
    return path
