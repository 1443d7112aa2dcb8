"""Put an Impairment on the egress of one interface of a node, with netem or without it.

With netem (`has_netem()`): one root qdisc `netem delay … distribution normal loss … rate …`.
netem keeps packets sorted by their send time, so jitter larger than the packet spacing
reorders them.

Without netem (this project's reference kernel), in the node's own namespace:
- random loss (loss_burst 1): `iptables -t mangle -A POSTROUTING -o intf -m statistic --mode
  random --probability p -j DROP` — kernel-exact Bernoulli, no user-space process;
- delay/jitter and bursty loss: `-j NFQUEUE --queue-num N` in the same chain (after the drop
  rule) and the shaper `python -m impair.nfq` in the node, which holds each packet and gives the
  ACCEPT verdict when due (FIFO: no reordering) or DROPs it (Gilbert). N = the interface's
  ifindex (unique per namespace, and queues are per namespace). No --queue-bypass: if the
  shaper dies the path goes dark instead of silently losing its impairment. By default only
  packets of confirmed conntrack flows are queued on a node with NAT rules (apply(nat_safe));
- rate: a root TBF qdisc (burst max(2 frames, 10 ms of rate), queue latency 100 ms), after the
  delay stage since NFQUEUE acts in POSTROUTING, before the qdisc.
IPv4 only (iptables); TBF limits every protocol.
"""
from __future__ import annotations

import functools
import json
import os
import random
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

from impair.profile import Impairment
from impair.reader import default_reader
from natlab.errors import RunFailure


class ImpairError(RunFailure):
    """An impairment could not be applied or undone; the message is one line."""

TBF_LATENCY_MS = 100
READY_TIMEOUT_S = 10.0
IPT = "iptables -w -t mangle"  # + -A/-D POSTROUTING rule
_PROBE = "ip link add imp0 type veth peer name imp1 && tc qdisc add dev imp0 root netem delay 1ms"


class Node(Protocol):
    """What we need of a Mininet host: a shell and a way to start processes in it."""

    def cmd(self, *args: Any, **kwargs: Any) -> str: ...

    def popen(self, *args: Any, **kwargs: Any) -> Any: ...


@functools.lru_cache(maxsize=1)
def has_netem() -> bool:
    """Whether this kernel can add a netem qdisc (tried on a veth in a throwaway namespace)."""
    try:
        res = subprocess.run(["unshare", "--net", "sh", "-c", _PROBE], capture_output=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0


def _name(node: Node) -> str:
    return str(getattr(node, "name", "node"))


def _sh(node: Node, command: str) -> str:
    out = node.cmd(f"{command} 2>&1; echo __rc=$?")
    body, _, rc = out.rpartition("__rc=")
    if rc.strip() != "0":
        raise ImpairError(f"{_name(node)}: `{command}` failed: {body.strip() or 'rc ' + rc}")
    return body


def netem_command(intf: str, imp: Impairment) -> str:
    """The `tc qdisc add … netem …` line for an impairment."""
    words = ["tc qdisc add dev", intf, "root netem limit 10000"]
    if imp.delay_ms or imp.jitter_ms:
        words.append(f"delay {imp.delay_ms:g}ms")
        if imp.jitter_ms:
            words.append(f"{imp.jitter_ms:g}ms distribution normal")
    if imp.bursty:
        p, r = imp.gilbert()
        words.append(f"loss gemodel {100 * p:.6g}% {100 * r:.6g}% 100% 0%")
    elif imp.loss_pct:
        words.append(f"loss random {imp.loss_pct:.6g}%")
    if imp.rate_kbit is not None:
        words.append(f"rate {imp.rate_kbit:g}kbit")
    return " ".join(words)


def tbf_command(intf: str, rate_kbit: float, mtu: int) -> str:
    burst = max(2 * (mtu + 14), int(rate_kbit * 1000 / 8 * 0.010))
    return (f"tc qdisc add dev {intf} root tbf rate {rate_kbit:g}kbit burst {burst} "
            f"latency {TBF_LATENCY_MS}ms")


def _rule(intf: str, target: str) -> str:
    return f"-o {intf} -m comment --comment natlab-impair:{intf} {target}"


class Applied:
    """What apply() changed on one interface; stop() undoes it (idempotent)."""

    def __init__(self, node: Node, intf: str, imp: Impairment, mechanism: str, details: str):
        self.node, self.intf, self.imp = node, intf, imp
        self.mechanism = mechanism
        self.details = details
        self.proc: Any = None  # the shaper (subprocess.Popen) when there is one
        self.stats_path: Path | None = None
        self._undo: list[tuple[str, Callable[[], None]]] = []
        self._log: IO[str] | None = None

    def describe(self) -> str:
        how = f"{self.mechanism} ({self.details})" if self.details else self.mechanism
        return f"{_name(self.node)}:{self.intf} egress: {self.imp.summary()} via {how}"

    def check(self) -> None:
        """Raise if the shaper died (its queue then drops every packet)."""
        if self.proc is not None and self.proc.poll() is not None:
            raise ImpairError(f"{self.describe()}: shaper exited with {self.proc.returncode}")

    def stats(self) -> dict[str, Any] | None:
        """The shaper's counters and scheduling error (µs), written every 2 s and at exit."""
        try:
            return dict(json.loads(self.stats_path.read_text())) if self.stats_path else None
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        failed = []
        while self._undo:
            what, undo = self._undo.pop()
            try:
                undo()
            except (ImpairError, OSError, subprocess.SubprocessError) as e:
                failed.append(f"{what}: {e}")
        if self._log is not None:
            self._log.close()
            self._log = None
        if failed:
            raise ImpairError(f"{_name(self.node)}:{self.intf}: could not undo "
                               + "; ".join(failed))

    def __enter__(self) -> Applied:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- set-up steps, each registering its undo --------------------------------------------
    def _shell(self, command: str, undo: str) -> None:
        _sh(self.node, command)
        self._undo.append((undo, functools.partial(self._quiet_sh, undo)))

    def _quiet_sh(self, command: str) -> None:
        _sh(self.node, command)

    def _start_shaper(self, queue: int, seed: int, workdir: Path, reader: str | None) -> None:
        imp = self.imp
        base = workdir / f"impair-{_name(self.node)}-{self.intf}"
        self.stats_path = base.with_suffix(".json")
        loss = ["--loss-pct", f"{imp.loss_pct:g}", "--loss-burst", f"{imp.loss_burst:g}"]
        argv = [sys.executable, "-m", "impair.nfq", "--queue", str(queue),
                "--delay-ms", f"{imp.delay_ms:g}", "--jitter-ms", f"{imp.jitter_ms:g}",
                *(loss if imp.bursty else []), "--seed", str(seed),
                "--stats", str(self.stats_path), *(["--reader", reader] if reader else [])]
        pkg_root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (pkg_root, os.environ.get("PYTHONPATH", "")) if p))
        self._log = open(base.with_suffix(".log"), "w")
        self.proc = self.node.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=self._log, env=env, text=True)
        self._undo.append(("shaper", self._stop_shaper))
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                line = self.proc.stdout.readline()
                if line.strip() == "ready":
                    return
                if not line:
                    break  # exited
        self.proc.poll()
        log = base.with_suffix(".log").read_text().strip().splitlines()
        raise ImpairError(f"{_name(self.node)}: shaper for {self.intf} not ready "
                           f"(rc {self.proc.returncode}): {log[-1] if log else 'no output'}")

    def _stop_shaper(self) -> None:
        proc = self.proc
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


