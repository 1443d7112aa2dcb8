"""A minimal TURN (RFC 5766) Allocate over UDP with long-term credentials, on services.stunmsg.

    python -m services.turnclient SERVER PORT USER PASSWORD [--timeout S]
    -> {"relayed": "IP:PORT", "mapped": "IP:PORT", "lifetime_s": N}

Allocate -> 401 (REALM, NONCE) -> Allocate with USERNAME/REALM/NONCE/MESSAGE-INTEGRITY ->
success with XOR-RELAYED-ADDRESS; then Refresh(lifetime 0) releases the allocation.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import socket
import struct
import sys
import time
from dataclasses import dataclass

from services import stunmsg
from services.stunmsg import AttributeType, Message

ALLOCATE_REQUEST = 0x0003
ALLOCATE_SUCCESS = 0x0103
ALLOCATE_ERROR = 0x0113
REFRESH_REQUEST = 0x0004
LIFETIME = 0x000D
XOR_RELAYED_ADDRESS = 0x0016
REQUESTED_TRANSPORT = 0x0019
UDP_TRANSPORT = bytes([17, 0, 0, 0])
RETRANSMIT_S = 0.25


class TurnError(RuntimeError):
    """The allocation failed; the message is one line."""


@dataclass(frozen=True)
class Allocation:
    relayed: tuple[str, int]
    mapped: tuple[str, int] | None
    lifetime_s: int | None


def long_term_key(user: str, realm: str, password: str) -> bytes:
    return hashlib.md5(f"{user}:{realm}:{password}".encode()).digest()  # noqa: S324 (RFC 5389)


def with_integrity(msg: Message, key: bytes) -> bytes:
    """Encode `msg` and append MESSAGE-INTEGRITY (HMAC-SHA1 over the message so far, its
    length field already counting the integrity attribute)."""
    raw = bytearray(stunmsg.encode_message(msg))
    struct.pack_into("!H", raw, 2, len(raw) - stunmsg.HEADER_LENGTH + 24)
    digest = hmac.new(key, bytes(raw), hashlib.sha1).digest()
    return bytes(raw) + struct.pack("!HH", AttributeType.MESSAGE_INTEGRITY, 20) + digest


def _attr(msg: Message, kind: int) -> bytes | None:
    """An attribute stunmsg has no name for (the TURN ones)."""
    return next((value for k, value in msg.attributes if k == kind), None)


def _error_code(msg: Message) -> int | None:
    value = msg.get(AttributeType.ERROR_CODE)
    return None if value is None or len(value) < 4 else (value[2] & 7) * 100 + value[3]


def _exchange(sock: socket.socket, payload: bytes, tid: bytes, deadline: float) -> Message:
    next_send = 0.0
    while True:
        now = time.monotonic()
        if now >= deadline:
            raise TurnError("no answer from the TURN server in time")
        if now >= next_send:
            sock.send(payload)
            next_send = now + RETRANSMIT_S
        sock.settimeout(max(0.001, min(next_send, deadline) - now))
        try:
            data = sock.recv(65535)
        except TimeoutError:
            continue
        except ConnectionRefusedError:
            raise TurnError("TURN server port refused (ICMP port unreachable)") from None
        try:
            msg = stunmsg.parse_message(data)
        except ValueError:
            continue
        if msg.transaction_id == tid:
            return msg


def allocate(server: str, port: int, user: str, password: str,
             timeout: float = 3.0) -> Allocation:
    """Allocate a UDP relay, then release it; raise TurnError on failure."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((server, port))
        transport = ((REQUESTED_TRANSPORT, UDP_TRANSPORT),)
        tid = stunmsg.new_transaction_id()
        first = _exchange(sock, stunmsg.encode_message(
            Message(ALLOCATE_REQUEST, tid, transport)), tid, deadline)
        realm, nonce = first.get(AttributeType.REALM), first.get(AttributeType.NONCE)
        if _error_code(first) != 401 or realm is None or nonce is None:
            raise TurnError(f"expected 401 with REALM and NONCE, got type "
                            f"0x{first.message_type:04x} error {_error_code(first)}")
        key = long_term_key(user, realm.decode(), password)
        auth = ((AttributeType.USERNAME, user.encode()), (AttributeType.REALM, realm),
                (AttributeType.NONCE, nonce))
        tid = stunmsg.new_transaction_id()
        reply = _exchange(sock, with_integrity(Message(ALLOCATE_REQUEST, tid,
                                                       transport + auth), key), tid, deadline)
        if reply.message_type != ALLOCATE_SUCCESS:
            raise TurnError(f"Allocate refused: error {_error_code(reply)}")
        relayed = _attr(reply, XOR_RELAYED_ADDRESS)
        if relayed is None:
            raise TurnError("Allocate success without XOR-RELAYED-ADDRESS")
        mapped = reply.get(AttributeType.XOR_MAPPED_ADDRESS)
        life = _attr(reply, LIFETIME)
        result = Allocation(
            relayed=stunmsg.decode_address(relayed, tid, xor=True),
            mapped=None if mapped is None else stunmsg.decode_address(mapped, tid, xor=True),
            lifetime_s=None if life is None else struct.unpack("!I", life)[0])
        tid = stunmsg.new_transaction_id()
        release = Message(REFRESH_REQUEST, tid, ((LIFETIME, bytes(4)),) + auth)
        try:
            _exchange(sock, with_integrity(release, key), tid, deadline)
        except TurnError:
            pass  # the allocation times out on the server anyway
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.turnclient")
    parser.add_argument("server")
    parser.add_argument("port", type=int)
    parser.add_argument("user")
    parser.add_argument("password")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    try:
        a = allocate(args.server, args.port, args.user, args.password, args.timeout)
    except (TurnError, OSError) as exc:
        print(f"turn: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"relayed": f"{a.relayed[0]}:{a.relayed[1]}",
                      "mapped": f"{a.mapped[0]}:{a.mapped[1]}" if a.mapped else None,
                      "lifetime_s": a.lifetime_s}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
