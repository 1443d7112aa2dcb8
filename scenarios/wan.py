"""WAN profile of a scenario: impairments on the public core's egress toward each LAN router.

Every packet between the two LANs crosses exactly one of these links, so the configured
delay is the one-way network delay between the LANs. The mechanism (netem where the kernel
has it, else natlab's NFQUEUE shaper + TBF) is chosen at run time and written to wan.txt.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from scenarios.model import Scenario, wan_of
from topology.plan import Plan
from topology.topo import CORE


@contextmanager
def wan_profile(net: Any, plan: Plan, sc: Scenario, outdir: Path) -> Iterator[list[str]]:
    values = wan_of(sc, plan)
    lines: list[str] = []
    with ExitStack() as stack:
        if values:
            from impair.apply import apply
            from impair.profile import Impairment

            imp = Impairment.from_dict(values)
            for lan in plan.lans:
                intf = f"core-{lan.router_name}"
                applied = apply(net.host(CORE), intf, imp, outdir / "wan" / intf)
                stack.callback(applied.stop)
                lines.append(f"{intf}: {applied.describe()}")
        else:
            lines.append("clean: no impairment")
        (outdir / "wan.txt").write_text(f"profile {sc.wan}\n" + "\n".join(lines) + "\n")
        yield lines
