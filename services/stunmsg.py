"""STUN (RFC 5389) Binding request and response, on bytes.

Only what a NAT probe needs: build a Binding request, parse a message into its attributes,
decode (XOR-)MAPPED-ADDRESS, check the transaction id and an optional FINGERPRINT.
"""

from __future__ import annotations

import ipaddress
import os
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

MAGIC_COOKIE = 0x2112A442
HEADER_LENGTH = 20
TRANSACTION_ID_LENGTH = 12
FINGERPRINT_XOR = 0x5354554E


class MessageType(IntEnum):
    BINDING_REQUEST = 0x0001
    BINDING_INDICATION = 0x0011
    BINDING_SUCCESS = 0x0101
    BINDING_ERROR = 0x0111


class AttributeType(IntEnum):
    MAPPED_ADDRESS = 0x0001
    USERNAME = 0x0006
    MESSAGE_INTEGRITY = 0x0008
    ERROR_CODE = 0x0009
    UNKNOWN_ATTRIBUTES = 0x000A
    REALM = 0x0014
    NONCE = 0x0015
    XOR_MAPPED_ADDRESS = 0x0020
    SOFTWARE = 0x8022
    ALTERNATE_SERVER = 0x8023
    FINGERPRINT = 0x8028
    RESPONSE_ORIGIN = 0x802B
    OTHER_ADDRESS = 0x802C


class AddressFamily(IntEnum):
    IPV4 = 0x01
    IPV6 = 0x02


@dataclass(frozen=True)
class Message:
    """A parsed STUN message; attributes keep wire order, values without padding."""

    message_type: int
    transaction_id: bytes
    attributes: tuple[tuple[int, bytes], ...] = ()

    def get(self, attr: AttributeType) -> bytes | None:
        """The value of the first attribute of this type, or None."""
        for kind, value in self.attributes:
            if kind == attr:
                return value
        return None


def new_transaction_id() -> bytes:
    return os.urandom(TRANSACTION_ID_LENGTH)


def _pad(length: int) -> int:
    return (4 - length % 4) % 4


def encode_message(msg: Message) -> bytes:
    """Serialise a message (attribute values are padded to 4 bytes with zeros)."""
    if len(msg.transaction_id) != TRANSACTION_ID_LENGTH:
        raise ValueError(f"transaction id must be 12 bytes, got {len(msg.transaction_id)}")
    body = b"".join(
        struct.pack("!HH", kind, len(value)) + value + bytes(_pad(len(value)))
        for kind, value in msg.attributes
    )
    header = struct.pack("!HHI", msg.message_type, len(body), MAGIC_COOKIE)
    return header + msg.transaction_id + body


def binding_request(transaction_id: bytes) -> bytes:
    """A Binding request without attributes."""
    return encode_message(Message(MessageType.BINDING_REQUEST, transaction_id))


def parse_message(data: bytes) -> Message:
    """Parse a STUN message; ValueError says what is wrong."""
    if len(data) < HEADER_LENGTH:
        raise ValueError(f"STUN message too short: {len(data)} bytes < {HEADER_LENGTH}")
    message_type, length, cookie = struct.unpack_from("!HHI", data)
    if message_type & 0xC000:
        raise ValueError(f"not a STUN message: first two bits set (type 0x{message_type:04x})")
    if cookie != MAGIC_COOKIE:
        raise ValueError(f"bad magic cookie 0x{cookie:08x}, expected 0x{MAGIC_COOKIE:08x}")
    if length % 4:
        raise ValueError(f"STUN message length {length} is not a multiple of 4")
    if HEADER_LENGTH + length != len(data):
        raise ValueError(f"STUN length field {length} != {len(data) - HEADER_LENGTH} body bytes")
    attributes: list[tuple[int, bytes]] = []
    pos = HEADER_LENGTH
    while pos < len(data):
        if pos + 4 > len(data):
            raise ValueError(f"truncated attribute header at offset {pos}")
        kind, size = struct.unpack_from("!HH", data, pos)
        end = pos + 4 + size
        if end > len(data):
            raise ValueError(f"attribute 0x{kind:04x} at offset {pos} overruns the message")
        if kind == AttributeType.FINGERPRINT:
            _check_fingerprint(data, pos, data[pos + 4:end])
        attributes.append((kind, data[pos + 4:end]))
        pos = end + _pad(size)
    return Message(message_type, data[8:HEADER_LENGTH], tuple(attributes))


def _check_fingerprint(data: bytes, offset: int, value: bytes) -> None:
    if len(value) != 4:
        raise ValueError(f"FINGERPRINT must be 4 bytes, got {len(value)}")
    expected = (zlib.crc32(data[:offset]) ^ FINGERPRINT_XOR) & 0xFFFFFFFF
    (got,) = struct.unpack("!I", value)
    if got != expected:
        raise ValueError(f"bad FINGERPRINT 0x{got:08x}, expected 0x{expected:08x}")


def decode_address(value: bytes, transaction_id: bytes, xor: bool) -> tuple[str, int]:
    """Decode a (XOR-)MAPPED-ADDRESS value into (ip, port)."""
    if len(value) < 4:
        raise ValueError(f"address attribute too short: {len(value)} bytes")
    family, port = value[1], struct.unpack_from("!H", value, 2)[0]
    raw = value[4:]
    if family == AddressFamily.IPV4:
        size = 4
    elif family == AddressFamily.IPV6:
        size = 16
    else:
        raise ValueError(f"unknown address family 0x{family:02x}")
    if len(raw) != size:
        raise ValueError(f"address family 0x{family:02x} needs {size} bytes, got {len(raw)}")
    if xor:
        port ^= MAGIC_COOKIE >> 16
        mask = (struct.pack("!I", MAGIC_COOKIE) + transaction_id)[:size]
        raw = bytes(a ^ b for a, b in zip(raw, mask, strict=True))
    return str(ipaddress.ip_address(raw)), port


def _error_text(value: bytes | None) -> str:
    if value is None or len(value) < 4:
        return "no ERROR-CODE"
    code = (value[2] & 0x07) * 100 + value[3]
    return f"{code} {value[4:].decode('utf-8', 'replace')}".strip()


def parse_binding_response(data: bytes, transaction_id: bytes) -> tuple[str, int]:
    """The mapped (ip, port) of a Binding success response to ``transaction_id``."""
    msg = parse_message(data)
    if msg.transaction_id != transaction_id:
        raise ValueError(
            f"transaction id {msg.transaction_id.hex()} != expected {transaction_id.hex()}")
    if msg.message_type == MessageType.BINDING_ERROR:
        error = _error_text(msg.get(AttributeType.ERROR_CODE))
        raise ValueError(f"Binding error response: {error}")
    if msg.message_type != MessageType.BINDING_SUCCESS:
        raise ValueError(f"not a Binding success response: type 0x{msg.message_type:04x}")
    xored = msg.get(AttributeType.XOR_MAPPED_ADDRESS)
    if xored is not None:
        return decode_address(xored, msg.transaction_id, xor=True)
    plain = msg.get(AttributeType.MAPPED_ADDRESS)
    if plain is not None:
        return decode_address(plain, msg.transaction_id, xor=False)
    raise ValueError("Binding response has neither XOR-MAPPED-ADDRESS nor MAPPED-ADDRESS")
