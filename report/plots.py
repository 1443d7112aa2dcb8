"""QoS figures (matplotlib, PNG): one function per figure, each returns the file it wrote."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from analysis.emodel import compute, from_measurement
from analysis.qos import CODEC, JITTER_BUFFER_MS, Direction
from natlab.spawn import deferred


def _plt() -> Any:
    """pyplot on the Agg backend. The first import takes a while and must not be cut by a stop
    signal: a half-imported matplotlib stays broken for the interrupted run's second report."""
    with deferred():
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

    return plt


def jitter_over_time(rows: list[Direction], path: Path, title: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    for r in rows:
        ax.plot(r.series["t_s"], r.series["jitter_ms"], lw=0.8,
                label=f"{r.call} {r.sender}->{r.receiver}")
    ax.set(xlabel="time since first packet (s)", ylabel="RFC 3550 jitter (ms)", title=title)
    if len(rows) <= 10:
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def delta_histogram(rows: list[Direction], path: Path, title: str) -> Path:
    plt = _plt()
    deltas = [d for r in rows for d in r.series["delta_ms"][1:]]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(deltas, bins=80)
    ax.axvline(20.0, color="k", ls=":", lw=1, label="ptime 20 ms")
    ax.set(xlabel="inter-arrival delta (ms)", ylabel="packets", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def owd_distribution(rows: list[Direction], path: Path, title: str) -> Path:
    plt = _plt()
    owd = sorted(d for r in rows for d in r.series["owd_ms"])
    fig, ax = plt.subplots(figsize=(6, 4))
    if owd:
        ax.plot(owd, [i / len(owd) for i in range(1, len(owd) + 1)])
    ax.set(xlabel="one-way delay (ms), sender capture to receiver capture", ylabel="CDF",
           title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def mos_per_call(rows: list[Direction], path: Path, title: str) -> Path:
    plt = _plt()
    labels = [f"{r.call}\n{r.sender}>{r.receiver}\n{r.media}" for r in rows]
    x = range(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, len(rows) * 0.5), 4))
    ax.bar([i - 0.2 for i in x], [r.mos_g107 or 0.0 for r in rows], 0.4, label="G.107")
    ax.bar([i + 0.2 for i in x], [r.mos_paper for r in rows], 0.4, label="paper's formula")
    ax.axhline(4.4, color="k", ls=":", lw=1, label="paper: 4.4")
    ax.set_xticks(list(x), labels, fontsize=6)
    ax.set(ylim=(1, 4.6), ylabel="MOS", title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _g107_curve(loss: list[float], delay: list[float]) -> list[float]:
    return [compute(from_measurement(CODEC, d, p, jitter_buffer_ms=JITTER_BUFFER_MS)).MOS
            for p, d in zip(loss, delay, strict=True)]


def sweep(points: list[tuple[str, float, Direction]], path: Path) -> Path:
    """points: (axis 'loss'|'delay', configured value, measured direction)."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    losses = [i * 0.25 for i in range(0, 49)]
    a1.plot(losses, _g107_curve(losses, [0.0] * len(losses)), label="G.107 (g711, PLC)")
    delays = [float(d) for d in range(0, 401, 10)]
    a2.plot(delays, _g107_curve([0.0] * len(delays), delays), label="G.107 (g711)")
    for axis, value, d in points:  # x: what was configured; y: MOS from what was measured
        ax = a1 if axis == "loss" else a2
        ax.plot([value], [d.mos_g107 or 0.0], "o", color="C3")
    a1.plot([], [], "o", color="C3", label="measured call, at its configured loss")
    a2.plot([], [], "o", color="C3", label="measured call, at its configured delay")
    a1.set(xlabel="configured packet loss (%)", ylabel="MOS", title="MOS against loss",
           ylim=(1, 4.6))
    a2.set(xlabel="configured one-way delay (ms)", ylabel="MOS", title="MOS against delay",
           ylim=(1, 4.6))
    a1.legend()
    a2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
