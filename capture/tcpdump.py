"""Packet capture with tcpdump inside a node's namespace, one pcap per interface."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from natlab.errors import RunFailure
from natlab.spawn import deferred


class CaptureError(RunFailure):
    pass


class Capture:
    """tcpdump -i <intf> -w <pcap>; ready once it prints 'listening on'."""

    def __init__(self, host: Any, intf: str, pcap: Path, buffer_kib: int = 0):
        self.host, self.intf, self.pcap = host, intf, pcap
        self.buffer_kib = buffer_kib  # kernel capture buffer (-B); 0: tcpdump's 2 MiB
        self.log = pcap.with_suffix(".tcpdump.log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # --immediate-mode: without it libpcap hands packets over in blocks every ~1 s, and
        # the packets of the last block are lost when tcpdump is stopped
        args = ["tcpdump", "-i", self.intf, "-n", "-U", "--immediate-mode", "-s", "0",
                "-Z", "root", "-w", str(self.pcap)]
        if self.buffer_kib:
            args[1:1] = ["-B", str(self.buffer_kib)]
        with open(self.log, "wb") as log, deferred():  # a stop signal waits for self.proc
            self.proc = self.host.popen(args, stdout=log, stderr=log)

    def wait_ready(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace") if self.log.exists() else ""
            if "listening on" in text:
                return
            if self.proc is not None and self.proc.poll() is not None:
                last = text.strip().splitlines()[-1] if text.strip() else "no output"
                raise CaptureError(f"tcpdump on {self.host.name}:{self.intf} exited: {last}")
            time.sleep(0.02)
        raise CaptureError(f"tcpdump on {self.host.name}:{self.intf} not ready after {timeout}s")

    def stop(self, timeout: float = 3.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGINT)  # flushes the file
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def start_captures(specs: list[tuple[Any, str, Path]], stack: ExitStack,
                   buffer_kib: int = 0) -> list[Capture]:
    """Start every capture, each one's stop on `stack` before it starts (so Ctrl-C at any
    moment stops what started), then wait for all to be ready."""
    caps = [Capture(host, intf, path, buffer_kib) for host, intf, path in specs]
    for cap in caps:
        stack.callback(cap.stop)
    for cap in caps:
        cap.start()
    for cap in caps:
        cap.wait_ready()
    return caps
