"""Each NAT behaviour, measured from inside the topology (RFC 5780 discovery against coturn).

Per behaviour both routers are configured (r1 with hairpinning, r2 without, then swapped by
the next case), discovery runs from a phone on each LAN, and the measured mapping, filtering
and hairpinning must equal the configured ones.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, requires_root

from natlab.constants import SIP_PORT, STUN_PORT, TRUNK_PORT
from natlab.guard import AlreadyRunning, RunLock
from services.coturn import Coturn, CoturnOptions, TurnAuth
from services.natdiscovery import compare, run_discovery
from services.rtpengine import Rtpengine, RtpengineOptions
from topology.conntrack import read_conntrack, wan_drops
from topology.nat import NatBehaviour, NatOptions
from topology.net import Network
from topology.plan import Plan
from topology.router import PortForward, set_sip_alg_params, sip_alg_params

pytestmark = requires_root
LOCK_WAIT_S = 300.0  # another natlab run may hold the run lock for a while
TURN = TurnAuth()


@pytest.fixture(scope="module")
def run_lock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    lock = RunLock()
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            lock.acquire(tmp_path_factory.mktemp("natlock"), [])
            break
        except AlreadyRunning:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)  # polling a lock held by another process, bounded above
    try:
        yield
    finally:
        lock.release()


@contextmanager
def lab(plan: Plan, workdir: Path, nat: dict[str, NatOptions],
        forwards: dict[str, PortForward | None] | None = None) -> Iterator[Network]:
    """Topology with coturn (STUN + TURN) on both public server addresses."""
    assert plan.servers.stun2 is not None
    with ExitStack() as stack:
        net = stack.enter_context(Network(plan, forwards or {}, nat))
        coturn = Coturn(net.stun, workdir / "coturn",
                        CoturnOptions((plan.servers.stun, plan.servers.stun2), turn=TURN))
        coturn.render()
        coturn.start()
        stack.callback(coturn.stop)
        coturn.wait_ready(10.0)
        yield net


def _trunks(plan: Plan) -> dict[str, PortForward | None]:
    return {lan.name: PortForward(TRUNK_PORT, lan.pbx) for lan in plan.lans}


@pytest.mark.parametrize("behaviour", list(NatBehaviour))
def test_measured_equals_configured(behaviour: NatBehaviour, plan: Plan, tmp_path: Path,
                                    run_lock: None) -> None:
    nat = {"lan1": NatOptions(behaviour, hairpin=True), "lan2": NatOptions(behaviour)}
    with lab(plan, tmp_path, nat, _trunks(plan)) as net:
        for lan in plan.lans:
            phone = net.phone(sorted(lan.phones)[0])
            measured = run_discovery(phone, plan.servers.stun, tmp_path, "mf")
            hairpin = run_discovery(phone, plan.servers.stun, tmp_path, "H")
            result = compare(nat[lan.name], measured)
            assert result.ok, f"{lan.name}: {result.mismatches}"
            assert hairpin.hairpin is nat[lan.name].hairpin, f"{lan.name} hairpin"
            assert all(m.split(":")[0] == lan.wan_ip for m in measured.mapped)
            # the router's own view: the phone's flows, translated to its public address
            servers = (plan.servers.stun, plan.servers.stun2)
            entries = [e for e in read_conntrack(net.host(lan.router_name))
                       if e.orig.src == phone.IP() and e.orig.dst in servers]
            assert entries and all(e.public[0] == lan.wan_ip for e in entries)
            drops = wan_drops(net.host(lan.router_name), f"{lan.router_name}-wan")
            # change-address/port answers are unsolicited unless filtering is EIF
            unsolicited = drops["INPUT"].packets + drops["FORWARD"].packets
            assert (unsolicited == 0) == (behaviour is NatBehaviour.FULL_CONE), drops


def test_symmetric_keeps_trunk_port(plan: Plan, tmp_path: Path, run_lock: None) -> None:
    lan = plan.lans[0]
    nat = {"lan1": NatOptions(NatBehaviour.SYMMETRIC)}
    with lab(plan, tmp_path, nat, _trunks(plan)) as net:
        pbx = net.host(lan.pbx_name)
        args = ["turnutils_natdiscovery", "-m", "-L", lan.pbx, "-l", str(TRUNK_PORT),
                plan.servers.stun]
        out = pbx.popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT).communicate(
            timeout=30)[0].decode()
        (tmp_path / "trunk.txt").write_text(out)
        assert "NAT with Endpoint Independent Mapping!" in out  # static for the trunk port
        assert out.count(f"UDP reflexive addr: {lan.wan_ip}:{TRUNK_PORT}") >= 2
        phone = run_discovery(net.phone(sorted(lan.phones)[0]), plan.servers.stun, tmp_path,
                              "m")
        assert phone.mapping is NatBehaviour.SYMMETRIC.mapping  # the rest is random


@pytest.mark.parametrize("behaviour", [NatBehaviour.PORT_RESTRICTED, NatBehaviour.FULL_CONE])
def test_mapping_lifetime(behaviour: NatBehaviour, plan: Plan, tmp_path: Path,
                          run_lock: None) -> None:
    """Conntrack's UDP timeouts (3 s here) bound a mapping; a cone's learned map too."""
    nat = {"lan1": NatOptions(behaviour, udp_timeout_s=3, udp_stream_timeout_s=3)}
    with lab(plan, tmp_path, nat) as net:
        phone = net.phone(sorted(plan.lans[0].phones)[0])
        alive = run_discovery(phone, plan.servers.stun, tmp_path, "t", timer_s=1)
        assert alive.lifetime_expired is False and alive.lifetime_s == 1
        gone = run_discovery(phone, plan.servers.stun, tmp_path / "6", "t", timer_s=6)
        assert gone.lifetime_expired is True


def _turn_allocate(host: Any, server: str) -> dict[str, Any]:
    proc = host.popen([sys.executable, "-m", "services.turnclient", server, str(STUN_PORT),
                       TURN.user, TURN.password, "--timeout", "5"],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(ROOT))
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


def test_turn_allocation_through_symmetric_nat(plan: Plan, tmp_path: Path,
                                               run_lock: None) -> None:
    nat = {lan.name: NatOptions(NatBehaviour.SYMMETRIC) for lan in plan.lans}
    with lab(plan, tmp_path, nat) as net:
        for lan in plan.lans:
            got = _turn_allocate(net.phone(sorted(lan.phones)[0]), plan.servers.stun)
            relay_ip, relay_port = got["relayed"].split(":")
            assert relay_ip == plan.servers.stun
            assert TURN.min_port <= int(relay_port) <= TURN.max_port
            assert got["mapped"].split(":")[0] == lan.wan_ip


def test_sip_alg_helper_is_attached(plan: Plan, tmp_path: Path, run_lock: None) -> None:
    nat = {"lan1": NatOptions(sip_alg=True)}
    with lab(plan, tmp_path, nat) as net:
        lan = plan.lans[0]
        phone = net.phone(sorted(lan.phones)[0])
        # one datagram from the phone's SIP port toward the public server (nobody listens)
        phone.cmd(f"{sys.executable} -c \"import socket; s=socket.socket(2, 2); "
                  f"s.bind(('', {SIP_PORT})); s.sendto(b'OPTIONS', "
                  f"('{plan.servers.stun}', {SIP_PORT}))\"")
        sip = [e for e in read_conntrack(net.host(lan.router_name))
               if e.orig.dport == SIP_PORT]
        assert sip and "HELPER" in sip[0].flags
        other = [e for e in read_conntrack(net.host(plan.lans[1].router_name))]
        assert not any("HELPER" in e.flags for e in other)


def test_sip_alg_params_set_and_restored() -> None:
    before = sip_alg_params()
    assert before["ports"] == str(SIP_PORT)  # read-only: the helper's own port list
    flipped = "0" if before["sip_direct_media"] == "1" else "1"
    previous = set_sip_alg_params({"sip_direct_media": flipped})
    try:
        assert previous == {"sip_direct_media": before["sip_direct_media"]}
        assert sip_alg_params()["sip_direct_media"] == flipped
    finally:
        set_sip_alg_params(previous)
    assert sip_alg_params() == before


def test_rtpengine_answers_ping(plan: Plan, tmp_path: Path, run_lock: None) -> None:
    with lab(plan, tmp_path, {}) as net:
        lan = plan.lans[0]
        rtp = Rtpengine(net.host(lan.pbx_name), tmp_path / "rtpengine",
                        RtpengineOptions(ip=lan.pbx))
        rtp.render()
        rtp.start()
        try:
            rtp.wait_ready(10.0)
            assert rtp.running
        finally:
            rtp.stop()
        assert not rtp.running
