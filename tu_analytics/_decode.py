"""Confluent-framed Avro values -> Polars, in bulk and natively.

A framed value is ``0x00``, a 4-byte big-endian schema id, then the Avro body. Values are grouped
by schema id; each group becomes one in-memory Avro object container that Polars' Rust reader
decodes in one call. The container's record is the writer schema wrapped in two extra fields::

    {__tu_hdr: fixed(5), <writer fields...>, __tu_end: fixed(8)}

so each *framed* value is exactly one record and the group's values join with a random 8-byte
sentinel between them (``sentinel.join(values)``: one C call, no per-record Python). The reader
then proves every record boundary: a body that is truncated, has trailing bytes or is garbage
shifts what is read as ``__tu_end`` (or makes the reader raise), so rows whose header and
sentinel columns are intact are exactly the well-delimited records. Failing chunks are narrowed
down by bisection; small ones are checked record by record with fastavro.

The container schema is rewritten for the reader: named references inlined (Polars rejects
them), enums read as their ``int`` index (nullable enums make Polars panic) and mapped back to
symbols vectorised, maps read as ``array<{key, value}>`` (same bytes). Schemas no native reader
takes (unions of several non-null branches, ``null`` fields) are decoded with fastavro instead
(slow path, logged once per schema).

Nothing here does I/O or talks to Kafka; it is pure bytes -> frames.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Final, cast

import fastavro
import polars as pl
from polars.datatypes import DataTypeClass
from polars.exceptions import PanicException, PolarsError

__all__ = [
    "Decoded",
    "as_dtype",
    "avro_to_polars",
    "concat",
    "decode",
    "decode_chunk",
    "records_schema",
    "schema_ids",
    "split_header",
    "struct_fields",
]

log = logging.getLogger(__name__)

KAFKA_COLUMNS: Final = ("partition", "offset", "kafka_timestamp")
_KAFKA_SCHEMA: Final = pl.Schema({
    "partition": pl.Int32(),
    "offset": pl.Int64(),
    "kafka_timestamp": pl.Datetime("ms", "UTC"),
})
ERRORS_SCHEMA: Final = pl.Schema({
    **_KAFKA_SCHEMA,
    "schema_id": pl.Int32(),
    "reason": pl.String(),
    "key": pl.Binary(),
    "value": pl.Binary(),
})
CORRUPT: Final = "truncated or corrupt Avro body"

_HDR: Final = "__tu_hdr"
_END: Final = "__tu_end"
_ROW: Final = "__tu_row"
_SENTINEL_SIZE: Final = 8
_SYNC_SIZE: Final = 16
# Chunks are the unit of parallel work and of failure isolation: a bad record costs at most a
# few re-decodes of its chunk. Below _SMALL records, fastavro checks each record instead.
_CHUNK: Final = 16_384
_SMALL: Final = 64
_PRIMITIVES: Final = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
)
# What the native reader can raise on a malformed container. A Rust panic surfaces as
# pyo3's PanicException, a BaseException: caught by name so KeyboardInterrupt still propagates.
_NATIVE_ERRORS: Final = (PolarsError, PanicException, OSError, ValueError)

_ExprFn = Callable[[pl.Expr], pl.Expr]
_PyFn = Callable[[Any], Any]


@dataclass(frozen=True)
class Decoded:
    """Decoded records (Kafka columns, ``schema_id``, ``key``, one column per Avro field, in
    input order) and the records that could not be decoded (docs/frames.md, ``errors``)."""

    records: pl.DataFrame
    errors: pl.DataFrame


# -- headers ----------------------------------------------------------------------------------


def split_header(values: pl.Series) -> pl.DataFrame:
    """Per value: ``magic`` (UInt8, first byte), ``schema_id`` (Int32, null unless the value
    is Confluent-framed: at least 5 bytes starting with 0x00) and ``size`` (bytes)."""
    framed = pl.col("v").bin.size() >= 5
    return pl.DataFrame({"v": values}).select(
        pl.col("v").bin.slice(0, 1).bin.reinterpret(dtype=pl.UInt8).alias("magic"),
        pl.when(framed & (pl.col("v").bin.slice(0, 1) == b"\x00"))
        .then(pl.col("v").bin.slice(1, 4).bin.reinterpret(dtype=pl.Int32, endianness="big"))
        .alias("schema_id"),
        pl.col("v").bin.size().cast(pl.Int64).alias("size"),
    )


def schema_ids(values: pl.Series) -> list[int]:
    """The distinct schema ids of the Confluent-framed values, sorted (for registry look-ups)."""
    ids = split_header(values)["schema_id"].drop_nulls().unique().sort()
    return [int(i) for i in ids]


def _header_reasons(values: pl.Series, head: pl.DataFrame,
                    schemas: Mapping[int, str | None]) -> pl.Series:
    """Why each value cannot be decoded before its body is looked at; null when it can."""
    missing = [i for i in head["schema_id"].drop_nulls().unique() if i not in schemas]
    not_found = [i for i, s in schemas.items() if s is None]
    sid = pl.col("schema_id").cast(pl.String)
    return head.with_columns(v=values).select(
        pl.when(pl.col("size").is_null())
        .then(pl.lit("null value"))
        .when(pl.col("magic") != 0)
        .then(pl.lit("bad magic byte 0x") + pl.col("v").bin.slice(0, 1).bin.encode("hex"))
        .when(pl.col("size") < 5)
        .then(pl.lit("value shorter than 5 bytes (") + pl.col("size").cast(pl.String) + " bytes)")
        .when(pl.col("schema_id").is_in(not_found))
        .then(pl.lit("unknown schema id ") + sid + " (registry: not found)")
        .when(pl.col("schema_id").is_in(missing))
        .then(pl.lit("unknown schema id ") + sid + " (no schema given)")
        .alias("reason")
    ).to_series()


# -- Avro schema -> container schema, Polars dtype and fix-ups ---------------------------------


@dataclass(frozen=True)
class _Node:
    """One Avro type, compiled. ``container`` is its type in the reader's container schema
    (None: no native reader takes it); ``fix`` turns the native column into ``dtype``;
    ``check`` is True where a native value is valid (enum indexes in range); ``py`` turns a
    fastavro value into one Polars accepts for ``dtype`` (slow path)."""

    container: Any
    dtype: pl.DataType
    fix: _ExprFn | None = None
    check: _ExprFn | None = None
    py: _PyFn | None = None
    slow: str | None = None


class UnsupportedSchemaError(ValueError):
    """A writer schema that no Polars dtype can represent (e.g. a recursive type)."""


_LOGICAL: Final[Mapping[tuple[str, str], pl.DataType]] = {
    ("int", "date"): pl.Date(),
    ("int", "time-millis"): pl.Time(),
    ("long", "time-micros"): pl.Time(),
    ("long", "timestamp-millis"): pl.Datetime("ms", "UTC"),
    ("long", "timestamp-micros"): pl.Datetime("us", "UTC"),
    ("long", "timestamp-nanos"): pl.Datetime("ns", "UTC"),
    ("long", "local-timestamp-millis"): pl.Datetime("ms"),
    ("long", "local-timestamp-micros"): pl.Datetime("us"),
    ("long", "local-timestamp-nanos"): pl.Datetime("ns"),
    ("string", "uuid"): pl.String(),
}
_PRIMITIVE_DTYPES: Final[Mapping[str, pl.DataType]] = {
    "null": pl.Null(),
    "boolean": pl.Boolean(),
    "int": pl.Int32(),
    "long": pl.Int64(),
    "float": pl.Float32(),
    "double": pl.Float64(),
    "bytes": pl.Binary(),
    "string": pl.String(),
}


class _Compiler:
    """Walks a writer schema once, resolving named types by Avro's namespace rules."""

    def __init__(self) -> None:
        self.names: dict[str, tuple[dict[str, Any], str | None]] = {}
        self.expanding: list[str] = []
        self.counter = itertools.count()

    def node(self, t: Any, ns: str | None) -> _Node:
        if isinstance(t, str):
            return self._named_or_primitive(t, ns)
        if isinstance(t, list):
            return self._union(t, ns)
        kind = t["type"]
        if kind in ("record", "error", "enum", "fixed"):
            full = _fullname(t["name"], t.get("namespace", ns))
            self.names[full] = (t, _namespace_of(full))
            return self._define(t, full)
        if kind == "array":
            return self._array(self.node(t["items"], ns))
        if kind == "map":
            return self._map(self.node(t["values"], ns))
        if isinstance(kind, str) and kind in _PRIMITIVES:
            return _primitive(kind, t.get("logicalType"), t)
        return self.node(kind, ns)  # {"type": {...}} or {"type": "Name"}

    def _named_or_primitive(self, t: str, ns: str | None) -> _Node:
        if t in _PRIMITIVES:
            return _primitive(t, None, {})
        full = _fullname(t, ns)
        found = self.names.get(full) or self.names.get(t)
        if found is None:
            raise UnsupportedSchemaError(f"unknown type {t!r}")
        return self._define(found[0], _fullname(found[0]["name"], found[1]))

    def _define(self, t: dict[str, Any], full: str) -> _Node:
        if full in self.expanding:
            raise UnsupportedSchemaError(f"recursive type {full!r}")
        self.expanding.append(full)
        try:
            name = f"__t{next(self.counter)}"
            if t["type"] == "enum":
                return _enum(list(t["symbols"]))
            if t["type"] == "fixed":
                return _fixed(name, t)
            return self.record(t, name, _namespace_of(full))
        finally:
            self.expanding.pop()

    def record(self, t: dict[str, Any], name: str, ns: str | None) -> _Node:
        kids = {f["name"]: self.node(f["type"], ns) for f in t["fields"]}
        return _record(name, kids)

    def _array(self, item: _Node) -> _Node:
        fix, check, py = item.fix, item.check, item.py
        container = None if item.container is None else {"type": "array", "items": item.container}
        return _Node(
            container=container,
            dtype=pl.List(item.dtype),
            fix=None if fix is None else lambda e: e.list.eval(fix(pl.element())),
            check=None if check is None else (
                lambda e: e.list.eval(check(pl.element())).list.all().fill_null(True)),
            py=None if py is None else lambda v: None if v is None else [py(x) for x in v],
            slow=item.slow,
        )

    def _map(self, value: _Node) -> _Node:
        # A map's bytes are those of an array of {key, value} records: same blocks, same order.
        entry = _record(f"__t{next(self.counter)}", {"key": _primitive("string", None, {}),
                                                      "value": value})
        vpy = value.py or (lambda v: v)
        node = self._array(entry)
        return _Node(node.container, node.dtype, node.fix, node.check,
                     lambda m: None if m is None else [{"key": k, "value": vpy(v)}
                                                       for k, v in m.items()],
                     node.slow)

    def _union(self, branches: list[Any], ns: str | None) -> _Node:
        nodes = [self.node(b, ns) for b in branches]
        real = [(b, n) for b, n in zip(branches, nodes, strict=True) if n.dtype != pl.Null()]
        if len(real) == 1:
            (_, only), null_first = real[0], nodes[0].dtype == pl.Null()
            if only.container is None:
                return only
            # [T] is encoded exactly like [T, "null"] (branch 0 = T); Polars only takes the latter.
            members = ["null", only.container] if null_first else [only.container, "null"]
            return _Node(members, only.dtype, only.fix, only.check, only.py, only.slow)
        if not real:
            return _Node(None, pl.Null(), slow="a null-only field")
        return _multi_union(real)


