"""A fast Avro binary encoder for the sandbox's sparse records.

fastavro's ``schemaless_writer`` spends ~130 µs on a Machine Insights message: it walks all
~150 top-level union fields, resolving each branch, even when ten are set. This encoder
compiles a schema once into closures and exploits the layout every sandbox schema shares:
records whose fields are all ``["null", T]`` unions. For those it walks only the keys the
dict holds, and writes the null-branch bytes of the fields in between in one slice.

The simulator's fastest path, writing insight messages from entries instead of dicts, is
:class:`tu_analytics.sandbox.sim.sparse.SparseRecordWriter` (built on this compiler).

Output is byte-for-byte what fastavro writes (see ``tests/unit/test_simulator.py``):
zigzag varints for int/long/lengths/union indexes/enum indexes, little-endian IEEE doubles,
arrays as one block (count, items, 0), empty arrays as a single 0.

Supported: every primitive type, records, enums, arrays, maps, fixed, named references,
``timestamp-millis`` (int or ``datetime``) and unions whose branches can be told apart by the
Python type of the value, or are picked by a tagged value ``(branch name, datum)`` as fastavro
takes it (records with the same fields, e.g. the published ``CanMessageValues``).

The Avro wire primitives (zigzag varints, length-prefixed bytes, the Confluent header) and
Avro's naming rules come from the one Avro core, :mod:`tu_analytics._avro`, shared with the
decoder. Unknown dict keys raise ``KeyError`` (fastavro would drop them silently, which hides
typos in a simulator).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from tu_analytics._avro import (
    PRIMITIVES,
    NamedTypes,
    confluent_header,
    encode_bytes,
    encode_long,
    fullname,
    namespace_of,
)

__all__ = [
    "AvroEncoder",
    "Enc",
    "SchemaCompiler",
    "confluent_header",
    "encode_long",
]

Enc = Callable[[Any, bytearray], None]

_pack_double: Final = struct.Struct("<d").pack
_pack_float: Final = struct.Struct("<f").pack
_MAX_CACHED_STRINGS: Final = 8192


def _enc_null(v: Any, out: bytearray) -> None:
    if v is not None:
        raise TypeError(f"expected null, got {v!r}")


def _enc_bool(v: Any, out: bytearray) -> None:
    out.append(1 if v else 0)


def _enc_long(v: Any, out: bytearray) -> None:
    out += encode_long(v)


def _enc_ts(v: Any, out: bytearray) -> None:
    out += encode_long(v if type(v) is int else _ms(v))


def _enc_double(v: Any, out: bytearray) -> None:
    out += _pack_double(v)


def _enc_float(v: Any, out: bytearray) -> None:
    out += _pack_float(v)


def _enc_bytes(v: Any, out: bytearray) -> None:
    out += encode_bytes(v)


def _cached_string(cache: dict[str, bytes], v: str) -> bytes:
    """``v`` encoded with its length prefix, cached (the same few hundred strings repeat)."""
    b = cache.get(v)
    if b is None:
        b = encode_bytes(v.encode())
        if len(cache) < _MAX_CACHED_STRINGS:
            cache[v] = b
    return b


def _string_encoder(cache: dict[str, bytes]) -> Enc:
    def enc_string(v: Any, out: bytearray) -> None:
        out += _cached_string(cache, v)
    return enc_string


_TIME_LOGICAL: Final = frozenset({"timestamp-millis", "time-millis", "timestamp-micros", "date"})
_PRIMITIVE_ENCODERS: Final[Mapping[str, Enc]] = {
    "null": _enc_null, "boolean": _enc_bool, "int": _enc_long, "long": _enc_long,
    "double": _enc_double, "float": _enc_float, "bytes": _enc_bytes,
}


def _ms(v: Any) -> int:
    if isinstance(v, datetime):
        if v.tzinfo is None:
            raise ValueError("naive datetime for timestamp-millis; attach a time zone")
        return round(v.timestamp() * 1000)
    return int(v)


class SchemaCompiler:
    """Turns a parsed Avro schema into an encoder closure; named types resolved by full name."""

    def __init__(self) -> None:
        self.named: NamedTypes[Enc] = NamedTypes()
        self.strings: dict[str, bytes] = {}

    # -- helpers ---------------------------------------------------------------------------
    def _lookup(self, name: str, namespace: str | None) -> tuple[Enc, Any]:
        try:
            _, schema, enc = self.named.lookup(name, namespace)
        except KeyError:
            raise ValueError(f"unknown Avro type {name!r}") from None
        return enc, schema

    def resolve(self, schema: Any, namespace: str | None) -> Any:
        """The schema itself, or the definition a name refers to."""
        if isinstance(schema, str) and schema not in PRIMITIVES:
            return self._lookup(schema, namespace)[1]
        return schema

    # -- compile ---------------------------------------------------------------------------
    def compile(self, schema: Any, namespace: str | None = None) -> Enc:
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return self._primitive(schema, None)
            return self._lookup(schema, namespace)[0]
        if isinstance(schema, list):
            return self._union(schema, namespace)
        t = schema["type"]
        if t == "record" or t == "error":
            return self._record(schema, namespace)
        if t == "enum":
            return self._enum(schema, namespace)
        if t == "array":
            return self._array(schema, namespace)
        if t == "map":
            return self._map(schema, namespace)
        if t == "fixed":
            return self._fixed(schema, namespace)
        if isinstance(t, str) and t in PRIMITIVES:
            return self._primitive(t, schema.get("logicalType"))
        return self.compile(t, namespace)

    def _register(self, schema: Mapping[str, Any], namespace: str | None, enc: Enc) -> str | None:
        """Define a named type; returns the namespace its fields are read in."""
        return namespace_of(self.named.define(schema, namespace, enc))

    def _primitive(self, t: str, logical: str | None) -> Enc:
        if t == "string":
            return _string_encoder(self.strings)
        if t in ("int", "long") and logical in _TIME_LOGICAL:
            return _enc_ts
        try:
            return _PRIMITIVE_ENCODERS[t]
        except KeyError:
            raise ValueError(f"unsupported primitive {t!r}") from None

    def _enum(self, schema: Mapping[str, Any], namespace: str | None) -> Enc:
        index = {s: encode_long(i) for i, s in enumerate(schema["symbols"])}

        def enc_enum(v: Any, out: bytearray) -> None:
            out += index[v]
        self._register(schema, namespace, enc_enum)
        return enc_enum

    def _fixed(self, schema: Mapping[str, Any], namespace: str | None) -> Enc:
        size = schema["size"]

        def enc_fixed(v: Any, out: bytearray) -> None:
            if len(v) != size:
                raise ValueError(f"fixed {schema['name']} needs {size} bytes, got {len(v)}")
            out += v
        self._register(schema, namespace, enc_fixed)
        return enc_fixed

    def _array(self, schema: Mapping[str, Any], namespace: str | None) -> Enc:
        item = self.compile(schema["items"], namespace)

        def enc_array(v: Any, out: bytearray) -> None:
            if v:
                out += encode_long(len(v))
                for x in v:
                    item(x, out)
            out.append(0)
        return enc_array

    def _map(self, schema: Mapping[str, Any], namespace: str | None) -> Enc:
        value = self.compile(schema["values"], namespace)
        key = self._primitive("string", None)

        def enc_map(v: Any, out: bytearray) -> None:
            if v:
                out += encode_long(len(v))
                for k, x in v.items():
                    key(k, out)
                    value(x, out)
            out.append(0)
        return enc_map

    def _union(self, branches: Sequence[Any], namespace: str | None) -> Enc:
        kinds = [self.resolve(b, namespace) for b in branches]
        if len(branches) == 2 and "null" in branches:
            null_at = branches.index("null")
            other = self.compile(branches[1 - null_at], namespace)
            null_b = encode_long(null_at)
            val_b = encode_long(1 - null_at)

            def enc_opt(v: Any, out: bytearray) -> None:
                if v is None:
                    out += null_b
                else:
                    out += val_b
                    other(v, out)
            return enc_opt
        encs = [self.compile(b, namespace) for b in branches]
        checks = [(_python_check(k), encode_long(i), e) for i, (k, e) in
                  enumerate(zip(kinds, encs, strict=True))]
        # A tagged value (branch name, datum), as fastavro takes it, picks a named branch:
        # the only way to tell records with the same fields apart.
        tagged: dict[str, tuple[bytes, Enc]] = {}
        for i, (k, e) in enumerate(zip(kinds, encs, strict=True)):
            if isinstance(k, Mapping) and "name" in k:
                ns = k.get("namespace", namespace)
                tagged[fullname(k["name"], ns)] = tagged[k["name"]] = (encode_long(i), e)

        def enc_union(v: Any, out: bytearray) -> None:
            if type(v) is tuple and len(v) == 2 and isinstance(v[0], str):
                try:
                    idx, e = tagged[v[0]]
                except KeyError:
                    raise TypeError(f"{v[0]!r} names no branch of union {branches!r}") from None
                out += idx
                e(v[1], out)
                return
            for check, idx, e in checks:
                if check(v):
                    out += idx
                    e(v, out)
                    return
            raise TypeError(f"{v!r} matches no branch of union {branches!r}")
        return enc_union

    def _dense(self, names: list[str], types: list[Any], encs: list[Enc], rec_name: str) -> Enc:
        """Encoder for a small record of ``["null", T]`` fields: one pass over the schema.

        Primitive branches are encoded inline (no call per field); that is what makes RAW
        rows and the Location/Address sub-records cheap.
        """
        strings = self.strings
        spec = [(name, _inline_code(t), e) for name, t, e in zip(names, types, encs, strict=True)]
        known = frozenset(names)
        last: list[Any] = [None, b""]  # timestamps repeat within a message

        def enc_dense(d: Any, out: bytearray) -> None:
            found = 0
            for name, code, e in spec:
                v = d.get(name)
                if v is None:
                    out.append(0)
                    continue
                found += 1
                if code == _I_DOUBLE:
                    out += _pack_union_double(2, v)
                elif code == _I_BOOL:
                    out += b"\x02\x01" if v else b"\x02\x00"
                elif code == _I_STRING:
                    out.append(2)
                    out += _cached_string(strings, v)
                elif code == _I_TS:
                    out.append(2)
                    if v != last[0]:
                        last[0] = v
                        last[1] = encode_long(v if type(v) is int else _ms(v))
                    out += last[1]
                elif code == _I_LONG:
                    out.append(2)
                    out += encode_long(v)
                else:
                    out.append(2)
                    e(v, out)
            if found != len(d):
                unknown = set(d) - known
                if unknown:
                    raise KeyError(f"fields not in record {rec_name}: {sorted(unknown)}")
        return enc_dense

    def _record(self, schema: Mapping[str, Any], namespace: str | None) -> Enc:
        fields = schema["fields"]
        n = len(fields)
        # Registered before the fields compile so that a recursive reference finds it.
        slot: list[Enc] = []

        def enc_ref(v: Any, out: bytearray) -> None:
            slot[0](v, out)
        ns = self._register(schema, namespace, enc_ref)
        names = [f["name"] for f in fields]
        index = {name: i for i, name in enumerate(names)}
        sparse = all(
            isinstance(f["type"], list) and len(f["type"]) == 2 and f["type"][0] == "null"
            for f in fields
        )
        if sparse:
            # The sparse paths write the union index themselves, so only the non-null branch
            # is compiled.
            encs = [self.compile(f["type"][1], ns) for f in fields]
            if n <= _DENSE_MAX_FIELDS:
                dense = self._dense(names, [self.resolve(f["type"][1], ns) for f in fields],
                                    encs, schema["name"])
                slot.append(dense)
                return dense
            sparse_enc = _sparse_encoder(index, encs)
            slot.append(sparse_enc)
            return sparse_enc

        defaults: list[tuple[bool, Any]] = [("default" in f, f.get("default")) for f in fields]
        full_encs = [self.compile(f["type"], ns) for f in fields]

        def enc_record(d: Any, out: bytearray) -> None:
            unknown = set(d) - index.keys()
            if unknown:
                raise KeyError(f"fields not in record {schema['name']}: {sorted(unknown)}")
            for name, e, (has_default, default) in zip(names, full_encs, defaults, strict=True):
                if name in d:
                    e(d[name], out)
                elif has_default:
                    e(default, out)
                else:
                    raise KeyError(f"record {schema['name']} needs field {name!r}")
        slot.append(enc_record)
        return enc_record


def _sparse_encoder(index: Mapping[str, int], encs: list[Enc]) -> Enc:
    """Encoder for a wide record of ``["null", T]`` fields: walks only the dict's keys and
    writes the null-branch bytes of the fields in between in one slice."""
    n = len(encs)
    zeros = [b"\x00" * k for k in range(n + 1)]

    def enc_sparse(d: Any, out: bytearray) -> None:
        last = -1
        start = len(out)
        for k, v in d.items():
            i = index[k]
            if i != last + 1:
                if i <= last:  # keys not in schema order: redo sorted
                    del out[start:]
                    enc_sparse(dict(sorted(d.items(), key=lambda kv: index[kv[0]])), out)
                    return
                out += zeros[i - last - 1]
            if v is None:
                out.append(0)
            else:
                out.append(2)
                encs[i](v, out)
            last = i
        if last != n - 1:
            out += zeros[n - 1 - last]
    return enc_sparse


_DENSE_MAX_FIELDS: Final = 64  # above this, walk the dict's keys instead of the schema
_I_OTHER, _I_DOUBLE, _I_BOOL, _I_LONG, _I_STRING, _I_TS = range(6)
_INLINE: Final[Mapping[str, int]] = {
    "double": _I_DOUBLE, "boolean": _I_BOOL, "long": _I_LONG, "int": _I_LONG,
    "string": _I_STRING,
}
_pack_union_double: Final = struct.Struct("<Bd").pack

def _inline_code(t: Any) -> int:
    """How ``_dense`` writes a field's non-null branch (``_I_OTHER``: call its encoder)."""
    prim = t if isinstance(t, str) else t.get("type") if isinstance(t, Mapping) else None
    code = _INLINE.get(prim, _I_OTHER) if isinstance(prim, str) else _I_OTHER
    if code == _I_LONG and isinstance(t, Mapping) and t.get("logicalType") is not None:
        return _I_TS
    return code


