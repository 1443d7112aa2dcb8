"""`natlab cli`: the same topology with daemons up, driven through Mininet's CLI on stdin."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import requires_root
from helpers import assert_nothing_left

pytestmark = requires_root


def test_cli_session_then_teardown(tmp_path: Path) -> None:
    commands = ("p1002 ping -c1 -W1 192.0.2.10\n"
                "stun ping -c1 -W1 198.51.100.2\n"
                "r2 iptables -t nat -S PREROUTING\n"
                )
    script = tmp_path / "commands.txt"
    script.write_text(commands)
    res = subprocess.run([sys.executable, "-m", "natlab", "cli", "--results", str(tmp_path),
                          "--script", str(script)], capture_output=True, text=True, timeout=90)
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr  # Mininet prints command output through its log (stderr)
    assert "1 packets transmitted, 1 received" in out  # LAN -> public
    assert "1 packets transmitted, 0 received" in out  # public -> LAN blocked
    assert "--dport 5080 -j DNAT --to-destination 172.16.10.10:5080" in out
    logs = list(tmp_path.glob("*/pbx2/*.log"))
    assert logs and "OPTIONS" in logs[0].read_text()  # the readiness probe reached kamailio
    assert_nothing_left(["1002", "1005", "2001", "2005"])
