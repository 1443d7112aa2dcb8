"""The paper's network as a pure Mininet graph (no processes; buildable without root).

    LAN1 192.168.1.0/24 (2xxx)                           LAN2 172.16.10.0/24 (1xxx)
    p2001  p2005  pbx1                                   pbx2  p1002  p1005
       \\    |    /                                          \\    |    /
           s1                                                   s2
           |  r1-lan .1                                r2-lan .1 |
          r1  NAT + WAN firewall                NAT + WAN firewall r2
           |  r1-wan 203.0.113.2                198.51.100.2 r2-wan |
           +------------------- core --------------------------+
                                 | 192.0.2.1
                                 s3 -- stun 192.0.2.10 (coturn; + stun2 192.0.2.11 on lo)
                                  +-- atk 192.0.2.66 (the attacker, when the plan has one)

Every node is a namespace; the switches are bridges with no address. Nothing links to the
root namespace's IP stack, and public addresses come from RFC 5737's documentation ranges.
"""
from __future__ import annotations

from typing import Any

from mininet.topo import Topo

from natlab.constants import ATTACKER_NODE, STUN_NODE, switch_name
from natlab.constants import CORE as CORE_NODE
from topology.plan import Plan, phone_name
from topology.router import Node, run

CORE, STUN = CORE_NODE, STUN_NODE


def _cidr(addr: str, lan_prefixlen: int) -> str:
    return f"{addr}/{lan_prefixlen}"


class NatLabTopo(Topo):
    """Two NATed LANs, a core router and a server subnet, from an address plan."""

    def build(self, *args: Any, **params: Any) -> None:
        plan: Plan = params["plan"]
        only = params.get("phones")  # build only these phones (None: every phone of the plan)
        slot = params.get("slot", 0)  # which bridge names (networks side by side)
        core = self.addHost(CORE, ip=None)
        for lan in plan.lans:
            n = lan.index
            plen = lan.subnet.prefixlen
            switch = self.addSwitch(switch_name(n, slot))
            router = self.addHost(lan.router_name, ip=None)
            self.addLink(router, switch, intfName1=f"{lan.router_name}-lan",
                         params1={"ip": _cidr(lan.router, plen)})
            pbx = self.addHost(lan.pbx_name, ip=_cidr(lan.pbx, plen),
                               defaultRoute=f"via {lan.router}")
            self.addLink(pbx, switch)
            for ext, addr in sorted(lan.phones.items()):
                if only is not None and ext not in only:
                    continue
                phone = self.addHost(phone_name(ext), ip=_cidr(addr, plen),
                                     defaultRoute=f"via {lan.router}")
                self.addLink(phone, switch)
            wlen = lan.wan_subnet.prefixlen
            self.addLink(router, core, intfName1=f"{lan.router_name}-wan",
                         intfName2=f"core-{lan.router_name}",
                         params1={"ip": _cidr(lan.wan_ip, wlen)},
                         params2={"ip": _cidr(lan.wan_gateway, wlen)})
        srv = plan.servers
        switch = self.addSwitch(switch_name(3, slot))
        self.addLink(core, switch, intfName1="core-srv",
                     params1={"ip": _cidr(srv.gateway, srv.subnet.prefixlen)})
        stun = self.addHost(STUN, ip=_cidr(srv.stun, srv.subnet.prefixlen),
                            defaultRoute=f"via {srv.gateway}")
        self.addLink(stun, switch)
        if srv.attacker is not None:
            atk = self.addHost(ATTACKER_NODE, ip=_cidr(srv.attacker, srv.subnet.prefixlen),
                               defaultRoute=f"via {srv.gateway}")
            self.addLink(atk, switch)


def configure_server_host(stun: Node, plan: Plan, core: Node | None = None) -> None:
    """Give the server host its second address (a /32 on lo: this kernel has no dummy links)
    and routes with an explicit source, so each answer leaves from the address it was asked on;
    the core routes the /32 to it."""
    srv = plan.servers
    if srv.stun2 is None:
        return
    run(stun, f"ip addr replace {srv.stun2}/32 dev lo")
    run(stun, f"ip route replace default via {srv.gateway} dev {stun.name}-eth0 src {srv.stun}")
    if core is not None:
        run(core, f"ip route replace {srv.stun2}/32 via {srv.stun} dev core-srv")
