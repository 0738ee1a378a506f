"""_avro: the one Avro core (varints, framing, naming, container header), against fastavro."""

from __future__ import annotations

import io
import json
import random

import fastavro
import polars as pl
import pytest

from tu_analytics._avro import (
    HEADER_SIZE,
    SYNC_SIZE,
    NamedTypes,
    branch_name,
    confluent_header,
    container_header,
    encode_bytes,
    encode_long,
    fullname,
    namespace_of,
    read_long,
    schema_id_of,
)
from tu_analytics._avro.varint import SMALL_LONGS

EDGES = [0, 1, -1, 63, -64, 64, -65, 2**31 - 1, -(2**31), 2**53, 2**63 - 1, -(2**63)]


def fastavro_long(n: int) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, "long", n)
    return buf.getvalue()


@pytest.mark.parametrize("n", EDGES)
def test_varints_are_fastavros_and_read_back(n: int) -> None:
    assert encode_long(n) == fastavro_long(n)
    assert read_long(encode_long(n) + b"tail") == (n, len(encode_long(n)))


def test_random_varints_round_trip_at_an_offset() -> None:
    rng = random.Random(4)
    for _ in range(2_000):
        n = rng.randrange(-(2**63), 2**63)
        data = b"\x07" + encode_long(n)
        assert data[1:] == fastavro_long(n)
        assert read_long(data, 1) == (n, len(data))


def test_small_longs_table_is_the_one_byte_encodings() -> None:
    assert [SMALL_LONGS[n + 64] for n in range(-64, 64)] == [
        fastavro_long(n) for n in range(-64, 64)]
    assert all(len(b) == 1 for b in SMALL_LONGS)


@pytest.mark.parametrize("bad", [b"", b"\x80", b"\xff" * 11])
def test_bad_varints_raise(bad: bytes) -> None:
    with pytest.raises(ValueError, match="bad Avro varint"):
        read_long(bad)


def test_bytes_are_length_prefixed() -> None:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, "string", "héllo")
    assert encode_bytes("héllo".encode()) == buf.getvalue()


def test_confluent_header_round_trip() -> None:
    assert confluent_header(7) == b"\x00\x00\x00\x00\x07"
    assert len(confluent_header(2**31 - 1)) == HEADER_SIZE
    assert schema_id_of(confluent_header(123_456) + b"body") == 123_456
    assert schema_id_of(b"\x01\x00\x00\x00\x07") is None  # bad magic
    assert schema_id_of(b"\x00\x00\x00") is None  # too short


def test_container_header_makes_a_file_fastavro_and_polars_read() -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "x", "type": "long"},
                                                         {"name": "s", "type": "string"}]}
    sync = bytes(range(SYNC_SIZE))
    body = b"".join(encode_long(x) + encode_bytes(s.encode()) for x, s in [(1, "a"), (-5, "bc")])
    data = container_header(schema, sync) + encode_long(2) + encode_long(len(body)) + body + sync
    assert list(fastavro.reader(io.BytesIO(data))) == [{"x": 1, "s": "a"}, {"x": -5, "s": "bc"}]
    assert pl.read_avro(io.BytesIO(data)).to_dicts() == [{"x": 1, "s": "a"}, {"x": -5, "s": "bc"}]
    with pytest.raises(ValueError, match="sync marker"):
        container_header(schema, b"short")


def test_names_follow_avros_namespace_rules() -> None:
    assert fullname("R", "a.b") == "a.b.R"
    assert fullname("x.R", "a.b") == "x.R"
    assert fullname("R", None) == "R"
    assert namespace_of("a.b.R") == "a.b"
    assert namespace_of("R") is None
    assert branch_name("com.x.CanMessageValue") == "CanMessageValue"
    assert branch_name({"type": "record", "name": "a.Sub", "fields": []}) == "Sub"
    assert branch_name({"type": "long", "logicalType": "timestamp-millis"}) == "long"
    assert branch_name({"type": "map", "values": "long"}) == "map"


def test_named_types_resolve_by_full_name_then_as_written() -> None:
    names: NamedTypes[int] = NamedTypes()
    schema = json.loads('{"type": "enum", "name": "E", "namespace": "x.y", "symbols": ["A"]}')
    assert names.define(schema, "other", 1) == "x.y.E"
    assert "x.y.E" in names
    assert names.lookup("E", "x.y") == ("x.y.E", schema, 1)
    assert names.lookup("x.y.E", "elsewhere")[0] == "x.y.E"
    with pytest.raises(KeyError, match="unknown Avro type 'E'"):
        names.lookup("E", "elsewhere")
