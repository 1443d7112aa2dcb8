"""The nfnetlink_queue protocol over a raw NETLINK_NETFILTER socket (no compiled dependency).

Numbers from the kernel uapi headers linux/netlink.h, linux/netfilter/nfnetlink.h and
linux/netfilter/nfnetlink_queue.h. Netlink and attribute headers are in host byte order; the
nfgenmsg res_id (queue number) and every NFQA_* payload are big-endian.
"""
from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLA_TYPE_MASK = 0x3FFF  # strips NLA_F_NESTED / NLA_F_NET_BYTEORDER
SO_RCVBUFFORCE = 33

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, portid
_NLATTR = struct.Struct("=HH")  # len, type
_NFGENMSG = struct.Struct(">BBH")  # family, version, res_id (big-endian)


class MsgType(IntEnum):  # enum nfqnl_msg_types
    PACKET = 0
    VERDICT = 1
    CONFIG = 2


class Attr(IntEnum):  # enum nfqnl_attr_type (the ones we use)
    PACKET_HDR = 1
    VERDICT_HDR = 2
    IFINDEX_OUTDEV = 6
    PAYLOAD = 10


class CfgCmd(IntEnum):  # enum nfqnl_msg_config_cmds
    BIND = 1
    UNBIND = 2


class CfgAttr(IntEnum):  # enum nfqnl_attr_config
    CMD = 1
    PARAMS = 2
    QUEUE_MAXLEN = 3


class CopyMode(IntEnum):  # enum nfqnl_config_mode
    NONE = 0
    META = 1
    PACKET = 2


class Verdict(IntEnum):  # NF_DROP / NF_ACCEPT
    DROP = 0
    ACCEPT = 1


def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    raw = _NLATTR.pack(_NLATTR.size + len(payload), kind) + payload
    return raw + b"\0" * (_align(len(raw)) - len(raw))


def message(msg: MsgType, queue: int, attrs: bytes, flags: int = NLM_F_REQUEST,
            seq: int = 0, family: int = socket.AF_UNSPEC) -> bytes:
    body = _NFGENMSG.pack(family, 0, queue) + attrs
    kind = (NFNL_SUBSYS_QUEUE << 8) | msg
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def bind_msg(queue: int, seq: int) -> bytes:
    cmd = struct.pack(">BxH", CfgCmd.BIND, socket.AF_INET)  # pf ignored by kernels >= 3.8
    return message(MsgType.CONFIG, queue, attr(CfgAttr.CMD, cmd), NLM_F_REQUEST | NLM_F_ACK, seq)


def params_msg(queue: int, seq: int, maxlen: int, mode: CopyMode = CopyMode.META,
               copy_range: int = 0) -> bytes:
    attrs = (attr(CfgAttr.PARAMS, struct.pack(">IB", copy_range, mode))
             + attr(CfgAttr.QUEUE_MAXLEN, struct.pack(">I", maxlen)))
    return message(MsgType.CONFIG, queue, attrs, NLM_F_REQUEST | NLM_F_ACK, seq)


def verdict_msg(queue: int, packet_id: int, verdict: Verdict) -> bytes:
    return message(MsgType.VERDICT, queue,
                   attr(Attr.VERDICT_HDR, struct.pack(">II", verdict, packet_id)))


@dataclass(frozen=True)
class Packet:
    """A queued packet as announced by the kernel: metadata, and the packet's first bytes
    when the queue copies them (`copy_range`)."""

    packet_id: int
    hw_protocol: int
    hook: int
    outdev: int | None
    head: bytes = b""


@dataclass(frozen=True)
class Error:
    """An NLMSG_ERROR: code 0 is an ACK; otherwise -errno for message `seq`."""

    code: int
    seq: int


def parse_attrs(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    off = 0
    while off + _NLATTR.size <= len(data):
        length, kind = _NLATTR.unpack_from(data, off)
        if length < _NLATTR.size or off + length > len(data):
            raise ValueError(f"netlink attribute at offset {off} has bad length {length}")
        out[kind & NLA_TYPE_MASK] = data[off + _NLATTR.size:off + length]
        off += _align(length)
    return out


def parse(buf: bytes) -> Iterator[Packet | Error]:
    """Messages in one datagram from the kernel: queued packets and errors/ACKs."""
    off = 0
    while off + _NLMSGHDR.size <= len(buf):
        length, kind, _flags, seq, _portid = _NLMSGHDR.unpack_from(buf, off)
        if length < _NLMSGHDR.size or off + length > len(buf):
            raise ValueError(f"netlink message at offset {off} has bad length {length}")
        body = buf[off + _NLMSGHDR.size:off + length]
        off += _align(length)
        if kind == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", body)
            (orig_seq,) = struct.unpack_from("=I", body, 4 + 8)  # inside the echoed header
            yield Error(code, orig_seq)
        elif kind == (NFNL_SUBSYS_QUEUE << 8) | MsgType.PACKET:
            attrs = parse_attrs(body[_NFGENMSG.size:])
            if Attr.PACKET_HDR not in attrs:
                raise ValueError("queued packet message without NFQA_PACKET_HDR")
            pid, proto, hook = struct.unpack_from(">IHB", attrs[Attr.PACKET_HDR])
            out = attrs.get(Attr.IFINDEX_OUTDEV)
            yield Packet(pid, proto, hook, struct.unpack(">I", out)[0] if out else None,
                         attrs.get(Attr.PAYLOAD, b""))


class QueueSocket:
    """One bound nfnetlink queue: receive packet announcements, send verdicts."""

    def __init__(self, queue: int, maxlen: int = 8192, rcvbuf: int = 8 << 20,
                 copy_range: int = 0):
        """copy_range: bytes of each packet the kernel copies to us (0: metadata only)."""
        if not 0 <= queue <= 0xFFFF:
            raise ValueError(f"queue number must be within 0..65535, got {queue}")
        self.queue = queue
        self.overruns = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
            self.sock.bind((0, 0))
            self._request(bind_msg(queue, 1), 1, "bind")
            mode = CopyMode.PACKET if copy_range else CopyMode.META
            self._request(params_msg(queue, 2, maxlen, mode, copy_range), 2, "configure")
        except BaseException:
            self.sock.close()
            raise
        self.sock.setblocking(False)

    def _request(self, msg: bytes, seq: int, what: str) -> None:
        self.sock.send(msg)
        self.sock.settimeout(2.0)
        while True:
            for item in parse(self.sock.recv(65536)):
                if isinstance(item, Error) and item.seq == seq:
                    if item.code:
                        raise OSError(-item.code, f"nfqueue {self.queue} {what}: "
                                      f"{os.strerror(-item.code)}")
                    return

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> list[Packet | Error]:
        """Everything waiting now (non-blocking). A receive-buffer overrun (ENOBUFS: the
        kernel could not announce packets and dropped them) is counted in `overruns`."""
        items: list[Packet | Error] = []
        while True:
            try:
                buf = self.sock.recv(1 << 16)
            except BlockingIOError:
                return items
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                self.overruns += 1
                continue
            items.extend(parse(buf))

    def verdict(self, packet_id: int, verdict: Verdict) -> None:
        self.sock.send(verdict_msg(self.queue, packet_id, verdict))  # the kernel never blocks

    def close(self) -> None:
        self.sock.close()  # the kernel unbinds the queue and drops what is still queued
