"""The Avro object container file's header (the decoder feeds bodies to a container reader)."""

from __future__ import annotations

import json
from typing import Any, Final

from .varint import encode_bytes, encode_long

__all__ = ["MAGIC_BYTES", "SYNC_SIZE", "container_header"]

MAGIC_BYTES: Final = b"Obj\x01"
SYNC_SIZE: Final = 16


def container_header(schema: Any, sync: bytes, codec: str = "null") -> bytes:
    """Magic, the metadata map (``avro.schema``, ``avro.codec``) and the sync marker."""
    if len(sync) != SYNC_SIZE:
        raise ValueError(f"sync marker must be {SYNC_SIZE} bytes")
    meta = (encode_long(2)
            + encode_bytes(b"avro.schema") + encode_bytes(json.dumps(schema).encode())
            + encode_bytes(b"avro.codec") + encode_bytes(codec.encode())
            + encode_long(0))
    return MAGIC_BYTES + meta + sync
