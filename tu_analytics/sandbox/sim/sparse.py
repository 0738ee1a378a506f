"""Writes Machine Insights records from *entries* instead of dicts: the simulator's fast path.

An entry is ``(field_index, value, datetime_ms)``. For an insight-shaped field (a record
``{<value>, <unit>, datetime}``, whatever its value and unit fields are called, or the Hours
record ``{Hour, datetime}``) ``value`` is the bare value and the unit is the one given to the
constructor; for any other field ``value`` is what the field's non-null branch takes (a dict, a
list, a tagged union value ...) and ``datetime_ms`` is ignored. Entries must be in schema order
with distinct indexes. ``to_dict`` renders the same entries as the dict fastavro (or
:class:`~tu_analytics.sandbox.encode.AvroEncoder`) encodes to identical bytes.

It saves building ~10 small dicts per message and walking them again: with insight messages
this is ~4x faster than encoding the equivalent dict.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any, Final

from tu_analytics.sandbox.encode import Enc, SchemaCompiler, confluent_header, encode_long

__all__ = ["Preencoded", "SparseRecordWriter", "insight_shape"]

_pack_double: Final = struct.Struct("<d").pack

# Kinds of top-level field the writer recognises.
_OTHER, _DOUBLE, _BOOL, _LONG, _ENUM, _HOURS, _STRING = range(7)
_VALUE_KINDS: Final[Mapping[str, int]] = {
    "double": _DOUBLE, "boolean": _BOOL, "long": _LONG, "int": _LONG, "string": _STRING}


class Preencoded:
    """A field value together with its Avro encoding (for values repeated in every message)."""

    __slots__ = ("body", "value")

    def __init__(self, value: Any, body: bytes) -> None:
        self.value = value
        self.body = body


def _nullable_branch(t: Any) -> Any | None:
    if isinstance(t, list) and len(t) == 2 and t[0] == "null":
        return t[1]
    return None


def _is_long(t: Any) -> bool:
    return t == "long" or (isinstance(t, Mapping) and t.get("type") == "long")


def insight_shape(rec: Any, comp: SchemaCompiler, ns: str | None
                  ) -> tuple[int, list[str], dict[str, bytes] | None]:
    """(kind, field names, enum index) of a record: an insight ``[value, unit, datetime]``, the
    Hours record ``[Hour, datetime]``, or ``_OTHER``."""
    if not isinstance(rec, Mapping) or rec.get("type") != "record":
        return _OTHER, [], None
    names = [f["name"] for f in rec["fields"]]
    branches = [_nullable_branch(f["type"]) for f in rec["fields"]]
    if any(b is None for b in branches) or names[-1:] != ["datetime"] or \
            not _is_long(comp.resolve(branches[-1], ns)):
        return _OTHER, [], None
    if names == ["Hour", "datetime"] and branches[0] == "double":
        return _HOURS, names, None
    if len(names) != 3 or branches[1] != "string":
        return _OTHER, [], None
    v = comp.resolve(branches[0], rec.get("namespace", ns))
    if isinstance(v, Mapping) and v.get("type") == "enum":
        return _ENUM, names, {s: encode_long(i) for i, s in enumerate(v["symbols"])}
    kind = _VALUE_KINDS.get(v, _OTHER) if isinstance(v, str) else _OTHER
    return kind, names if kind != _OTHER else [], None


class SparseRecordWriter:
    """Encodes a record of nullable fields from entries (see the module docstring)."""

    __slots__ = ("_dt_cache", "_enc", "_enum", "_fields", "_kind", "_strings", "_tail",
                 "_unit", "index", "names")

    def __init__(self, schema: Mapping[str, Any], units: Mapping[str, str | None]) -> None:
        comp = SchemaCompiler()
        comp.compile(schema)  # registers every named type
        ns = schema.get("namespace")
        fields = schema["fields"]
        self.names: list[str] = [f["name"] for f in fields]
        self.index: dict[str, int] = {n: i for i, n in enumerate(self.names)}
        self._kind: list[int] = []
        self._enc: list[Enc] = []
        self._tail: list[bytes] = []
        self._unit: list[str | None] = []
        self._enum: list[dict[str, bytes] | None] = []
        self._fields: list[list[str]] = []  # an insight's own field names
        self._strings = comp.strings
        for f in fields:
            branch = _nullable_branch(f["type"])
            if branch is None:
                raise ValueError(f"field {f['name']!r} is not a ['null', T] union")
            self._enc.append(comp.compile(branch, ns))
            kind, names, enum_idx = insight_shape(comp.resolve(branch, ns), comp, ns)
            self._kind.append(kind)
            self._fields.append(names)
            self._enum.append(enum_idx)
            unit = units.get(f["name"]) if kind not in (_OTHER, _HOURS) else None
            self._unit.append(unit)
            self._tail.append(_tail(kind, unit))
        self._dt_cache: list[Any] = [None, b""]

    def encode_into(self, entries: Sequence[tuple[int, Any, int | None]], out: bytearray) -> None:
        """Append the Avro body of the record made of ``entries`` to ``out``."""
        kind, tail = self._kind, self._tail
        dtc = self._dt_cache
        last = -1
        for i, v, dt in entries:
            if i <= last:
                raise ValueError(f"entries out of schema order at field {self.names[i]!r}")
            gap = i - last - 1
            if gap:
                out += b"\x00" * gap
            k = kind[i]
            if k == _OTHER:
                out.append(2)
                if type(v) is Preencoded:
                    out += v.body
                else:
                    self._enc[i](v, out)
            else:
                if dt != dtc[0]:  # most entries of a message share one measurement time
                    dtc[0] = dt
                    dtc[1] = encode_long(dt)  # type: ignore[arg-type]
                if k == _DOUBLE:  # most insights: inline
                    out += b"\x02\x02"
                    out += _pack_double(v)
                else:
                    self._value(i, k, v, out)
                out += tail[i]
                out += dtc[1]
            last = i
        rest = len(kind) - 1 - last
        if rest:
            out += b"\x00" * rest

    def _value(self, i: int, k: int, v: Any, out: bytearray) -> None:
        """The insight record's value union (non-null) and value."""
        if k in (_DOUBLE, _HOURS):
            out += b"\x02\x02"
            out += _pack_double(v)
        elif k == _BOOL:
            out += b"\x02\x02\x01" if v else b"\x02\x02\x00"
        elif k == _LONG:
            out += b"\x02\x02"
            out += encode_long(v)
        elif k == _STRING:
            b = self._strings.get(v)
            if b is None:
                raw = v.encode()
                b = encode_long(len(raw)) + raw
            out += b"\x02\x02"
            out += b
        else:
            out += b"\x02\x02"
            out += self._enum[i][v]  # type: ignore[index]

    def preencode(self, name: str, value: Any) -> Preencoded:
        """``value`` for field ``name`` with its body encoded once, to reuse in many entries."""
        i = self.index[name]
        if self._kind[i] != _OTHER:
            raise ValueError(f"{name!r} is insight-shaped; pass its bare value instead")
        out = bytearray()
        self._enc[i](value, out)
        return Preencoded(value, bytes(out))

    def encode(self, entries: Sequence[tuple[int, Any, int | None]]) -> bytes:
        out = bytearray()
        self.encode_into(entries, out)
        return bytes(out)

    def framed(self, schema_id: int, entries: Sequence[tuple[int, Any, int | None]]) -> bytes:
        out = bytearray(confluent_header(schema_id))
        self.encode_into(entries, out)
        return bytes(out)

    def to_dict(self, entries: Sequence[tuple[int, Any, int | None]]) -> dict[str, Any]:
        """The same record as a dict (the form fastavro and ``records()`` consumers use)."""
        names, kind, unit = self.names, self._kind, self._unit
        d: dict[str, Any] = {}
        for i, v, dt in entries:
            k = kind[i]
            if k == _OTHER:
                if type(v) is Preencoded:
                    # a copy: the same value is shared by every message of a machine
                    v = dict(v.value) if isinstance(v.value, dict) else v.value
                d[names[i]] = v
                continue
            fields = self._fields[i]
            rec = {fields[0]: v}
            if k != _HOURS and unit[i] is not None:
                rec[fields[1]] = unit[i]
            rec["datetime"] = dt
            d[names[i]] = rec
        return d


def _tail(kind: int, unit: str | None) -> bytes:
    """Bytes after an insight's value: the unit union (null or string), the datetime index."""
    if kind == _OTHER:
        return b""
    if kind == _HOURS:
        return b"\x02"
    if unit is None:
        return b"\x00\x02"
    raw = unit.encode()
    return b"\x02" + encode_long(len(raw)) + raw + b"\x02"
