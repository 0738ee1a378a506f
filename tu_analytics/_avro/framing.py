"""The Confluent wire format: magic byte 0, the schema id as 4 bytes big-endian, the Avro body."""

from __future__ import annotations

from typing import Final

__all__ = ["HEADER_SIZE", "MAGIC", "confluent_header", "schema_id_of"]

MAGIC: Final = 0
HEADER_SIZE: Final = 5


def confluent_header(schema_id: int) -> bytes:
    """The 5-byte prefix of a value written with ``schema_id``."""
    return bytes((MAGIC,)) + schema_id.to_bytes(4, "big", signed=True)


def schema_id_of(value: bytes) -> int | None:
    """The schema id of a Confluent-framed value; None when it is not framed."""
    if len(value) < HEADER_SIZE or value[0] != MAGIC:
        return None
    return int.from_bytes(value[1:HEADER_SIZE], "big", signed=True)
