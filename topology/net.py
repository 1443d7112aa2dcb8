"""Bring the topology up and down: Mininet with LinuxBridge switches and no controller."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.node import Host
from mininet.nodelib import LinuxBridge

from natlab import spawn
from natlab.constants import ATTACKER_NODE
from topology.nat import NatOptions, RouterIfaces, RouterRules
from topology.plan import Lan, Plan, phone_name
from topology.router import (
    PortForward,
    configure_core,
    configure_nat_router,
    disable_ipv6,
)
from topology.topo import CORE, STUN, NatLabTopo, configure_server_host


def router_ifaces(lan: Lan) -> RouterIfaces:
    """A LAN router's interface names and addresses as topo.py builds them."""
    return RouterIfaces(wan=f"{lan.router_name}-wan", lan=f"{lan.router_name}-lan",
                        wan_ip=lan.wan_ip, lan_subnet=str(lan.subnet))


def _root_sysctl(key: str, value: str) -> None:
    path = Path("/proc/sys") / key.replace(".", "/")
    if path.exists():
        path.write_text(value)


class NatlabHost(Host):
    """A Mininet host whose processes (its shell, everything `popen` starts in it) die with
    natlab and are recorded for cleanup (natlab.spawn)."""

    def _popen(self, cmd: list[str], **params: Any) -> Any:
        return spawn.popen(cmd, **params)


class Network:
    """The running testbed network; use as a context manager so it always comes down."""

    def __init__(self, plan: Plan, forwards: dict[str, PortForward | None] | None = None,
                 nat: dict[str, NatOptions] | None = None, phones: set[str] | None = None,
                 slot: int = 0):
        """`forwards` and `nat` are keyed by LAN name ("lan1"); a missing LAN gets the default
        (no forward; port-restricted NAT, no hairpin, kernel timeouts, no SIP ALG). `phones`:
        the phones to build (None: all of the plan's; fewer namespaces come up faster).
        `slot` names the bridges, so networks in different slots can run side by side."""
        self.plan = plan
        self.phones = phones
        self.slot = slot
        self.forwards = forwards or {}
        self.nat = nat or {}
        unknown = set(self.nat) - {lan.name for lan in plan.lans}
        if unknown:
            raise ValueError(f"NAT options for unknown LAN(s): {', '.join(sorted(unknown))}")
        self.rules: dict[str, RouterRules] = {}  # LAN name -> the rules its router got
        self.net: Any = None

    def __enter__(self) -> Network:
        try:
            self.start()
        except BaseException:  # Ctrl-C or a failure half-way: take down what was built
            try:
                self.stop()
            except Exception:  # noqa: S110 - natlab.guard.clean_leftovers removes the rest
                pass
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        setLogLevel("error")
        topo = NatLabTopo(plan=self.plan, phones=self.phones, slot=self.slot)
        self.net = Mininet(topo=topo, controller=None,
                           switch=LinuxBridge, host=NatlabHost, autoSetMacs=True,
                           autoStaticArp=False, build=False, waitConnected=False)
        self.net.build()
        self.net.start()
        self._harden_bridges()
        for node in self.net.hosts:
            disable_ipv6(node)
        configure_core(self.net[CORE])
        configure_server_host(self.net[STUN], self.plan, self.net[CORE])
        for lan in self.plan.lans:
            self._configure_lan(lan)

    def _configure_lan(self, lan: Lan) -> None:
        router = self.net[lan.router_name]
        self.rules[lan.name] = configure_nat_router(
            router, router_ifaces(lan), lan.wan_gateway, self.forwards.get(lan.name),
            self.nat.get(lan.name, NatOptions()))

    def router(self, lan_name: str) -> Any:
        """The router node of a LAN ("lan1" -> r1)."""
        return self.net[next(lan for lan in self.plan.lans if lan.name == lan_name).router_name]

    def _harden_bridges(self) -> None:
        """Bridges and their ports live in the root namespace: give them no IPv6 either."""
        for sw in self.net.switches:
            for intf in [sw.name, *(i.name for i in sw.intfList() if i.name != "lo")]:
                _root_sysctl(f"net.ipv6.conf.{intf}.disable_ipv6", "1")

    def stop(self) -> None:
        if self.net is not None:
            net, self.net = self.net, None
            net.stop()

    def host(self, name: str) -> Any:
        return self.net[name]

    def phone(self, ext: str) -> Any:
        return self.net[phone_name(ext)]

    @property
    def stun(self) -> Any:
        return self.net[STUN]

    @property
    def attacker(self) -> Any:
        """The attacker host (atk); KeyError when the plan has no servers.attacker."""
        return self.net[ATTACKER_NODE]

    def host_pids(self) -> list[int]:
        return [int(h.pid) for h in self.net.hosts] if self.net else []

