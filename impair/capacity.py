"""How many packets per second the NFQUEUE shaper keeps on time, and the check scenarios pass.

bench/shaper.py measures it (p99 delay error <= 0.5 ms on 10 ± 2 ms, no loss) and writes
results/bench/shaper.json; natlab reads that file when it exists, else the figure below,
measured the same way on the reference machine (2 cores); NATLAB_SHAPER_RESULT names another
file (tests). The shaper only runs where the kernel
has no netem and the profile needs it (delay, jitter or bursty loss); one shaper per WAN
direction, each carrying every call's packets of that direction.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

PPS_PER_CALL = 50  # one direction: G.711 at 20 ms per packet
CEILING_PPS = 5000  # bench/shaper.py on the reference machine, netlink reader
RESULT = Path(__file__).resolve().parent.parent / "results" / "bench" / "shaper.json"


def ceiling_pps(path: Path | None = None) -> tuple[int, str]:
    """(packets/s one shaper keeps on time, where that figure comes from)."""
    path = path or Path(os.environ.get("NATLAB_SHAPER_RESULT") or RESULT)
    try:
        value = json.loads(path.read_text())["ceiling_pps"]
        if isinstance(value, int) and value > 0:
            return value, str(path)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return CEILING_PPS, "impair.capacity.CEILING_PPS"


def needs_shaper(values: Mapping[str, float]) -> bool:
    """Whether a WAN profile runs through the user-space shaper (rather than a kernel rule)."""
    bursty = values.get("loss_pct", 0) > 0 and values.get("loss_burst", 1) > 1
    return bool(values.get("delay_ms") or values.get("jitter_ms") or bursty)


def over_ceiling(calls: int, values: Mapping[str, float], netem: bool,
                 path: Path | None = None) -> str | None:
    """Why `calls` concurrent calls over this WAN profile are too many, or None."""
    if netem or not needs_shaper(values):
        return None
    ceiling, source = ceiling_pps(path)
    pps = calls * PPS_PER_CALL
    if pps <= ceiling:
        return None
    return (f"{calls} concurrent calls need {pps} packets/s through the WAN shaper, above its "
            f"measured ceiling of {ceiling} ({ceiling // PPS_PER_CALL} calls; {source})")
