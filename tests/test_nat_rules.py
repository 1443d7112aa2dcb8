"""The rules each NAT behaviour renders (pure text; no root)."""
from __future__ import annotations

import pytest

from topology.nat import (
    Filtering,
    Mapping,
    NatBehaviour,
    NatOptions,
    PortForward,
    RouterIfaces,
    nat_options,
    nat_table,
    render_rules,
)
from topology.router import nat_rules

IFACES = RouterIfaces(wan="r1-wan", lan="r1-lan", wan_ip="203.0.113.2",
                      lan_subnet="192.168.1.0/24")
TRUNK = PortForward(5080, "192.168.1.10")

# The router as it was before behaviours existed (port-restricted cone), rule for rule.
TODAY = [
    "iptables -t nat -A POSTROUTING -o r1-wan -j MASQUERADE",
    "iptables -t nat -A PREROUTING -i r1-wan -p udp --dport 5080 "
    "-j DNAT --to-destination 192.168.1.10:5080",
    "iptables -A INPUT -i r1-wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    "iptables -A INPUT -i r1-wan -j DROP",
    "iptables -A FORWARD -i r1-wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    "iptables -A FORWARD -i r1-wan -m conntrack --ctstate DNAT -j ACCEPT",
    "iptables -A FORWARD -i r1-wan -j DROP",
]


def test_default_is_todays_router() -> None:
    rules = render_rules(IFACES, NatOptions(), TRUNK)
    assert list(rules.commands) == TODAY
    assert rules.nft == ""
    assert nat_rules("r1-wan", TRUNK) == TODAY
    no_forward = nat_rules("r1-wan", None)
    assert [r for r in TODAY if "DNAT" not in r] == no_forward


@pytest.mark.parametrize("name, behaviour", [
    ("full-cone", NatBehaviour.FULL_CONE), ("EIM/EIF", NatBehaviour.FULL_CONE),
    ("eim-adf", NatBehaviour.RESTRICTED_CONE), ("PORT_RESTRICTED", NatBehaviour.PORT_RESTRICTED),
    ("APDM+APDF", NatBehaviour.SYMMETRIC), ("symmetric", NatBehaviour.SYMMETRIC),
])
def test_names_both_ways(name: str, behaviour: NatBehaviour) -> None:
    assert NatBehaviour.parse(name) is behaviour
    assert NatBehaviour.from_pair(behaviour.mapping, behaviour.filtering) is behaviour


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="full-cone \\(EIM/EIF\\)"):
        NatBehaviour.parse("cone")
    assert NatBehaviour.from_pair(Mapping.APDM, Filtering.EIF) is None


def test_symmetric_keeps_the_trunk_port_static() -> None:
    cmds = render_rules(IFACES, NatOptions(NatBehaviour.SYMMETRIC), TRUNK).commands
    static = ("iptables -t nat -A POSTROUTING -o r1-wan -p udp -s 192.168.1.10 --sport 5080 "
              "-j MASQUERADE --to-ports 5080")
    random = "iptables -t nat -A POSTROUTING -o r1-wan -j MASQUERADE --random-fully"
    assert cmds.index(static) < cmds.index(random)  # first match wins
    assert "iptables -t nat -A POSTROUTING -o r1-wan -j MASQUERADE" not in cmds
    assert TODAY[1] in cmds and TODAY[-1] == cmds[-1]


def test_cone_filtering_is_a_learned_map() -> None:
    full = render_rules(IFACES, NatOptions(NatBehaviour.FULL_CONE), None)
    restricted = render_rules(IFACES, NatOptions(NatBehaviour.RESTRICTED_CONE), None)
    assert 'iifname "r1-wan" meta l4proto udp dnat ip to udp dport map @cone' in full.nft
    assert "udp dport . ip saddr @peers dnat ip to udp dport map @cone" in restricted.nft
    assert "@peers dnat" not in full.nft
    for rules in (full, restricted):
        assert "iptables -A FORWARD -i r1-wan -m conntrack --ctstate DNAT -j ACCEPT" \
            in rules.commands  # learned DNATs pass the WAN firewall
        assert "hairpin" not in rules.nft
        assert "timeout 120s" in rules.nft  # mappings live as long as conntrack's UDP stream


def test_port_restricted_and_symmetric_have_no_inbound_dnat() -> None:
    for b in (NatBehaviour.PORT_RESTRICTED, NatBehaviour.SYMMETRIC):
        assert render_rules(IFACES, NatOptions(b), None).nft == ""
        hairpin = render_rules(IFACES, NatOptions(b, hairpin=True), None).nft
        assert 'iifname "r1-wan"' not in hairpin.split("chain inbound")[1]
        assert ('iifname "r1-lan" ip daddr 203.0.113.2 meta l4proto udp '
                "dnat ip to udp dport map @cone") in hairpin
        assert ('oifname "r1-lan" ip saddr 192.168.1.0/24 ct status dnat '
                "snat ip to 203.0.113.2") in hairpin


def test_timeouts_and_sip_alg() -> None:
    opts = NatOptions(NatBehaviour.FULL_CONE, udp_timeout_s=10, udp_stream_timeout_s=20,
                      sip_alg=True)
    rules = render_rules(IFACES, opts, None)
    assert "sysctl -qw net.netfilter.nf_conntrack_udp_timeout=10" in rules.commands
    assert "sysctl -qw net.netfilter.nf_conntrack_udp_timeout_stream=20" in rules.commands
    assert ("iptables -t raw -A PREROUTING -i r1-wan -p udp -m multiport --dports 5060,5080 "
            "-j CT --helper sip") in rules.commands
    assert "timeout 20s" in rules.nft
    assert not any("helper" in c for c in render_rules(IFACES, NatOptions(), None).commands)


def test_bad_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="udp_timeout_s"):
        NatOptions(udp_timeout_s=0)


def test_scenario_nat_table() -> None:
    got = nat_table({"lan1": "symmetric", "lan2": {"behaviour": "EIM/EIF", "hairpin": True,
                                                   "udp_timeout_s": 10}})
    assert got["lan1"] == NatOptions(NatBehaviour.SYMMETRIC)
    assert got["lan2"] == NatOptions(NatBehaviour.FULL_CONE, hairpin=True, udp_timeout_s=10)
    assert nat_table(None) == {}
    assert nat_options({}) == NatOptions()


@pytest.mark.parametrize("value, message", [
    ({"lan3": "symmetric"}, "unknown LAN"),
    ({"lan1": "cone"}, "nat.lan1: unknown NAT behaviour"),
    ({"lan1": {"hairpin": "yes"}}, "nat.lan1.hairpin must be true or false"),
    ({"lan1": {"udp_timeout_s": 2.5}}, "whole number"),
    ({"lan1": {"udp_timeout_s": 0}}, "nat.lan1: udp_timeout_s must be within"),
    ({"lan1": {"alg": True}}, "unknown key"),
    ("symmetric", "must be a table"),
])
def test_scenario_nat_table_errors(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        nat_table(value)
