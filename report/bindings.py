"""Each router's NAT binding table mid-call, from the conntrack dump the run recorded (nat.json
for scenarios with a NAT setting, conntrack.json for the others): which private address and
port appear as which public one, toward whom, and whether the far side ever answered."""
from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from topology.plan import Plan

FILES = ("nat.json", "conntrack.json")
MAX_ROWS = 24  # per router; a table longer than a screen teaches nothing
HEADER = ("router", "direction", "host", "inside (private)", "public (WAN side)", "remote", "proto",
          "state")


@dataclass(frozen=True)
class Binding:
    router: str
    direction: str  # out | in | in (to the router itself)
    host: str  # who the inside address is: "2005", "PBX1"
    inside: str
    public: str
    remote: str
    proto: str
    state: str

    def row(self) -> tuple[str, ...]:
        return (self.router, self.direction, self.host, self.inside, self.public, self.remote,
                self.proto, self.state)


def _ep(t: dict[str, Any], side: str) -> str:
    port = t.get(f"{side[0]}port")
    return f"{t[side]}" + (f":{port}" if port is not None else "")


def _state(entry: dict[str, Any]) -> str:
    flags = entry.get("flags", [])
    words = ["replied" if "SEEN_REPLY" in flags else "UNREPLIED"]
    if "ASSURED" in flags:
        words.append("assured")
    if entry.get("timeout_s") is not None:
        words.append(f"{entry['timeout_s']} s left")
    return ", ".join(words)


def bindings(plan: Plan, folder: Path) -> tuple[list[Binding], list[str]]:
    """The bindings of every router, and a line per router whose table is missing."""
    data = next((json.loads((folder / f).read_text()) for f in FILES if (folder / f).exists()),
                None)
    if data is None:
        return [], []
    out: list[Binding] = []
    missing: list[str] = []
    hosts = {ip: ext for lan in plan.lans for ext, ip in lan.phones.items()}
    hosts.update({lan.pbx: f"PBX{lan.index}" for lan in plan.lans})
    for lan in plan.lans:
        entry = data.get("routers", {}).get(lan.name)
        if entry is None:
            continue
        if entry.get("conntrack_error"):
            missing.append(f"{lan.router_name}: no table ({entry['conntrack_error']})")
        for e in entry.get("conntrack", []):
            orig, reply = e["orig"], e["reply"]
            if ipaddress.ip_address(orig["src"]) in lan.subnet:  # from the LAN: source NAT
                direction, inside, public = "out", _ep(orig, "src"), _ep(reply, "dst")
                remote = _ep(orig, "dst")
            elif orig["dst"] == lan.wan_ip and reply["src"] != lan.wan_ip:  # in: forward or mapping
                direction, inside, public = "in", _ep(reply, "src"), \
                    _ep(orig, "dst")
                remote = _ep(orig, "src")
            elif orig["dst"] == lan.wan_ip:  # accepted by the router itself
                direction, inside, public = f"in (to {lan.router_name})", "-", _ep(orig, "dst")
                remote = _ep(orig, "src")
            else:
                continue  # not through this LAN's NAT
            host = hosts.get(inside.rsplit(":", 1)[0], lan.router_name if inside == "-" else "")
            out.append(Binding(lan.router_name, direction, host, inside, public, remote,
                               str(e.get("proto", "")), _state(e)))
    return sorted(out, key=lambda b: (b.router, b.direction, b.inside, b.remote)), missing


def capped(rows: list[Binding]) -> tuple[list[Binding], int]:
    kept: list[Binding] = []
    per: dict[str, int] = {}
    for b in rows:
        per[b.router] = per.get(b.router, 0) + 1
        if per[b.router] <= MAX_ROWS:
            kept.append(b)
    return kept, len(rows) - len(kept)


def markdown(plan: Plan, folder: Path) -> list[str]:
    rows, missing = bindings(plan, folder)
    if not rows and not missing:
        return []
    kept, more = capped(rows)
    out = ["NAT bindings mid-call (each router's conntrack table, UDP):", "",
           "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(b.row()) + " |" for b in kept]
    out += [f"({more} more entries left out)"] if more else []
    return [*out, *[f"- {m}" for m in missing], ""]