def _fullname(name: str, ns: str | None) -> str:
    return name if "." in name or not ns else f"{ns}.{name}"


def _namespace_of(full: str) -> str | None:
    return full.rpartition(".")[0] or None


def _primitive(kind: str, logical: str | None, t: Mapping[str, Any]) -> _Node:
    if kind == "null":
        return _Node(None, pl.Null(), slow="a null-typed field")
    if logical == "decimal" and kind == "bytes":
        dtype: pl.DataType = pl.Decimal(int(t["precision"]), int(t.get("scale", 0)))
        return _Node(dict(t), dtype)
    dtype = _LOGICAL.get((kind, logical or ""), _PRIMITIVE_DTYPES[kind])
    container: Any = {"type": kind, "logicalType": logical} if (kind, logical) in _LOGICAL else kind
    if logical == "uuid":
        return _Node(container, dtype, py=lambda v: None if v is None else str(v))
    return _Node(container, dtype)


def _fixed(name: str, t: Mapping[str, Any]) -> _Node:
    container: dict[str, Any] = {"type": "fixed", "name": name, "size": int(t["size"])}
    if t.get("logicalType") == "decimal":
        container.update(logicalType="decimal", precision=t["precision"], scale=t.get("scale", 0))
        return _Node(container, pl.Decimal(int(t["precision"]), int(t.get("scale", 0))))
    return _Node(container, pl.Binary())


