"""A daemon: render a config, check it, start in the foreground, probe, stop."""

from __future__ import annotations

import abc
import os
import signal
import subprocess
import time
from pathlib import Path

from natlab.errors import RunFailure
from natlab.spawn import deferred
from services.host import Host

POLL_INTERVAL = 0.05  # seconds between readiness attempts inside a deadline loop


class DaemonError(RunFailure):
    """A daemon failed to check, start or become ready; the message is one line."""


def last_line(text: str) -> str:
    """The last non-empty line of ``text`` (or a placeholder)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


class Daemon(abc.ABC):
    """One foreground process on a host, with its files under ``workdir``."""

    name: str = "daemon"

    def __init__(self, host: Host, workdir: Path) -> None:
        self.host = host
        self.workdir = Path(workdir)
        self._proc: subprocess.Popen[bytes] | None = None
        self._own_group = False  # the process leads its own process group (mnexec -d)
        self._log_start = 0  # offset of this run's output in the (appended) log

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @abc.abstractmethod
    def render(self) -> None:
        """Write the config files into ``workdir``."""

    @abc.abstractmethod
    def command(self) -> list[str]:
        """The foreground command line."""

    def check(self) -> None:
        """Check the rendered config before starting; raise DaemonError if it is wrong."""
        return None  # nothing to check by default

    @abc.abstractmethod
    def probe(self) -> bool:
        """One readiness attempt."""

    @property
    def pid(self) -> int | None:
        """The process id while it runs, else None."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self) -> None:
        """Start the command on the host, stdout and stderr to ``workdir/<name>.log``."""
        if self.running:
            raise DaemonError(f"{self.name}: already running (pid {self.pid})")
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self._log_start = log.tell()
            try:
                with deferred():  # a stop signal waits until the process is recorded
                    self._proc = self.host.popen(
                        self.command(), stdin=subprocess.DEVNULL, stdout=log,
                        stderr=subprocess.STDOUT, cwd=str(self.workdir),
                    )
            except OSError as exc:
                raise DaemonError(f"{self.name}: cannot start: {exc}") from exc
        try:
            self._own_group = os.getpgid(self._proc.pid) == self._proc.pid
        except OSError:
            self._own_group = False  # it is gone already: wait_ready says why

    def log_text(self) -> str:
        """What this run wrote to the log so far."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_start)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def failure_line(self, log: str) -> str:
        """The log line that best explains a failure (subclasses may pick an error line)."""
        return last_line(log)

    def wait_ready(self, timeout: float) -> None:
        """Probe until ready; raise DaemonError if the process exits or the deadline passes."""
        if self._proc is None:
            raise DaemonError(f"{self.name}: not started")
        deadline = time.monotonic() + timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                why = self.failure_line(self.log_text())
                raise DaemonError(f"{self.name}: exited with {code}: {why}")
            if self.probe():
                return
            if time.monotonic() >= deadline:
                why = self.failure_line(self.log_text())
                raise DaemonError(f"{self.name}: not ready after {timeout:g} s: {why}")
            time.sleep(POLL_INTERVAL)

    def stop(self, timeout: float = 3.0) -> None:
        """terminate -> wait -> kill; safe to call more than once. Whatever is left of the
        process group then goes too: a daemon that died (or was killed) before its children
        would leave them running (kamailio's workers)."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._own_group:
            self._kill_group(proc.pid)  # the group's number stays taken while a member lives
            self._own_group = False

    @staticmethod
    def _kill_group(pid: int) -> None:
        # A session leader's children (e.g. kamailio workers) share its process group.
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} on {self.host.name} pid={self.pid}>"
