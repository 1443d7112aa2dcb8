"""Shared fixtures: the default plan, and a running testbed (topology + STUN + both PBXs)."""
from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from natlab.guard import RunLock  # noqa: E402
from topology.plan import Plan, load_plan  # noqa: E402

requires_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces)")


def requires_tool(tool: str) -> pytest.MarkDecorator:
    """Skip (with the reason) where a program the test runs is not installed."""
    return pytest.mark.skipif(shutil.which(tool) is None, reason=f"{tool} is not installed")


@pytest.fixture(scope="session")
def plan() -> Plan:
    return load_plan()


@pytest.fixture(scope="module")
def testbed(plan: Plan, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Topology with the nat-aware trunk forwards, coturn and both kamailios up."""
    from scenarios.runner import credentials, port_forwards, start_services
    from topology.net import Network

    workdir = tmp_path_factory.mktemp("testbed")
    lock = RunLock()
    lock.acquire(workdir, sorted(e for lan in plan.lans for e in lan.phones))
    try:
        with ExitStack() as stack:
            net = stack.enter_context(Network(plan, port_forwards(plan, "nat-aware")))
            start_services(stack, net, plan, "nat-aware", None, workdir, credentials(plan, []))
            yield net
    finally:
        lock.release()
