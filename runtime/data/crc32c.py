"""CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of LevelDB's log
records and table blocks, for many messages at once in numpy, in time linear in their bytes
whatever their lengths.

A message is cut into chunks of CHUNK bytes, left-padded with zeros (which leave a zero
register as it is); every chunk's register from zero is stepped one byte of all chunks at a
time, then each message's chunks are chained, a step per chunk of all messages at a time:
the register after a chunk is the register before it moved over CHUNK zero bytes (a linear
map, looked up byte by byte) xor the chunk's own. The initial register 0xFFFFFFFF is the same
as those bytes xor-ed into the message's first four."""
from __future__ import annotations

import numpy as np

CHUNK = 256
GROUP_BYTES = 64 << 20          # the messages read into arrays at once


def _step(register: np.ndarray, byte) -> np.ndarray:
    return TABLE[(register ^ byte) & 0xFF] ^ (register >> 8)


def _table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0x82F63B78), table >> 1)
    return table.astype(np.uint32)


TABLE = _table()


def _zeros_map() -> np.ndarray:
    """(4, 256): row k, entry b: the register b << 8k moved over CHUNK zero bytes."""
    registers = (np.arange(256, dtype=np.uint32)[None, :] << (8 * np.arange(4, dtype=np.uint32)
                                                              )[:, None]).reshape(-1)
    for _ in range(CHUNK):
        registers = _step(registers, 0)
    return registers.reshape(4, 256)


ZEROS = _zeros_map()


def crc32c(messages: list[bytes]) -> list[int]:
    """The CRC-32C of each message."""
    out, group, size = [], [], 0
    for message in messages:
        group.append(message)
        size += len(message) + CHUNK
        if size >= GROUP_BYTES:
            out += _group(group)
            group, size = [], 0
    return out + (_group(group) if group else [])


def _group(messages: list[bytes]) -> list[int]:
    padded, counts = [], []
    for message in messages:
        body = np.frombuffer(message, np.uint8).copy()
        body[:4] ^= 0xFF                    # the initial register, as input bytes
        chunks = -(-len(body) // CHUNK)
        padded.append(np.concatenate([np.zeros(chunks * CHUNK - len(body), np.uint8), body]))
        counts.append(chunks)
    columns = np.concatenate(padded).reshape(-1, CHUNK).T.copy()     # byte j of each chunk
    own = np.zeros(columns.shape[1], np.uint32)
    for j in range(CHUNK):
        own = _step(own, columns[j])
    counts = np.array(counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    order = np.argsort(-counts, kind="stable")          # most chunks first
    longest = int(counts.max())
    register = np.zeros(len(messages), np.uint32)
    for t in range(longest):        # chunk t of the longest; the others join right-aligned
        live = order[:np.count_nonzero(counts > longest - 1 - t)]
        r = register[live]
        moved = (ZEROS[0][r & 0xFF] ^ ZEROS[1][(r >> 8) & 0xFF] ^ ZEROS[2][(r >> 16) & 0xFF]
                 ^ ZEROS[3][r >> 24])
        register[live] = moved ^ own[starts[live] + t - (longest - counts[live])]
    # a message shorter than 4 bytes: the rest of the initial register is still to shift out
    short = [i for i, m in enumerate(messages) if len(m) < 4]
    for i in short:
        register[i] = _short(messages[i])
    return (register ^ np.uint32(0xFFFFFFFF)).tolist()


def _short(message: bytes) -> np.uint32:
    """The register (before the final xor) of a message of fewer than 4 bytes."""
    register = np.uint32(0xFFFFFFFF)
    for byte in message:
        register = _step(register, np.uint32(byte))
    return register
