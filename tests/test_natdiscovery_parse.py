"""natdiscovery output -> Discovery, on outputs recorded in natlab's topology (no root).

tests/data/natdiscovery/<behaviour>-hairpin<0|1>-<tests>.txt were recorded from p2001 behind r1
configured with that behaviour (lifetime runs: UDP conntrack timeouts 3 s, timers 1 s and 6 s).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from services.natdiscovery import Discovery, compare, discovery_command, parse_discovery
from topology.nat import Filtering, Mapping, NatBehaviour, NatOptions

DATA = Path(__file__).resolve().parent / "data" / "natdiscovery"


def _read(name: str) -> str:
    return (DATA / name).read_text()


@pytest.mark.parametrize("behaviour", list(NatBehaviour))
def test_mapping_and_filtering(behaviour: NatBehaviour) -> None:
    for hairpin in (0, 1):
        d = parse_discovery(_read(f"{behaviour.value}-hairpin{hairpin}-mf.txt"))
        assert (d.mapping, d.filtering) == (behaviour.mapping, behaviour.filtering)
        assert d.behaviour is behaviour
        assert d.alg is False
        assert d.hairpin is None and d.lifetime_expired is None
        assert all(m.startswith("203.0.113.2:") for m in d.mapped) and len(d.mapped) >= 3
        assert compare(NatOptions(behaviour), d).ok


def test_symmetric_maps_per_destination() -> None:
    d = parse_discovery(_read("symmetric-hairpin0-mf.txt"))
    assert len(set(d.mapped[:2])) == 2  # one local port, two servers, two public ports
    d = parse_discovery(_read("port-restricted-hairpin0-mf.txt"))
    assert len(set(d.mapped[:2])) == 1


@pytest.mark.parametrize("behaviour", list(NatBehaviour))
def test_hairpin(behaviour: NatBehaviour) -> None:
    for hairpin in (False, True):
        d = parse_discovery(_read(f"{behaviour.value}-hairpin{int(hairpin)}-H.txt"))
        assert d.hairpin is hairpin
        assert compare(NatOptions(behaviour, hairpin=hairpin), d).ok
        assert not compare(NatOptions(behaviour, hairpin=not hairpin), d).ok


def test_lifetime() -> None:
    alive = parse_discovery(_read("port-restricted-hairpin0-tT1.txt"), lifetime_timer_s=1)
    assert (alive.lifetime_expired, alive.lifetime_s) == (False, 1)
    gone = parse_discovery(_read("port-restricted-hairpin0-tT6.txt"), lifetime_timer_s=6)
    assert (gone.lifetime_expired, gone.lifetime_s) == (True, None)


def test_mismatch_is_named() -> None:
    d = parse_discovery(_read("symmetric-hairpin0-mf.txt"))
    cmp = compare(NatOptions(NatBehaviour.FULL_CONE), d)
    assert cmp.mismatches == ("mapping: configured EIM, measured APDM",
                              "filtering: configured EIF, measured APDF")


def test_nothing_measured() -> None:
    assert parse_discovery("") == Discovery()
    assert parse_discovery("STUN receive timeout..\n").mapping is None
    assert Discovery(Mapping.APDM, Filtering.EIF).behaviour is None


def test_command() -> None:
    assert discovery_command("192.0.2.10", "mf") == ["turnutils_natdiscovery", "-m", "-f",
                                                     "192.0.2.10"]
    assert discovery_command("192.0.2.10", "t", timer_s=5)[-3:] == ["-T", "5", "192.0.2.10"]
    with pytest.raises(ValueError):
        discovery_command("192.0.2.10", "t")
