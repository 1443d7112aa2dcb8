"""STUN message encode/parse on hand-made bytes (RFC 5389, vectors from RFC 5769)."""

from __future__ import annotations

import struct

import pytest

from services import stunmsg
from services.stunmsg import AttributeType, MessageType

# RFC 5769 section 2.2, "Sample IPv4 Response": XOR-MAPPED-ADDRESS 192.0.2.1:32853.
RFC5769_TID = bytes.fromhex("b7e7a701bc34d686fa87dfae")
RFC5769_IPV4_RESPONSE = bytes.fromhex(
    "0101003c2112a442b7e7a701bc34d686fa87dfae"
    "8022000b7465737420766563746f7220"  # SOFTWARE "test vector" + padding
    "002000080001a147e112a643"  # XOR-MAPPED-ADDRESS
    "000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7"  # MESSAGE-INTEGRITY
    "80280004c07d4c96"  # FINGERPRINT
)
TID = bytes(range(1, 13))


def response(attributes: bytes, tid: bytes = TID, kind: int = 0x0101) -> bytes:
    return struct.pack("!HHI", kind, len(attributes), stunmsg.MAGIC_COOKIE) + tid + attributes


def attr(kind: int, value: bytes) -> bytes:
    return struct.pack("!HH", kind, len(value)) + value + bytes((4 - len(value) % 4) % 4)


def test_binding_request_bytes() -> None:
    data = stunmsg.binding_request(TID)
    assert data == bytes.fromhex("000100002112a442") + TID


def test_new_transaction_id_is_random() -> None:
    assert len(stunmsg.new_transaction_id()) == 12
    assert stunmsg.new_transaction_id() != stunmsg.new_transaction_id()


def test_rfc5769_ipv4_response() -> None:
    msg = stunmsg.parse_message(RFC5769_IPV4_RESPONSE)  # also verifies FINGERPRINT
    assert msg.message_type == MessageType.BINDING_SUCCESS
    assert msg.transaction_id == RFC5769_TID
    assert msg.get(AttributeType.SOFTWARE) == b"test vector"
    assert [kind for kind, _ in msg.attributes] == [0x8022, 0x0020, 0x0008, 0x8028]
    mapped = stunmsg.parse_binding_response(RFC5769_IPV4_RESPONSE, RFC5769_TID)
    assert mapped == ("192.0.2.1", 32853)


def test_xor_mapped_ipv6() -> None:
    # RFC 5769 section 2.3: 2001:db8:1234:5678:11:2233:4455:6677 port 32853.
    tid = bytes.fromhex("b7e7a701bc34d686fa87dfae")
    value = bytes.fromhex("0002a1470113a9faa5d3f179bc25f4b5bed2b9d9")
    assert stunmsg.decode_address(value, tid, xor=True) == (
        "2001:db8:1234:5678:11:2233:4455:6677", 32853)


def test_mapped_address_fallback() -> None:
    data = response(attr(0x0001, bytes.fromhex("00010d3dcb007102")))
    assert stunmsg.parse_binding_response(data, TID) == ("203.0.113.2", 3389)


def test_xor_preferred_over_mapped() -> None:
    xored = struct.pack("!BBH", 0, 1, 40000 ^ 0x2112) + bytes(
        a ^ b for a, b in zip(bytes([198, 51, 100, 2]), bytes.fromhex("2112a442"), strict=True))
    data = response(attr(0x0001, bytes.fromhex("000100010a000001")) + attr(0x0020, xored))
    assert stunmsg.parse_binding_response(data, TID) == ("198.51.100.2", 40000)


def test_encode_parse_roundtrip() -> None:
    msg = stunmsg.Message(MessageType.BINDING_SUCCESS, TID, ((0x8022, b"abc"), (0x0020, b"x" * 8)))
    data = stunmsg.encode_message(msg)
    assert len(data) == 20 + 8 + 12
    assert stunmsg.parse_message(data) == msg


@pytest.mark.parametrize("data, message", [
    (b"\x01\x01\x00", "too short"),
    (response(b"", kind=0xC101), "first two bits"),
    (b"\x01\x01\x00\x00\x21\x12\xa4\x43" + TID, "bad magic cookie"),
    (response(b"")[:2] + b"\x00\x06" + response(b"")[4:] + b"\x00" * 6, "multiple of 4"),
    (response(b"")[:2] + b"\x00\x08" + response(b"")[4:] + b"\x00" * 4, "length field 8"),
    (response(b"\x00\x20\x00\x08\x00\x01\x00\x00"), "overruns"),
    (RFC5769_IPV4_RESPONSE[:-1] + b"\x97", "bad FINGERPRINT"),
])
def test_malformed_message(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stunmsg.parse_message(data)


def test_transaction_id_mismatch() -> None:
    with pytest.raises(ValueError, match="transaction id"):
        stunmsg.parse_binding_response(RFC5769_IPV4_RESPONSE, TID)


def test_error_response() -> None:
    data = response(attr(0x0009, b"\x00\x00\x04\x00Bad Request"), kind=0x0111)
    with pytest.raises(ValueError, match="400 Bad Request"):
        stunmsg.parse_binding_response(data, TID)


def test_response_without_address() -> None:
    with pytest.raises(ValueError, match="neither"):
        stunmsg.parse_binding_response(response(attr(0x8022, b"x")), TID)


@pytest.mark.parametrize("value, message", [
    (b"\x00\x01", "too short"),
    (b"\x00\x03\x00\x01\x01\x02\x03\x04", "unknown address family"),
    (b"\x00\x01\x00\x01\x01\x02\x03", "needs 4 bytes"),
])
def test_bad_address(value: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stunmsg.decode_address(value, TID, xor=False)
