"""The network as a text picture, drawn from the plan actually used (addresses included)."""
from __future__ import annotations

from topology.plan import Lan, Plan, phone_name

WIDTH = 46
SHOWN = 2  # phones drawn one per line; more are summed up in one line


def _side(lan: Lan) -> list[str]:
    out = [f"LAN{lan.index} {lan.subnet} ({lan.prefix}xxx)"]
    phones = sorted(lan.phones.items())
    summed = len(phones) > SHOWN + 1  # the phones for concurrent calls, in one line
    out += [f"  {phone_name(e):6} {ip}" for e, ip in (phones[:SHOWN] if summed else phones)]
    if summed:
        (first, a), (last, b) = phones[SHOWN], phones[-1]
        out.append(f"  {phone_name(first)}..{last} {a}..{b.rsplit('.', 1)[-1]}"
                   f" ({len(phones) - SHOWN} more)")
    out += [f"  {lan.pbx_name:6} {lan.pbx}  (PBX, kamailio)",
            f"        | switch s{lan.index}",
            f"  {lan.router_name:6} {lan.router}  (LAN side)",
            "         NAT + WAN firewall",
            f"         {lan.wan_ip}  (public, WAN side)"]
    return out


def diagram(plan: Plan) -> str:
    left, right = _side(plan.lans[0]), _side(plan.lans[1])
    rows = max(len(left), len(right))
    left += [""] * (rows - len(left))
    right += [""] * (rows - len(right))
    lines = [f"{a:<{WIDTH}}{b}".rstrip() for a, b in zip(left, right, strict=True)]
    mid = " " * 9 + "|" + " " * (WIDTH - 1) + "|"
    lines += [mid,
              " " * 9 + "+" + "-" * 14 + " core (router) " + "-" * (WIDTH - 30) + "+",
              " " * 29 + f"| {plan.servers.gateway}  (switch s3)",
              " " * 29 + f"stun {plan.servers.stun}  (coturn)",
              *([" " * 29 + f"atk  {plan.servers.attacker}  (attacker)"]
                if plan.servers.attacker else []),
              "",
              "Every node is a network namespace; public addresses are from the documentation "
              "ranges (RFC 5737)."]
    return "\n".join(lines) + "\n"
