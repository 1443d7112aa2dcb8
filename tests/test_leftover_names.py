"""The end of a run names each leftover process and the scenario folder it came from (no root)."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from natlab.guard import _comm


def test_a_leftover_is_named_with_its_scenario(tmp_path: Path) -> None:
    rundir = tmp_path / "20261203-120000"
    cfg = rundir / "512_enumerate_protected" / "pbx1.cfg"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", str(cfg)])
    try:
        deadline = time.monotonic() + 5
        while str(cfg) not in Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode():
            assert time.monotonic() < deadline, "the child never showed its command line"
            time.sleep(0.02)
        comm = Path(f"/proc/{proc.pid}/comm").read_text().strip()
        assert _comm(proc.pid, str(rundir)) == f"{comm}, 512_enumerate_protected"
        assert _comm(proc.pid, str(tmp_path / "another-run")) == comm
        assert _comm(proc.pid) == comm
    finally:
        proc.kill()
        proc.wait()
    assert _comm(proc.pid, str(rundir)) == "gone"
