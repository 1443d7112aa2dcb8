"""Networks side by side (natlab run --jobs): two slots up at once, each its own bridges and
namespaces with the same addresses; each reaches its own STUN host; nothing left after."""
from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from helpers import assert_nothing_left, ping, requires_root

from natlab.constants import switch_name
from natlab.guard import RunLock, leftover_links
from scenarios.runner import port_forwards
from topology.net import Network
from topology.plan import Plan

pytestmark = requires_root


def test_two_slots_side_by_side(plan: Plan, tmp_path: Path) -> None:
    base = sorted(e for lan in plan.lans for e in sorted(lan.phones)[:2])
    lock = RunLock()
    lock.acquire(tmp_path, sorted(e for lan in plan.lans for e in lan.phones))
    try:
        with ExitStack() as stack:
            nets = [stack.enter_context(Network(plan, port_forwards(plan, "nat-aware"),
                                                phones=set(base), slot=k)) for k in (1, 2)]
            links = leftover_links()
            for k in (1, 2):
                assert {switch_name(n, k) for n in (1, 2, 3)} <= set(links)
            assert "s1" not in links  # slot 0's bridges are not used
            for net in nets:
                for ext in base:
                    assert ping(net.phone(ext), plan.servers.stun), f"{ext} in slot {net.slot}"
            # a phone of one slot is not in the other's namespaces
            ip = plan.lan_of(base[0]).phones[base[0]]
            assert nets[0].phone(base[0]).pid != nets[1].phone(base[0]).pid
            assert ip in nets[1].phone(base[0]).cmd("ip -4 -o addr show")
    finally:
        lock.release()
    assert_nothing_left(base)