def _enum(symbols: list[str]) -> _Node:
    # An enum's bytes are its index as an Avro int; read the int, map it to its symbol.
    last = len(symbols) - 1
    return _Node(
        container="int",
        dtype=pl.String(),
        fix=lambda e: e.replace_strict(list(range(len(symbols))), symbols, default=None,
                                       return_dtype=pl.String),
        check=lambda e: e.is_between(0, last).fill_null(True),
    )


def _record(name: str, kids: Mapping[str, _Node]) -> _Node:
    slow = next((k.slow for k in kids.values() if k.slow), None)
    fixes = {f: k.fix for f, k in kids.items() if k.fix is not None}
    checks = {f: k.check for f, k in kids.items() if k.check is not None}
    pys = {f: k.py for f, k in kids.items() if k.py is not None}

    def fix(e: pl.Expr) -> pl.Expr:
        return e.struct.with_fields([fn(pl.field(f)).alias(f) for f, fn in fixes.items()])

    def check(e: pl.Expr) -> pl.Expr:
        return pl.all_horizontal([fn(e.struct.field(f)) for f, fn in checks.items()])

    def py(d: Any) -> Any:
        return None if d is None else {**d, **{f: fn(d[f]) for f, fn in pys.items()}}

    container = None if slow else {"type": "record", "name": name, "fields": [
        {"name": f, "type": k.container} for f, k in kids.items()]}
    return _Node(container, pl.Struct({f: k.dtype for f, k in kids.items()}),
                 fix if fixes else None, check if checks else None, py if pys else None, slow)