def _python_check(schema: Any) -> Callable[[Any], bool]:
    t = schema if isinstance(schema, str) else schema.get("type")
    checks: dict[str, Callable[[Any], bool]] = {
        "null": lambda v: v is None,
        "boolean": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "long": lambda v: isinstance(v, int | datetime) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, float | int) and not isinstance(v, bool),
        "double": lambda v: isinstance(v, float | int) and not isinstance(v, bool),
        "bytes": lambda v: isinstance(v, bytes | bytearray),
        "string": lambda v: isinstance(v, str),
        "enum": lambda v: isinstance(v, str) and v in schema["symbols"],
        "fixed": lambda v: isinstance(v, bytes | bytearray),
        "array": lambda v: isinstance(v, list | tuple),
        "map": lambda v: isinstance(v, Mapping),
        "record": lambda v: isinstance(v, Mapping),
    }
    if t not in checks:
        raise ValueError(f"cannot tell union branch {schema!r} apart by Python type")
    return checks[t]


class AvroEncoder:
    """Encoder for one Avro schema (the parsed JSON: dict, list or type name).

    >>> enc = AvroEncoder({"type": "record", "name": "R",
    ...                    "fields": [{"name": "a", "type": ["null", "long"], "default": None}]})
    >>> enc.encode({"a": 1})
    b'\\x02\\x02'
    """

    __slots__ = ("_enc",)

    def __init__(self, schema: Any) -> None:
        self._enc = SchemaCompiler().compile(schema)

    def encode(self, datum: Any) -> bytes:
        """The Avro binary body of ``datum`` (no container, no framing)."""
        out = bytearray()
        self._enc(datum, out)
        return bytes(out)

    def encode_into(self, datum: Any, out: bytearray) -> None:
        """Append the body of ``datum`` to ``out`` (e.g. after a Confluent header)."""
        self._enc(datum, out)

    def framed(self, schema_id: int, datum: Any) -> bytes:
        """Confluent wire format: magic 0, 4-byte big-endian schema id, Avro body."""
        out = bytearray(confluent_header(schema_id))
        self._enc(datum, out)
        return bytes(out)
