"""Queue readers for the shaper: who reads packet announcements and sends verdicts.

- "netlink": natlab's own nfnetlink_queue client (impair.netlink), pure Python, no
  compiled dependency;
- "libnfq": the `netfilterqueue` PyPI binding over libnetfilter_queue (C; optional:
  `pip install netfilterqueue`, needs libnetfilter-queue-dev to build).

Both bind the queue copying only the first HEAD_BYTES of each packet (its IP and UDP/TCP
headers: the shaper keeps each flow in order) and give verdicts by packet id, so the shaper's
timing logic is the same for both. bench/shaper.py measures them side by side.
"""
from __future__ import annotations

import importlib.util
from typing import Any, Protocol

from impair.netlink import Error, QueueSocket, Verdict

READERS = ("netlink", "libnfq")
HEAD_BYTES = 64  # an IPv4 header with options (60 bytes) and the ports after it
# bench/shaper.py (3 runs on a shared 2-core VM): the same precision within the machine's
# noise, libnfq ~14 % less CPU per packet, but only netlink met the goal at 100 calls in every
# run, and it needs no compiled module: natlab keeps its own client. "libnfq" switches.
PREFERRED = "netlink"


def default_reader() -> str:
    """PREFERRED, or natlab's own client where the netfilterqueue module is not installed."""
    if PREFERRED == "libnfq" and importlib.util.find_spec("netfilterqueue") is None:
        return "netlink"
    return PREFERRED


class QueueReader(Protocol):
    @property
    def overruns(self) -> int:
        """Receive-buffer overruns seen (the kernel dropped announcements)."""
        ...

    def fileno(self) -> int: ...

    def receive(self) -> list[tuple[int, Any, bytes]]:
        """(packet id, handle, first bytes) of every packet announced now (non-blocking)."""
        ...

    def verdict(self, handle: Any, verdict: Verdict) -> None: ...

    def close(self) -> None: ...


class NetlinkReader:
    def __init__(self, queue: int, maxlen: int):
        self.sock = QueueSocket(queue, maxlen=maxlen, copy_range=HEAD_BYTES)

    @property
    def overruns(self) -> int:
        return self.sock.overruns

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> list[tuple[int, Any, bytes]]:
        # Error items: e.g. ENOENT for a verdict on a packet the kernel flushed
        return [(p.packet_id, p.packet_id, p.head) for p in self.sock.receive()
                if not isinstance(p, Error)]

    def verdict(self, handle: Any, verdict: Verdict) -> None:
        self.sock.verdict(handle, verdict)

    def close(self) -> None:
        self.sock.close()


class LibnfqReader:
    """netfilterqueue: its callback only collects the packets; verdicts come later (the
    binding allows a verdict after the callback returned, by packet id)."""

    def __init__(self, queue: int, maxlen: int):
        try:
            import netfilterqueue
        except ImportError as e:
            raise OSError(f"reader libnfq needs the netfilterqueue module: {e}") from None
        self.overruns = 0  # the binding retries ENOBUFS silently: gaps in the ids show it
        self._got: list[tuple[Any, bytes]] = []
        self.nfq = netfilterqueue.NetfilterQueue()
        self.nfq.bind(queue, self._collect, max_len=maxlen, mode=netfilterqueue.COPY_PACKET,
                      range=HEAD_BYTES, sock_len=8 << 20)

    def fileno(self) -> int:
        return int(self.nfq.get_fd())

    def _collect(self, packet: Any) -> None:
        self._got.append((packet, packet.get_payload()))  # the copy is valid in the callback only

    def receive(self) -> list[tuple[int, Any, bytes]]:
        self.nfq.run(block=False)
        got, self._got[:] = list(self._got), []
        return [(p.id, p, head) for p, head in got]

    def verdict(self, handle: Any, verdict: Verdict) -> None:
        if verdict == Verdict.ACCEPT:
            handle.accept()
        else:
            handle.drop()

    def close(self) -> None:
        self.nfq.unbind()


def open_reader(kind: str, queue: int, maxlen: int) -> QueueReader:
    """Bind `queue` with reader `kind`; OSError when it cannot (queue taken, module absent)."""
    if kind == "netlink":
        return NetlinkReader(queue, maxlen)
    if kind == "libnfq":
        return LibnfqReader(queue, maxlen)
    raise ValueError(f"queue reader must be one of {', '.join(READERS)}, got {kind!r}")