def _link(node: Node, intf: str) -> tuple[int, int]:
    out = _sh(node, f"ip -o link show dev {intf}")
    m = re.search(r"^\s*(\d+):.*\bmtu (\d+)", out, re.M)
    if not m:
        raise ImpairError(f"{_name(node)}: cannot read ifindex/mtu of {intf}: {out.strip()}")
    return int(m.group(1)), int(m.group(2))


def apply(node: Node, intf: str, imp: Impairment, workdir: Path, *,
          mechanism: str | None = None, seed: int | None = None,
          nat_safe: bool | None = None, reader: str | None = None) -> Applied:
    """Impair packets leaving `intf` of `node`. mechanism: None (auto), "netem" or "nfqueue".

    nat_safe (nfqueue only): queue only packets whose conntrack entry is confirmed. A packet
    held in POSTROUTING keeps its new conntrack entry unconfirmed, so the next packets of that
    flow get entries (and NAT mappings) of their own: with MASQUERADE --random-fully each
    leaves with another public port. With nat_safe the first packet of every new flow skips
    the shaper (not delayed, no bursty loss; random loss and rate still apply). None: on when
    the node has NAT rules (iptables -t nat) when apply() runs. reader: the shaper's queue
    reader (impair.reader.READERS; None = its default).

    Raises ImpairError (after undoing what was done) when a step fails or the shaper is not
    ready within READY_TIMEOUT_S.
    """
    if mechanism not in (None, "netem", "nfqueue"):
        raise ImpairError(f"mechanism must be None, 'netem' or 'nfqueue', got {mechanism!r}")
    if imp.is_none():
        return Applied(node, intf, imp, "none", "")
    use_netem = has_netem() if mechanism is None else mechanism == "netem"
    seed = random.randrange(1 << 31) if seed is None else seed
    if use_netem:
        applied = Applied(node, intf, imp, "netem", "kernel qdisc; reorders under jitter")
        applied._shell(netem_command(intf, imp), f"tc qdisc del dev {intf} root")
        return applied
    ifindex, mtu = _link(node, intf)
    queue = ifindex & 0xFFFF
    shaper = bool(imp.delay_ms or imp.jitter_ms or imp.bursty)
    if shaper and nat_safe is None:
        nat_safe = "\n-A " in "\n" + _sh(node, "iptables -w -t nat -S")
    random_loss = bool(imp.loss_pct) and not imp.bursty
    parts = [("nfqueue", shaper), ("statistic", random_loss), ("tbf", imp.rate_kbit is not None)]
    details = []
    if shaper:
        details.append(f"queue {queue}, reader {reader or default_reader()}, seed {seed}, FIFO"
                       + (", first packet of a flow not shaped" if nat_safe else ""))
    if imp.rate_kbit is not None:
        details.append(f"tbf latency {TBF_LATENCY_MS} ms")
    applied = Applied(node, intf, imp, "+".join(p for p, on in parts if on), ", ".join(details))
    try:
        if imp.rate_kbit is not None:
            applied._shell(tbf_command(intf, imp.rate_kbit, mtu),
                           f"tc qdisc del dev {intf} root")
        if shaper:
            workdir.mkdir(parents=True, exist_ok=True)
            applied._start_shaper(queue, seed, workdir, reader)
        if random_loss:
            rule = _rule(intf, f"-m statistic --mode random --probability "
                               f"{imp.loss_pct / 100:.8f} -j DROP")
            applied._shell(f"{IPT} -A POSTROUTING {rule}", f"{IPT} -D POSTROUTING {rule}")
        if shaper:
            confirmed = "-m conntrack --ctstatus CONFIRMED " if nat_safe else ""
            rule = _rule(intf, f"{confirmed}-j NFQUEUE --queue-num {queue}")
            applied._shell(f"{IPT} -A POSTROUTING {rule}", f"{IPT} -D POSTROUTING {rule}")
    except BaseException:
        try:
            applied.stop()
        except ImpairError:
            pass
        raise
    return applied
