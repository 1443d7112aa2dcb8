"""Reachability (as Mininet's natnet test), STUN through each NAT, and the isolation rule."""
from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from typing import Any

import pytest
from helpers import ping, requires_root

from topology.plan import DOC_RANGES, Plan

pytestmark = requires_root


def test_lan_reaches_public(testbed: Any, plan: Plan) -> None:
    for lan in plan.lans:
        for ext in lan.phones:
            assert ping(testbed.phone(ext), plan.servers.stun), f"{ext} cannot reach STUN"


def test_public_cannot_reach_lan(testbed: Any, plan: Plan) -> None:
    for host in (testbed.stun, testbed.attacker):
        for lan in plan.lans:
            assert not ping(host, lan.wan_ip), \
                f"{lan.router_name} answers {host.name}'s unsolicited WAN traffic"
            assert not ping(host, lan.pbx), f"{lan.pbx} reachable from {host.name}"
            for addr in lan.phones.values():
                assert not ping(host, addr), f"{addr} reachable from {host.name}"


def test_attacker_is_a_public_host(testbed: Any, plan: Plan) -> None:
    """atk has the plan's documentation-range address and reaches the public server only."""
    atk = testbed.attacker
    assert plan.servers.attacker is not None
    assert f"{plan.servers.attacker}/" in atk.cmd("ip -o -4 addr show dev atk-eth0")
    assert ping(atk, plan.servers.stun)


def test_lan_cannot_reach_other_lan(testbed: Any, plan: Plan) -> None:
    lan1, lan2 = plan.lans
    p1, p2 = testbed.phone(next(iter(lan1.phones))), testbed.phone(next(iter(lan2.phones)))
    assert not ping(p1, lan2.pbx)
    assert not ping(p2, lan1.pbx)
    assert not ping(p2, lan1.wan_ip), "the WAN firewall let an unsolicited ping in"


@pytest.mark.parametrize("lan_index", [0, 1])
def test_stun_binding_returns_router_public_address(testbed: Any, plan: Plan,
                                                    lan_index: int) -> None:
    lan = plan.lans[lan_index]
    ext, addr = sorted(lan.phones.items())[0]
    proc = testbed.phone(ext).popen(
        [sys.executable, "-m", "services.probe", "stun", plan.servers.stun, "3478",
         "--bind", addr, "--timeout", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err.decode()
    mapped = json.loads(out)["mapped"]
    assert mapped.split(":")[0] == lan.wan_ip


def _plan_nets(plan: Plan) -> list[ipaddress.IPv4Network]:
    return [lan.subnet for lan in plan.lans] + plan.public_subnets()


def test_isolation(testbed: Any, plan: Plan) -> None:
    """No emulated host has an address, a route or a link outside the plan's own networks."""
    nets = _plan_nets(plan)
    for host in testbed.net.hosts:
        for line in host.cmd("ip -o addr show").splitlines():
            fields = line.split()
            if fields[1] == "lo":
                continue
            assert fields[2] == "inet", f"{host.name} has a non-IPv4 address: {line}"
            addr = ipaddress.ip_interface(fields[3]).ip
            assert any(addr in n for n in nets), f"{host.name}: {addr} outside the plan"
        for route in host.cmd("ip -4 route show").splitlines():
            words = route.split()
            dest = words[0]
            if dest != "default":
                assert any(ipaddress.IPv4Network(dest).subnet_of(n) for n in nets), route
            if "via" in words:
                gw = ipaddress.ip_address(words[words.index("via") + 1])
                assert any(gw in n for n in nets), f"{host.name}: gateway outside plan: {route}"
        assert host.cmd("ip -6 route show").strip() == "", f"{host.name} has IPv6 routes"
    for net in plan.public_subnets():
        assert any(net.subnet_of(d) for d in DOC_RANGES), f"{net} is not a documentation range"


def test_bridges_have_no_address_and_only_our_ports(testbed: Any) -> None:
    for sw in testbed.net.switches:
        out = subprocess.run(["ip", "-o", "addr", "show", "dev", sw.name],
                             capture_output=True, text=True).stdout
        assert out.strip() == "", f"bridge {sw.name} has an address: {out}"
        ports = subprocess.run(["ip", "-o", "link", "show", "master", sw.name],
                               capture_output=True, text=True).stdout.splitlines()
        names = [p.split(":")[1].strip().split("@")[0] for p in ports]
        assert names and all(n.startswith(f"{sw.name}-eth") for n in names), names


def test_root_namespace_unreachable(testbed: Any, plan: Plan) -> None:
    """The root namespace's own addresses cannot be reached from any emulated host."""
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True,
                         text=True).stdout
    root_addrs = [ipaddress.ip_interface(line.split()[3]).ip for line in out.splitlines()]
    targets = [str(a) for a in root_addrs if not a.is_loopback][:3] or ["10.0.0.1"]
    for name in ("p1002", "p2005", "stun", "core", "r1", "atk"):
        host = testbed.net[name]
        for addr in targets:
            assert not ping(host, addr), f"{name} reaches the root namespace at {addr}"


OUTSIDE = ("10.255.255.1", "100.64.0.1", "9.9.9.9")  # in no network of the plan


def _route_out(testbed: Any, host: Any, addr: str, owners: dict[str, str]) -> str | None:
    """Follow `ip route get` node by node: None if some node has no route (the packet dies
    inside the emulation), else how it would leave."""
    node = host
    for _ in range(8):
        out = node.cmd(f"ip -4 route get {addr} 2>&1").strip()
        words = out.split()
        if "unreachable" in out:
            return None
        if words[:1] != [addr] or "via" not in words:
            return f"{node.name}: {out}"
        gw = words[words.index("via") + 1]
        if gw not in owners:
            return f"{node.name} sends {addr} to {gw}, outside the emulation"
        node = testbed.net[owners[gw]]
    return f"{host.name}: {addr} loops"


def test_no_route_out_of_the_emulation(testbed: Any, plan: Plan) -> None:
    """No emulated host can reach an address outside the emulation: every route toward one
    ends at a node with no route, and a ping to one from every host gets no answer."""
    owners = {}
    for host in testbed.net.hosts:
        for line in host.cmd("ip -o -4 addr show").splitlines():
            owners[str(ipaddress.ip_interface(line.split()[3]).ip)] = host.name
    assert not any(ipaddress.ip_address(a) in n for a in OUTSIDE for n in _plan_nets(plan))
    for host in testbed.net.hosts:
        for addr in OUTSIDE:
            leak = _route_out(testbed, host, addr, owners)
            assert leak is None, leak
        assert not ping(host, OUTSIDE[0]), f"{host.name} reaches {OUTSIDE[0]}"