def _branch_name(t: Any) -> str:
    if isinstance(t, str):
        return t.rpartition(".")[2]
    kind = t["type"]
    return str(t["name"]) if kind in ("record", "error", "enum", "fixed") else _branch_name(kind)


def _multi_union(real: list[tuple[Any, _Node]]) -> _Node:
    # No native reader decodes these; the slow path gives one struct field per branch.
    named = [(_branch_name(b), n) for b, n in real]
    dtype = pl.Struct({name: n.dtype for name, n in named})

    def pick(name: str, v: Any) -> dict[str, Any]:
        return {k: ((n.py(v) if n.py else v) if k == name else None) for k, n in named}

    def py(v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, tuple):  # fastavro's (record name, record) for unions of records
            return pick(v[0].rpartition(".")[2], v[1])
        for name, n in named:
            if _matches(n.dtype, v):
                return pick(name, v)
        raise TypeError(f"no union branch for {type(v).__name__}")

    return _Node(None, dtype, py=py, slow="a union of several non-null types")


def _matches(dtype: pl.DataType, v: Any) -> bool:
    """Whether fastavro's value ``v`` can come from a branch decoding to ``dtype``."""
    if isinstance(v, bool) or dtype == pl.Boolean():
        return isinstance(v, bool) and dtype == pl.Boolean()
    if isinstance(dtype, pl.Datetime):
        return isinstance(v, datetime)
    checks: list[tuple[bool, type | tuple[type, ...]]] = [
        (dtype.is_integer(), int),
        (dtype.is_float(), (float, int)),
        (isinstance(dtype, pl.Decimal), Decimal),
        (dtype == pl.String(), (str, uuid.UUID)),
        (dtype == pl.Binary(), bytes),
        (dtype == pl.Date(), date),
        (dtype == pl.Time(), time),
        (isinstance(dtype, pl.List), (list, dict)),  # a map is a list of {key, value}
        (isinstance(dtype, pl.Struct), dict),
    ]
    return any(applies and isinstance(v, kinds) for applies, kinds in checks)


@dataclass(frozen=True)
class _Plan:
    """Everything needed to decode the values of one writer schema."""

    dtypes: dict[str, pl.DataType]
    container_head: bytes | None  # container header + sync marker; None: slow path only
    sync: bytes
    slow: str | None
    fixes: tuple[pl.Expr, ...]
    check: pl.Expr | None
    pys: dict[str, _PyFn]
    parsed: Any = field(repr=False)  # fastavro's parsed writer schema


@functools.lru_cache(maxsize=64)
def _plan(schema_json: str) -> _Plan:
    writer = json.loads(schema_json)
    comp = _Compiler()
    if isinstance(writer, dict) and writer.get("type") in ("record", "error"):
        full = _fullname(writer["name"], writer.get("namespace"))
        comp.names[full] = (writer, _namespace_of(full))
        comp.expanding.append(full)
        kids = {f["name"]: comp.node(f["type"], _namespace_of(full)) for f in writer["fields"]}
    else:  # a bare (non-record) schema: one column named "value"
        kids = {"value": comp.node(writer, None)}
    top = _record("__TuFramed", kids)
    sync = os.urandom(_SYNC_SIZE)
    head = None
    if top.container is not None:
        head = _container_header(_wrap(top.container["fields"]), sync)
    return _Plan(
        dtypes={f: k.dtype for f, k in kids.items()},
        container_head=head,
        sync=sync,
        slow=top.slow,
        fixes=tuple(k.fix(pl.col(f)).alias(f) for f, k in kids.items() if k.fix),
        check=pl.all_horizontal([k.check(pl.col(f)) for f, k in kids.items() if k.check])
        if any(k.check for k in kids.values()) else None,
        pys={f: k.py for f, k in kids.items() if k.py},
        parsed=fastavro.parse_schema(writer),
    )


def avro_to_polars(schema_json: str) -> pl.Schema:
    """The Polars dtype of each top-level field of a writer schema, as ``decode`` produces it."""
    return pl.Schema(_plan(schema_json).dtypes)


