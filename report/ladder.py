"""Draw a ladder (analysis.ladder): plain text for the terminal, SVG and PNG for the report.

One column per node (a router has two: its LAN and its WAN side); an arrow per message and
segment, labelled with what it is and the frame that shows it; an arrow that ends nowhere stops
short with a cross; what a NAT rewrote in the header is written under the arrow that left it,
and payload fields that still carry a private address after a NAT are written in red.
"""
from __future__ import annotations

import html
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from analysis.ladder import NOWHERE, Arrow, Ladder

COL = 15  # text column width
SVG_COL = 140
SVG_ROW = 54
SVG_TOP = 60
PRIVATE = "#c0392b"
NAT = "#6a1b9a"  # what a router rewrote
COLOURS = {"sip": "#1f4e79", "rtp": "#2e7d32", "stun": "#8e6c00"}


def _x(ladder: Ladder, node: str) -> int:
    keys = [k for k, _ in ladder.columns]
    return keys.index(node) if node in keys else -1


def _label(a: Arrow) -> str:
    return a.label + (f" (resent #{a.copy})" if a.copy > 1 else "")


def text(ladder: Ladder, t0: float | None = None) -> str:
    """A sngrep-like ladder: time, arrow between columns, label, frames, private fields."""
    t0 = ladder.arrows[0].time if t0 is None and ladder.arrows else (t0 or 0.0)
    width = COL * len(ladder.columns)
    heads = "".join(label.split("\n")[0].center(COL) for _, label in ladder.columns)
    addrs = "".join(label.split("\n")[-1].center(COL) for _, label in ladder.columns)
    out = [" " * 9 + heads.rstrip(), " " * 9 + addrs.rstrip()]
    for a in ladder.arrows:
        line = [" "] * width
        for i in range(len(ladder.columns)):
            line[i * COL + COL // 2] = "|"
        src = _x(ladder, a.src) * COL + COL // 2
        if a.dst == NOWHERE:
            dst = src + (COL - 3 if src < width - COL else -(COL - 3))
        else:
            dst = _x(ladder, a.dst) * COL + COL // 2
        lo, hi = sorted((src, dst))
        for i in range(lo + 1, hi):
            line[i] = "-"
        if a.dst == NOWHERE:
            line[dst] = "X"
        elif dst > src:
            line[dst - 1] = ">"
        else:
            line[dst + 1] = "<"
        label = _label(a)
        start = max(0, min(lo + 2, width - len(label)))
        head = [" "] * width
        for i in range(len(ladder.columns)):
            head[i * COL + COL // 2] = "|"
        head[start - 1:start + len(label) + 1] = list(f" {label} ")
        out.append(" " * 9 + "".join(head).rstrip())
        note = f"{a.seen[0].src} > {a.seen[0].dst}  {a.frames}"
        if a.last:
            note += "; last " + ", ".join(f"{s.capture} #{s.frame}" for s in a.last)
        for extra in _notes(a):
            note += "; " + extra
        out.append(f"{a.time - t0:8.3f} " + "".join(line).rstrip() + "   " + note)
    return "\n".join(out) + "\n"


def _notes(a: Arrow) -> list[str]:
    """What the arrow teaches beyond its label: the NAT's rewrite, where it ended, what
    payload fields are still private."""
    out = [a.nat] if a.nat else []
    if a.dst == NOWHERE:
        out.append(f"to {a.seen[0].dst}: a private address, unroutable")
    if a.dropped:
        out.append(a.dropped)
    if a.private:
        out.append("still private: " + ", ".join(a.private))
    return out


def svg(ladder: Ladder, title: str) -> str:
    """The ladder as a standalone SVG document."""
    rows = len(ladder.arrows)
    width = SVG_COL * len(ladder.columns) + 40
    height = SVG_TOP + SVG_ROW * (rows + 1) + 20
    t0 = ladder.arrows[0].time if ladder.arrows else 0.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
             '<rect width="100%" height="100%" fill="white"/>',
             f'<text x="10" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
             '<defs><marker id="head" markerWidth="8" markerHeight="8" refX="7" refY="4" '
             'orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="context-stroke"/></marker></defs>']
    for i, (_, label) in enumerate(ladder.columns):
        x = 40 + i * SVG_COL + SVG_COL // 2
        name, addr = label.split("\n")[0], label.split("\n")[-1]
        parts.append(f'<text x="{x}" y="34" text-anchor="middle" font-weight="bold">'
                     f'{html.escape(name)}</text>')
        parts.append(f'<text x="{x}" y="48" text-anchor="middle" fill="#555">'
                     f'{html.escape(addr)}</text>')
        parts.append(f'<line x1="{x}" y1="{SVG_TOP - 6}" x2="{x}" y2="{height - 10}" '
                     'stroke="#bbb" stroke-dasharray="4,3"/>')
    for row, a in enumerate(ladder.arrows):
        parts += _svg_arrow(ladder, a, SVG_TOP + SVG_ROW * (row + 1), t0)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _svg_arrow(ladder: Ladder, a: Arrow, y: int, t0: float) -> list[str]:
    x1 = 40 + _x(ladder, a.src) * SVG_COL + SVG_COL // 2
    if a.dst == NOWHERE:
        x2 = x1 + (SVG_COL * 2 // 3) * (1 if _x(ladder, a.src) < len(ladder.columns) - 1 else -1)
    else:
        x2 = 40 + _x(ladder, a.dst) * SVG_COL + SVG_COL // 2
    colour = COLOURS.get(a.kind, "#333")
    label = _label(a)
    out = ['<g><title>' + html.escape(a.seen[0].src + " -> " + a.seen[0].dst + "; "
                                      + a.frames) + '</title>',
           f'<text x="4" y="{y + 4}" fill="#888" font-size="9">{a.time - t0:.3f}</text>',
           f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{colour}" stroke-width="1.6"'
           + (' marker-end="url(#head)"/>' if a.dst != NOWHERE else "/>"),
           f'<text x="{(x1 + x2) // 2}" y="{y - 4}" text-anchor="middle" fill="{colour}">'
           f'{html.escape(label)}</text>']
    mid = (x1 + x2) // 2
    if a.dst == NOWHERE or a.dropped:
        xe = x2 if a.dst == NOWHERE else x2 + (6 if x2 > x1 else -6)
        out.append(f'<text x="{xe}" y="{y + 4}" text-anchor="middle" fill="{PRIVATE}" '
                   f'font-weight="bold">X</text>')
    frames = ", ".join(f"{s.capture} #{s.frame}" for s in a.seen)
    if a.last:
        frames += " .. " + ", ".join(f"#{s.frame}" for s in a.last)
    under = [(frames, "#666")] + ([(a.nat, NAT)] if a.nat else [])
    if a.dst == NOWHERE:
        under.append((f"to {a.seen[0].dst}: private, unroutable", PRIVATE))
    if a.dropped:
        under.append((a.dropped, PRIVATE))
    if a.private:
        under.append(("still private: " + ", ".join(a.private), PRIVATE))
    for i, (line, colour_) in enumerate(under[:4]):
        out.append(f'<text x="{mid}" y="{y + 11 + 10 * i}" text-anchor="middle" '
                   f'fill="{colour_}" font-size="9">{html.escape(line)}</text>')
    out.append("</g>")
    return out


def as_json(ladder: Ladder) -> dict[str, Any]:
    """The ladder as data (the lab key quotes its arrows)."""
    return {"columns": [{"node": k, "label": v} for k, v in ladder.columns],
            "arrows": [{k: v for k, v in asdict(a).items() if k != "ident"}
                       for a in ladder.arrows]}


def write(ladder: Ladder, title: str, stem: Path) -> list[Path]:
    """stem.svg, stem.png (rendered from the same drawing), stem.txt and stem.json."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    doc = svg(ladder, title)
    stem.with_suffix(".svg").write_text(doc)
    stem.with_suffix(".txt").write_text(text(ladder))
    stem.with_suffix(".json").write_text(json.dumps(as_json(ladder), indent=1) + "\n")
    paths = [stem.with_suffix(".svg"), stem.with_suffix(".txt"), stem.with_suffix(".json")]
    png = _png(ladder, title, stem.with_suffix(".png"))
    return paths + ([png] if png else [])


def _png(ladder: Ladder, title: str, path: Path) -> Path | None:
    """The same ladder drawn with matplotlib (PNG needs no browser)."""
    from report.plots import _plt

    plt = _plt()
    n, cols = len(ladder.arrows), len(ladder.columns)
    width, height = 1.5 * cols + 0.6, 0.34 * (n + 3)
    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    # fixed margins instead of bbox_inches="tight", which draws every figure twice
    ax.set_position((0.0, 0.0, 1.0, 1.0 - 0.3 / height))
    ax.set_xlim(-0.7, cols - 0.3)
    ax.set_ylim(n + 0.5, -1.5)
    ax.axis("off")
    fig.text(0.01, 1.0 - 0.05 / height, title, fontsize=9, ha="left", va="top")
    for i, (_, label) in enumerate(ladder.columns):
        ax.axvline(i, color="#bbb", lw=0.8, ls="--")
        ax.text(i, -1, label, ha="center", va="center", fontsize=7, fontweight="bold")
    for row, a in enumerate(ladder.arrows):
        x1 = _x(ladder, a.src)
        x2 = x1 + 0.66 * (1 if x1 < cols - 1 else -1) if a.dst == NOWHERE else _x(ladder, a.dst)
        colour = COLOURS.get(a.kind, "#333")
        ax.annotate("", (x2, row), (x1, row),
                    arrowprops={"arrowstyle": "-" if a.dst == NOWHERE else "->",
                                "color": colour, "lw": 1.2})
        if a.dst == NOWHERE:
            ax.text(x2, row, "X", color=PRIVATE, ha="center", va="center", fontsize=8)
        ax.text((x1 + x2) / 2, row - 0.18, a.label, ha="center", fontsize=6, color=colour)
        for i, line in enumerate(_notes(a)[:2]):
            ax.text((x1 + x2) / 2, row + 0.08 + 0.2 * i, line, ha="center", va="top",
                    fontsize=5, color=PRIVATE if i or not a.nat else NAT)
    fig.savefig(path)
    plt.close(fig)
    return path
