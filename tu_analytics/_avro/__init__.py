"""The one Avro core: varints, schema naming and walking, the Confluent framing, containers.

Used by the decoder (``tu_analytics._decode``) and the sandbox's encoder alike, so the rules of
the binary encoding and of Avro's names are written once. Pure: no I/O, no Kafka.
"""

from __future__ import annotations

from .container import SYNC_SIZE, container_header
from .framing import HEADER_SIZE, MAGIC, confluent_header, schema_id_of
from .schema import NAMED_KINDS, PRIMITIVES, NamedTypes, branch_name, fullname, namespace_of
from .varint import encode_bytes, encode_long, read_long

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "NAMED_KINDS",
    "PRIMITIVES",
    "SYNC_SIZE",
    "NamedTypes",
    "branch_name",
    "confluent_header",
    "container_header",
    "encode_bytes",
    "encode_long",
    "fullname",
    "namespace_of",
    "read_long",
    "schema_id_of",
]