def records_schema(schemas: Iterable[str]) -> pl.Schema:
    """The schema of ``Decoded.records`` for values written with these writer schemas
    (unusable ones are skipped: ``decode`` sends their records to ``errors``)."""
    fields = _merged_dtypes([p.dtypes for p in map(_usable_plan, schemas) if p is not None])
    return pl.Schema({**_KAFKA_SCHEMA, "schema_id": pl.Int32(), "key": pl.Binary(), **fields})


_SCHEMA_ERRORS: Final = (UnsupportedSchemaError, ValueError, KeyError, TypeError)


def _usable_plan(schema_json: str) -> _Plan | None:
    try:
        return _plan(schema_json)
    except _SCHEMA_ERRORS:
        return None


def _wrap(fields: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "record", "name": "__TuFramed", "fields": [
        {"name": _HDR, "type": {"type": "fixed", "name": "__TuHeader", "size": 5}},
        *fields,
        {"name": _END, "type": {"type": "fixed", "name": "__TuEnd", "size": _SENTINEL_SIZE}},
    ]}


# -- the in-memory container -------------------------------------------------------------------


def _long(n: int) -> bytes:
    """Avro's zigzag varint."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _avro_bytes(b: bytes) -> bytes:
    return _long(len(b)) + b


def _container_header(schema: dict[str, Any], sync: bytes) -> bytes:
    meta = (_long(2) + _avro_bytes(b"avro.schema") + _avro_bytes(json.dumps(schema).encode())
            + _avro_bytes(b"avro.codec") + _avro_bytes(b"null") + _long(0))
    return b"Obj\x01" + meta + sync


def _read_native(plan: _Plan, values: Sequence[bytes], sentinel: bytes) -> pl.DataFrame | None:
    """All values as one block; None when the reader rejects the container."""
    assert plan.container_head is not None
    data = sentinel.join(values)
    buf = b"".join((plan.container_head, _long(len(values)), _long(len(data) + len(sentinel)),
                    data, sentinel, plan.sync))
    try:
        return pl.read_avro(io.BytesIO(buf))
    except _NATIVE_ERRORS:
        return None


def _good_prefix(df: pl.DataFrame, n: int, header: bytes, sentinel: bytes) -> int:
    """How many leading rows are provably well-delimited records."""
    if df.height != n:
        return 0
    broken = df.select(
        ((pl.col(_HDR) != header) | (pl.col(_END) != sentinel)).arg_true().first()
    ).item()
    return n if broken is None else int(broken)


# -- decoding one schema's values --------------------------------------------------------------


@dataclass
class _Result:
    """Decoded pieces (each with its ``_ROW`` column) and the input rows found corrupt."""

    pieces: list[pl.DataFrame] = field(default_factory=list)
    bad: list[int] = field(default_factory=list)

    def extend(self, other: _Result) -> None:
        self.pieces += other.pieces
        self.bad += other.bad


class _Group:
    """The values of one schema id (``rows``: their input row numbers) and how to decode them.
    Positions below are indexes into ``values``."""

    def __init__(self, sid: int, plan: _Plan, rows: pl.Series, values: pl.Series,
                 raw: Sequence[bytes | None] | None) -> None:
        # ``values`` is the whole input column: Python bytes are made one chunk at a time,
        # unless the caller already holds them (``raw``: the same values as bytes).
        self.sid, self.plan, self.rows, self._values, self._raw = sid, plan, rows, values, raw
        self.header = b"\x00" + sid.to_bytes(4, "big", signed=True)
        self.sentinel = os.urandom(_SENTINEL_SIZE)
        n = len(rows)
        # Rows are increasing; a group holding every row in a span is sliced, not gathered.
        self._first = int(rows[0]) if n else 0
        self._span = n > 0 and int(rows[-1]) - self._first == n - 1

    def chunks(self, workers: int) -> Iterator[tuple[int, int]]:
        n = len(self.rows)
        size = max(1, min(_CHUNK, -(-n // workers)))
        return ((lo, min(lo + size, n)) for lo in range(0, n, size))

    def solve(self, lo: int, hi: int) -> _Result:
        """Decode values[lo:hi] natively, narrowing failures down to the bad records."""
        if self.plan.container_head is None:
            return self._slow(list(range(lo, hi)))
        df = _read_native(self.plan, self._bytes(range(lo, hi)), self.sentinel)
        good = 0 if df is None else _good_prefix(df, hi - lo, self.header, self.sentinel)
        out = _Result()
        if df is not None and good:
            out.extend(self._accept(df.head(good), self.rows.slice(lo, good)))
        if good == hi - lo:
            return out
        # Rows before the first broken one were aligned, so the damage starts at lo + good.
        start = lo + good
        if hi - start <= _SMALL:
            out.extend(self._one_by_one(start, hi))
        else:
            mid = (start + hi + 1) // 2
            out.extend(self.solve(start, mid))
            out.extend(self.solve(mid, hi))
        return out

    def _accept(self, df: pl.DataFrame, rows: pl.Series) -> _Result:
        """Keep well-delimited rows whose enum indexes are in range; finish their columns."""
        bad: list[int] = []
        if self.plan.check is not None:
            ok = df.select(self.plan.check).to_series()
            if not ok.all():
                bad = rows.filter(~ok).to_list()
                df, rows = df.filter(ok), rows.filter(ok)
        df = df.drop(_HDR, _END)
        if self.plan.fixes:
            df = df.with_columns(self.plan.fixes)
        have = df.schema
        wrong = {c: t for c, t in self.plan.dtypes.items() if have[c] != t}
        if wrong:
            df = df.cast(wrong)  # type: ignore[arg-type]
        return _Result([df.with_columns(rows.alias(_ROW))], bad)

    def _one_by_one(self, lo: int, hi: int) -> _Result:
        """Check each record with fastavro, then decode the valid ones natively."""
        values = dict(zip(range(lo, hi), self._bytes(range(lo, hi)), strict=True))
        ok = [i for i, v in values.items() if _fastavro_valid(self.plan.parsed, v)]
        out = _Result(bad=self._rows(sorted(set(values) - set(ok))).to_list())
        if not ok:
            return out
        df = _read_native(self.plan, [values[i] for i in ok], self.sentinel)
        if df is not None and _good_prefix(df, len(ok), self.header, self.sentinel) == len(ok):
            out.extend(self._accept(df, self._rows(ok)))
        else:  # fastavro accepts what the native reader refuses: decode them the slow way
            out.extend(self._slow(ok))
        return out

    def _rows(self, positions: Sequence[int]) -> pl.Series:
        return self.rows.gather(list(positions))

    def _bytes(self, positions: Sequence[int]) -> list[bytes]:
        run = positions if isinstance(positions, range) and positions.step == 1 else None
        if self._raw is not None:
            # Header checks let no null value into a group.
            if run is not None and self._span:
                first = self._first + run.start
                return cast("list[bytes]", self._raw[first:first + len(run)])
            raw = self._raw
            return [cast("bytes", raw[i]) for i in self._rows(positions).to_list()]
        rows = self.rows.slice(run.start, len(run)) if run is not None else self._rows(positions)
        picked: list[bytes] = self._values.gather(rows).to_list()
        return picked

    def _slow(self, positions: list[int]) -> _Result:
        _warn_slow(self.sid, self.plan.slow or "the native reader refusing valid records")
        recs = {i: _fastavro_read(self.plan, v)
                for i, v in zip(positions, self._bytes(positions), strict=True)}
        ok = [i for i, r in recs.items() if r is not None]
        bad = self._rows([i for i, r in recs.items() if r is None]).to_list()
        frame = _frame_from_dicts(self.plan.dtypes, [recs[i] for i in ok])
        if frame is not None:
            return _Result([frame.with_columns(self._rows(ok).alias(_ROW))], bad)
        # One record Polars cannot hold spoils the batch: find it.
        out = _Result(bad=bad)
        for i in ok:
            one = _frame_from_dicts(self.plan.dtypes, [recs[i]])
            if one is None:
                out.bad += self._rows([i]).to_list()
            else:
                out.pieces.append(one.with_columns(self._rows([i]).alias(_ROW)))
        return out


def _fastavro_valid(parsed: Any, value: bytes) -> bool:
    buf = io.BytesIO(value)
    buf.seek(5)
    try:
        fastavro.schemaless_reader(buf, parsed, None)
    except Exception:  # any failure on garbage means "not a valid body"
        return False
    return buf.tell() == len(value)


def _fastavro_read(plan: _Plan, value: bytes) -> dict[str, Any] | None:
    buf = io.BytesIO(value)
    buf.seek(5)
    try:
        rec = fastavro.schemaless_reader(buf, plan.parsed, None, return_record_name=True,
                                         return_record_name_override=True)
        if buf.tell() != len(value):
            return None
        if not isinstance(rec, dict):
            rec = {"value": rec}
        return {**rec, **{f: fn(rec[f]) for f, fn in plan.pys.items()}}
    except Exception:  # any failure on garbage means "not a valid body"
        return None


def _frame_from_dicts(dtypes: Mapping[str, pl.DataType],
                      dicts: Sequence[dict[str, Any] | None]) -> pl.DataFrame | None:
    # Columns built against the writer schema's dtypes: never inferred from sample rows.
    try:
        return pl.DataFrame([pl.Series(f, [d.get(f) if d else None for d in dicts], dtype=t)
                             for f, t in dtypes.items()])
    except (PolarsError, TypeError, ValueError, OverflowError):
        return None


@functools.lru_cache(maxsize=256)
def _warn_slow(sid: int, why: str) -> None:
    log.warning("schema id %d: decoding with fastavro (slow path) because of %s", sid, why)


# -- decode ------------------------------------------------------------------------------------


def decode(records: pl.DataFrame, schemas: Mapping[int, str | None]) -> Decoded:
    """Decode framed Avro ``value``s. Every input row ends up in exactly one of
    ``Decoded.records`` (input order) and ``Decoded.errors``."""
    head = split_header(records["value"])
    return _decode(records, head, schemas, None, os.cpu_count() or 1)


def decode_chunk(
    records: pl.DataFrame,
    raw: Sequence[bytes | None],
    lookup: Callable[[list[int]], Mapping[int, str | None]],
) -> tuple[Decoded, dict[int, str | None]]:
    """``decode`` for one chunk of a larger read, on the calling thread only (the caller runs
    chunks in parallel). ``raw`` is ``records["value"]`` as the ``bytes`` the consumer handed
    out, so they are not converted back; ``lookup`` gives the writer schemas of the chunk's
    schema ids. Returns the schemas used too. Join chunks with :func:`concat`."""
    head = split_header(records["value"])
    ids = head["schema_id"].drop_nulls().unique().sort().to_list()
    schemas = dict(lookup(ids))
    return _decode(records, head, schemas, raw, 1), schemas


def concat(parts: Sequence[Decoded]) -> Decoded:
    """Decoded chunks as one, in the given order: each chunk's records are conformed to the
    dtypes merged over all chunks (as ``decode`` of all their records at once would)."""
    if not parts:
        empty = pl.DataFrame(schema={**_KAFKA_SCHEMA, "key": pl.Binary(), "value": pl.Binary()})
        return decode(empty, {})
    errors = [p.errors for p in parts if p.errors.height]
    errs = pl.concat(errors, rechunk=False) if errors else parts[0].errors
    try:
        # Usually every chunk has the same columns and dtypes: Polars checks that in bulk
        # (building each chunk's schema in Python costs ms per chunk).
        return Decoded(pl.concat([_materialized(p.records) for p in parts], rechunk=False),
                       errs)
    except PolarsError:
        pass
    fixed = len(_KAFKA_SCHEMA) + 2  # Kafka columns, schema_id, key: the same in every chunk
    lead = dict(list(parts[0].records.schema.items())[:fixed])
    merged = _merged_dtypes([dict(list(p.records.schema.items())[fixed:]) for p in parts])
    cols = {**lead, **merged}
    records = [_materialized(_shape(p.records, cols)) for p in parts]
    return Decoded(pl.concat(records, rechunk=False), errs)


def _decode(records: pl.DataFrame, head: pl.DataFrame, schemas: Mapping[int, str | None],
            raw: Sequence[bytes | None] | None, workers: int) -> Decoded:
    reasons = _header_reasons(records["value"], head, schemas)
    sids = head["schema_id"]
    todo = pl.DataFrame({"sid": sids, "ok": reasons.is_null()}).with_row_index(_ROW)
    todo = todo.filter(pl.col("ok"))
    groups, reasons = _groups(records["value"], raw, todo, schemas, reasons)
    result = _run(groups, workers)
    if result.bad:
        reasons = reasons.scatter(result.bad, CORRUPT)
    dtypes = _merged_dtypes([g.plan.dtypes for g in groups])
    # One writer schema: every piece already has its dtypes (no per-piece schema check).
    body = _assemble(records, sids, result.pieces, dtypes, uniform=len(groups) == 1)
    return Decoded(body, _errors(records, sids, reasons))


def _groups(values: pl.Series, raw: Sequence[bytes | None] | None, todo: pl.DataFrame,
            schemas: Mapping[int, str | None],
            reasons: pl.Series) -> tuple[list[_Group], pl.Series]:
    groups: list[_Group] = []
    for (sid,), part in todo.group_by("sid", maintain_order=True):
        text = schemas[int(sid)]
        assert text is not None
        rows = part[_ROW]
        try:
            plan = _plan(text)
        except _SCHEMA_ERRORS as exc:
            reasons = reasons.scatter(rows, f"unusable writer schema {sid}: {exc}")
            continue
        groups.append(_Group(int(sid), plan, rows, values, raw))
    return groups, reasons


def _run(groups: list[_Group], workers: int) -> _Result:
    jobs = [(g, lo, hi) for g in groups for lo, hi in g.chunks(workers)]
    out = _Result()
    if len(jobs) <= 1 or workers <= 1:
        for g, lo, hi in jobs:
            out.extend(g.solve(lo, hi))
        return out
    # The Rust reader releases the GIL: chunks decode in parallel.
    with ThreadPoolExecutor(max_workers=min(len(jobs), workers)) as pool:
        for res in pool.map(lambda job: job[0].solve(job[1], job[2]), jobs):
            out.extend(res)
    return out


def as_dtype(dtype: pl.DataType | DataTypeClass) -> pl.DataType:
    """A dtype instance (Polars hands out classes such as ``pl.Int32`` in nested types)."""
    return dtype() if isinstance(dtype, DataTypeClass) else dtype


def struct_fields(dtype: pl.DataType) -> dict[str, pl.DataType]:
    """A struct dtype's fields by name; empty for anything else."""
    return {f.name: as_dtype(f.dtype) for f in dtype.fields} if isinstance(dtype, pl.Struct) else {}


