"""A router's NAT state: its conntrack table (pyroute2) and the WAN drop counters.

Inside a router's namespace:   python -m topology.conntrack [--proto udp]   -> JSON lines
From the host:                 read_conntrack(router_node), wan_drops(router_node, "r1-wan")

Parsing (JSON lines -> entries, `iptables -S -v`-style output -> counters) is pure.
"""
from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from natlab.errors import RunFailure

STATUS_BITS = {1: "EXPECTED", 2: "SEEN_REPLY", 4: "ASSURED", 8: "CONFIRMED", 16: "SRC_NAT",
               32: "DST_NAT", 128: "SRC_NAT_DONE", 256: "DST_NAT_DONE", 512: "DYING",
               8192: "HELPER"}
PROTOS = {socket.IPPROTO_UDP: "udp", socket.IPPROTO_TCP: "tcp", socket.IPPROTO_ICMP: "icmp"}
ROOT = Path(__file__).resolve().parent.parent


class ConntrackError(RunFailure):
    """The table or the counters could not be read; the message is one line."""


@dataclass(frozen=True)
class Tuple:
    src: str
    dst: str
    sport: int | None
    dport: int | None


@dataclass(frozen=True)
class Entry:
    """One conntrack entry: original and reply direction, status flags, seconds left."""

    proto: str
    orig: Tuple
    reply: Tuple
    flags: tuple[str, ...]
    timeout_s: int | None

    @property
    def snat(self) -> bool:
        return "SRC_NAT" in self.flags

    @property
    def unreplied(self) -> bool:
        return "SEEN_REPLY" not in self.flags

    @property
    def public(self) -> tuple[str, int | None]:
        """Where the original sender appears after NAT: the reply's destination."""
        return self.reply.dst, self.reply.dport


def status_flags(status: int) -> tuple[str, ...]:
    return tuple(name for bit, name in sorted(STATUS_BITS.items()) if status & bit)


def entry_from_json(obj: dict[str, Any]) -> Entry:
    try:
        return Entry(proto=str(obj["proto"]), orig=Tuple(**obj["orig"]),
                     reply=Tuple(**obj["reply"]), flags=tuple(obj["flags"]),
                     timeout_s=obj.get("timeout_s"))
    except (KeyError, TypeError) as exc:
        raise ConntrackError(f"bad conntrack JSON entry: {exc}") from None


def parse_entries(text: str) -> list[Entry]:
    """JSON lines (one entry each, as `python -m topology.conntrack` prints) -> entries."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append(entry_from_json(json.loads(line)))
            except ValueError as exc:
                raise ConntrackError(f"conntrack output line {n}: {exc}") from None
    return out


# `iptables -v -x -n -L INPUT` rows: pkts bytes target prot opt in out source destination
_ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s")


@dataclass(frozen=True)
class DropCount:
    chain: str
    packets: int
    bytes: int


def parse_drop_counters(chain: str, listing: str, wan: str) -> DropCount:
    """Sum the DROP rules on `wan` in an `iptables -v -x -n -L CHAIN` listing."""
    pkts = octets = 0
    for line in listing.splitlines():
        m = _ROW.match(line)
        if m and m.group(3) == "DROP" and m.group(6) == wan:
            pkts += int(m.group(1))
            octets += int(m.group(2))
    return DropCount(chain, pkts, octets)


class Node(Protocol):
    name: str

    def cmd(self, *args: str) -> str: ...


def wan_drops(router: Node, wan: str) -> dict[str, DropCount]:
    """Unsolicited inbound packets the WAN firewall dropped, per chain (INPUT, FORWARD)."""
    return {chain: parse_drop_counters(chain, router.cmd(f"iptables -v -x -n -L {chain}"), wan)
            for chain in ("INPUT", "FORWARD")}


def read_conntrack(router: Any, proto: str | None = "udp", timeout: float = 10.0) -> list[Entry]:
    """The router's conntrack table, read by this module's CLI inside its namespace."""
    args = [sys.executable, "-m", "topology.conntrack"] + (["--proto", proto] if proto else [])
    proc = router.popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, cwd=str(ROOT))
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise ConntrackError(f"{router.name}: conntrack dump took over {timeout:g} s") from None
    if proc.returncode != 0:
        raise ConntrackError(f"{router.name}: conntrack dump failed: "
                             f"{err.decode(errors='replace').strip()[:200]}")
    return parse_entries(out.decode())


def dump(proto: str | None) -> list[Entry]:
    """This namespace's conntrack table (needs CAP_NET_ADMIN)."""
    from pyroute2.conntrack import Conntrack

    entries = []
    with Conntrack() as ct:
        for e in ct.dump_entries():
            name = PROTOS.get(e.tuple_orig.proto, str(e.tuple_orig.proto))
            if proto and name != proto:
                continue
            o, r = e.tuple_orig, e.tuple_reply
            entries.append(Entry(
                proto=name, orig=Tuple(o.saddr, o.daddr, o.sport, o.dport),
                reply=Tuple(r.saddr, r.daddr, r.sport, r.dport),
                flags=status_flags(e.status or 0), timeout_s=e.timeout))
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m topology.conntrack")
    parser.add_argument("--proto", choices=sorted(PROTOS.values()), default=None)
    args = parser.parse_args(argv)
    try:
        entries = dump(args.proto)
    except OSError as exc:
        print(f"conntrack: {exc}", file=sys.stderr)
        return 1
    for e in entries:
        print(json.dumps(asdict(e)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
