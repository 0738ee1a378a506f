"""Avro's zigzag varints (``int``, ``long``, lengths, counts, union and enum indexes)."""

from __future__ import annotations

from typing import Final

__all__ = ["SMALL_LONGS", "encode_bytes", "encode_long", "read_long"]

_MASK64: Final = 0xFFFFFFFFFFFFFFFF
_MAX_VARINT_BYTES: Final = 10

# Zigzag varints of -64..63 are one byte; precomputed because union/enum indexes, counts and
# small ints dominate what encoders write. Index with ``n + 64``.
SMALL_LONGS: Final[tuple[bytes, ...]] = tuple(
    bytes(((n << 1) ^ (n >> 63),)) for n in range(-64, 64)
)


def encode_long(n: int) -> bytes:
    """Zigzag varint of a signed 64-bit integer."""
    if -64 <= n < 64:
        return SMALL_LONGS[n + 64]
    z = ((n << 1) ^ (n >> 63)) & _MASK64
    buf = bytearray()
    while z >= 0x80:
        buf.append((z & 0x7F) | 0x80)
        z >>= 7
    buf.append(z)
    return bytes(buf)


def encode_bytes(b: bytes) -> bytes:
    """Avro ``bytes``/``string`` encoding: the length as a varint, then the bytes."""
    return encode_long(len(b)) + b


def read_long(buf: bytes, pos: int = 0) -> tuple[int, int]:
    """The zigzag varint at ``buf[pos:]`` and the position after it.

    Raises ``ValueError`` on a varint that is truncated or longer than 10 bytes.
    """
    z = shift = 0
    for i in range(pos, min(len(buf), pos + _MAX_VARINT_BYTES)):
        b = buf[i]
        z |= (b & 0x7F) << shift
        if b < 0x80:
            return (z >> 1) ^ -(z & 1), i + 1
        shift += 7
    raise ValueError(f"bad Avro varint at byte {pos}")