def _merged_dtypes(all_dtypes: list[dict[str, pl.DataType]]) -> dict[str, pl.DataType]:
    merged: dict[str, pl.DataType] = {}
    for dtypes in all_dtypes:
        for name, t in dtypes.items():
            merged[name] = _merge(merged[name], t) if name in merged else t
    return merged


def _merge(a: pl.DataType, b: pl.DataType) -> pl.DataType:
    """A dtype both can be conformed to (schema evolution: added struct fields, promotions)."""
    if a == b:
        return a
    if isinstance(a, pl.Struct) and isinstance(b, pl.Struct):
        fa, fb = struct_fields(a), struct_fields(b)
        merged = {**fb, **fa}
        return pl.Struct({n: _merge(fa[n], fb[n]) if n in fa and n in fb else merged[n]
                          for n in [*fa, *(n for n in fb if n not in fa)]})
    if isinstance(a, pl.List) and isinstance(b, pl.List):
        return pl.List(_merge(as_dtype(a.inner), as_dtype(b.inner)))
    if a == pl.Null():
        return b
    if b == pl.Null():
        return a
    if a.is_numeric() and b.is_numeric():
        return pl.Float64() if a.is_float() or b.is_float() else pl.Int64()
    return pl.String()


def _conform(e: pl.Expr, have: pl.DataType, want: pl.DataType) -> pl.Expr:
    """Reshape a column to a merged dtype by field name (a plain cast matches by position)."""
    if have == want:
        return e
    if isinstance(have, pl.Struct) and isinstance(want, pl.Struct):
        fields = struct_fields(have)
        parts = [(_conform(e.struct.field(n), fields[n], t) if n in fields
                  else pl.lit(None, dtype=t)).alias(n) for n, t in struct_fields(want).items()]
        return pl.when(e.is_null()).then(None).otherwise(pl.struct(parts))
    if isinstance(have, pl.List) and isinstance(want, pl.List):
        return e.list.eval(_conform(pl.element(), as_dtype(have.inner), as_dtype(want.inner)))
    return e.cast(want)


