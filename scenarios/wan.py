"""WAN profile of a scenario: impairments on the public core's egress toward each LAN router.

Every packet between the two LANs crosses exactly one of these links, so the configured
delay is the one-way network delay between the LANs. The mechanism (netem where the kernel
has it, else natlab's NFQUEUE shaper + TBF) is chosen at run time and recorded.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from natlab.constants import CORE
from scenarios.model import Scenario, wan_of
from topology.plan import Plan


@contextmanager
def wan_profile(net: Any, plan: Plan, sc: Scenario, outdir: Path) -> Iterator[dict[str, Any]]:
    """Apply the scenario's profile; yields what the scenario record keeps of it: the profile
    name, its values and, per impaired link, the mechanism used."""
    values = wan_of(sc, plan)
    links: dict[str, str] = {}
    with ExitStack() as stack:
        if values:
            from impair.apply import apply
            from impair.profile import Impairment

            imp = Impairment.from_dict(values)
            for lan in plan.lans:
                intf = f"{CORE}-{lan.router_name}"
                applied = apply(net.host(CORE), intf, imp, outdir / "wan" / intf)
                stack.callback(applied.stop)
                links[intf] = applied.describe()
        yield {"profile": sc.wan, "values": values, "links": links}


def mechanism(wan: dict[str, Any]) -> str:
    """One line for the report: how the profile was applied."""
    links = wan.get("links") or {}
    return " ".join(f"{k}: {v}" for k, v in links.items()) or "no impairment"
