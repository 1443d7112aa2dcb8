"""[servers] stun2: the server host's second public address (RFC 5780 discovery)."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from topology.plan import DEFAULT_PLAN, ConfigError, parse_plan, read_toml


def _data() -> dict[str, Any]:
    return copy.deepcopy(read_toml(DEFAULT_PLAN, "config"))


def test_default_has_stun2() -> None:
    assert parse_plan(_data()).servers.stun2 == "192.0.2.11"


def test_stun2_is_optional() -> None:
    data = _data()
    del data["servers"]["stun2"]
    assert parse_plan(data).servers.stun2 is None


@pytest.mark.parametrize("value, message", [
    ("192.0.2.10", "taken by the core router or servers.stun"),
    ("192.0.2.1", "taken by the core router or servers.stun"),
    ("198.51.100.9", "servers.stun2: 198.51.100.9 is not a host address of 192.0.2.0/24"),
    ("x", "servers.stun2: not an IPv4 address"),
])
def test_bad_stun2(value: str, message: str) -> None:
    data = _data()
    data["servers"]["stun2"] = value
    with pytest.raises(ConfigError, match=message):
        parse_plan(data)