def _shape(piece: pl.DataFrame, cols: Mapping[str, pl.DataType]) -> pl.DataFrame:
    have = piece.schema
    if dict(have) == dict(cols):
        return piece.select(list(cols))
    return piece.select(_conform(pl.col(c), have[c], t).alias(c) if c in have
                        else pl.lit(None, dtype=t).alias(c) for c, t in cols.items())


def _materialized(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with every column a plain series. An all-null column can be held as one scalar,
    and ``concat`` merges consecutive ones into a single chunk; columns chunked unlike the
    others then make every later ``select`` copy the whole frame to realign them."""
    return pl.DataFrame(df.get_columns())


def _assemble(records: pl.DataFrame, sids: pl.Series, pieces: list[pl.DataFrame],
              dtypes: Mapping[str, pl.DataType], *, uniform: bool = False) -> pl.DataFrame:
    cols = {_ROW: pl.UInt32(), **dtypes}
    shaped = [_materialized(p.select(list(cols)) if uniform else _shape(p, cols))
              for p in pieces if p.height]
    body = pl.concat(shaped) if shaped else pl.DataFrame(schema=cols)
    if not body[_ROW].is_sorted():
        body = body.sort(_ROW)
    rows = body[_ROW]
    kafka = records.select(*KAFKA_COLUMNS).with_columns(schema_id=sids, key=records["key"])
    return pl.concat([kafka[rows], body.drop(_ROW)], how="horizontal")


def _errors(records: pl.DataFrame, sids: pl.Series, reasons: pl.Series) -> pl.DataFrame:
    return (
        records.with_columns(schema_id=sids, reason=reasons)
        .filter(pl.col("reason").is_not_null())
        .select(list(ERRORS_SCHEMA))
        .cast(dict(ERRORS_SCHEMA))  # type: ignore[arg-type]
    )
