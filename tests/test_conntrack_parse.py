"""A router's conntrack table and WAN drop counters, parsed from recorded output (no root).

tests/data/conntrack/r1-symmetric*: r1 with symmetric NAT after `turnutils_natdiscovery -m -f`
from p2001; the JSON lines are `python -m topology.conntrack --proto udp` (pyroute2), the
`conntrack -L` text was taken at the same moment by conntrack-tools.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from topology.conntrack import (
    ConntrackError,
    parse_drop_counters,
    parse_entries,
    status_flags,
)

DATA = Path(__file__).resolve().parent / "data" / "conntrack"
FIELD = re.compile(r"(src|dst|sport|dport)=(\S+)")


def _conntrack_tools(text: str) -> set[tuple[str, ...]]:
    """(orig src, dst, sport, dport, reply src, dst, sport, dport) per `conntrack -L` line."""
    rows = set()
    for line in text.splitlines():
        values = [v for _, v in FIELD.findall(line)]
        if len(values) == 8:
            rows.add(tuple(values))
    return rows


def test_pyroute2_dump_agrees_with_conntrack_tools() -> None:
    entries = parse_entries((DATA / "r1-symmetric.jsonl").read_text())
    ours = {(e.orig.src, e.orig.dst, str(e.orig.sport), str(e.orig.dport),
             e.reply.src, e.reply.dst, str(e.reply.sport), str(e.reply.dport)) for e in entries}
    assert ours == _conntrack_tools((DATA / "r1-symmetric-conntrack-L.txt").read_text())
    assert len(entries) == 4 and all(e.proto == "udp" and e.snat for e in entries)


def test_symmetric_nat_seen_in_the_table() -> None:
    entries = parse_entries((DATA / "r1-symmetric.jsonl").read_text())
    one_socket = [e for e in entries if e.orig.sport == 48253]
    # one local port toward three server addresses/ports: three public ports
    assert len({e.public for e in one_socket}) == 3 == len(one_socket)
    assert all(e.public[0] == "203.0.113.2" and not e.unreplied for e in entries)
    assert sum("ASSURED" in e.flags for e in entries) == 1


def test_drop_counters() -> None:
    inp = parse_drop_counters("INPUT", (DATA / "r1-symmetric-iptables-INPUT.txt").read_text(),
                              "r1-wan")
    fwd = parse_drop_counters("FORWARD",
                              (DATA / "r1-symmetric-iptables-FORWARD.txt").read_text(), "r1-wan")
    assert (inp.packets, inp.bytes) == (2, 240)  # the two change-address/port answers
    assert (fwd.packets, fwd.bytes) == (0, 0)
    assert parse_drop_counters("INPUT", (DATA / "r1-symmetric-iptables-INPUT.txt").read_text(),
                               "r2-wan").packets == 0


def test_flags_and_bad_input() -> None:
    assert status_flags(2 | 8 | 16) == ("SEEN_REPLY", "CONFIRMED", "SRC_NAT")
    with pytest.raises(ConntrackError, match="line 1"):
        parse_entries("{not json\n")
    with pytest.raises(ConntrackError, match="bad conntrack JSON"):
        parse_entries('{"proto": "udp"}\n')
