"""CRC-32C (LevelDB's checksum) of short messages and across read groups. Expected values:
the published CRC-32C check value (RFC 3720 B.4: "123456789" -> 0xE3069283) and a
bit-by-bit reference of the reflected polynomial 0x82F63B78."""
import pytest

from runtime.data import crc32c as module
from runtime.data.crc32c import crc32c


def bitwise(message: bytes) -> int:
    register = 0xFFFFFFFF
    for byte in message:
        register ^= byte
        for _ in range(8):
            register = (register >> 1) ^ (0x82F63B78 if register & 1 else 0)
    return register ^ 0xFFFFFFFF


def test_the_check_value():
    assert crc32c([b"123456789"]) == [0xE3069283] == [bitwise(b"123456789")]


@pytest.mark.parametrize("n", range(0, 9))
def test_messages_of_every_short_length(n):
    message = bytes(range(7, 7 + n))
    assert crc32c([message]) == [bitwise(message)]


def test_messages_past_one_read_group_are_each_their_own(monkeypatch):
    monkeypatch.setattr(module, "GROUP_BYTES", 600)      # a group every two messages or so
    messages = [bytes([i]) * (50 + 97 * i) for i in range(7)]
    assert crc32c(messages) == [bitwise(m) for m in messages]
