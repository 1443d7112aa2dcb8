"""A watcher that cleans up after a natlab run killed with SIGKILL.

PR_SET_PDEATHSIG (natlab.spawn) kills natlab's children with it, but not what the kernel does
not tie to a process: the bridges and their ports in the root namespace, a daemon's workers
whose parent was killed. The reaper, started when a run takes its lock, waits on a pipe whose
only writer is natlab. End of file without the word "done" means natlab died: it runs the same
cleanup as `natlab clean`. It inherits the run lock, so no other run starts before it is done.
It runs in its own session, so Ctrl-C at the terminal reaches natlab only.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from natlab.guard import RunLock, clean_leftovers

DONE = b"done"


class Reaper:
    """natlab's side: start the watcher; `stop` tells it the run ended cleanly."""

    def __init__(self, lock: RunLock) -> None:
        assert lock.fh is not None, "take the lock first"
        read_fd, self._write_fd = os.pipe()  # both close-on-exec: no other child holds them
        lock_fd = lock.fh.fileno()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "natlab.reaper", "--pipe", str(read_fd), "--lock",
             str(lock_fd), "--state-dir", str(lock.dir)],
            pass_fds=(read_fd, lock_fd), start_new_session=True, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL)
        os.close(read_fd)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 5.0) -> None:
        """The run cleaned up itself: let the watcher go (before the lock is released)."""
        if self._write_fd < 0:
            return
        try:
            os.write(self._write_fd, DONE)
        except OSError:
            pass  # it has gone already
        os.close(self._write_fd)
        self._write_fd = -1
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="natlab.reaper", description=__doc__)
    ap.add_argument("--pipe", type=int, required=True, help="read end; natlab holds the other")
    ap.add_argument("--lock", type=int, required=True, help="the run lock (held until we exit)")
    ap.add_argument("--state-dir", required=True)
    args = ap.parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    word = b""
    while True:
        chunk = os.read(args.pipe, len(DONE))
        if not chunk:
            break
        word += chunk
    if word == DONE:
        return 0
    removed = clean_leftovers(Path(args.state_dir) / "state.json", first=signal.SIGKILL)
    if removed:
        print(f"natlab: reaper: natlab died; removed {', '.join(removed)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
