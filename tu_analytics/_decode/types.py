"""Avro writer schema -> Polars dtypes, the native reader's container schema, and the program
the native transcoder (``tu_analytics._native``) runs.

One walk over a writer schema gives, per type, a :class:`Node`. Two layouts exist:

* **direct** (no compiled extension): the container schema is the writer schema, rewritten only
  where Polars' reader needs it (named references inlined, enums read as ``int``, maps as
  ``array<{key, value}>``). Unions of several non-null branches have no direct layout.
* **transcoded** (with the extension): the transcoder rewrites each record first, so unions of
  several non-null branches become ``["null", {branch: ["null", T], ...}]`` and dropped fields
  (the per-record unit strings, see ``handoff``) are not there at all.

Both give the same dtypes: a multi-branch union is a struct with one field per branch (exactly
one set), a dropped field is absent. Constructs neither takes (``null``-typed fields) are
decoded with fastavro; ``slow`` names them.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Final

import polars as pl

from .._avro import NAMED_KINDS, PRIMITIVES, NamedTypes, branch_name, namespace_of

__all__ = ["Compiler", "Node", "UnsupportedSchemaError"]

ExprFn = Callable[[pl.Expr], pl.Expr]
PyFn = Callable[[Any], Any]


class UnsupportedSchemaError(ValueError):
    """A writer schema that no Polars dtype can represent (e.g. a recursive type)."""


@dataclass(frozen=True)
class Node:
    """One Avro type, compiled. ``container`` is its type in the reader's container schema
    (None: no native reader takes it); ``prog`` its transcoder program (None: not transcoded);
    ``fix`` turns the native column into ``dtype``; ``check`` is True where a native value is
    valid (enum indexes in range); ``py`` turns a fastavro value into one Polars accepts for
    ``dtype`` (slow path); ``slow`` names the construct that sends it to fastavro."""

    container: Any
    dtype: pl.DataType
    prog: Any = None
    fix: ExprFn | None = None
    check: ExprFn | None = None
    py: PyFn | None = None
    slow: str | None = None


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


@dataclass
class Compiler:
    """Walks a writer schema once, resolving named types by Avro's namespace rules.

    ``native``: build the transcoded layout. ``drops``: per top-level field, the name of a
    string field of its record to leave out (kept once per window instead: ``handoff``).
    ``dropped`` lists, in the transcoder's slot order, the top-level fields a drop was made in.
    """

    native: bool
    drops: Mapping[str, str] = field(default_factory=dict)
    dropped: list[tuple[str, str]] = field(default_factory=list)
    names: NamedTypes[None] = field(default_factory=NamedTypes)
    expanding: list[str] = field(default_factory=list)
    counter: itertools.count[int] = field(default_factory=itertools.count)

    def top(self, name: str, t: Any, ns: str | None) -> Node:
        """A top-level field of the writer record."""
        return self.node(t, ns, (name, self.drops[name]) if name in self.drops else None)

    def node(self, t: Any, ns: str | None, drop: tuple[str, str] | None = None) -> Node:
        if isinstance(t, str):
            return self._named_or_primitive(t, ns, drop)
        if isinstance(t, list):
            return self._union(t, ns, drop)
        kind = t["type"]
        if kind in NAMED_KINDS:
            full = self.names.define(t, ns, None)
            return self._define(t, full, drop)
        if kind == "array":
            return self._array(self.node(t["items"], ns))
        if kind == "map":
            return self._map(self.node(t["values"], ns))
        if isinstance(kind, str) and kind in PRIMITIVES:
            return _primitive(kind, t.get("logicalType"), t)
        return self.node(kind, ns, drop)  # {"type": {...}} or {"type": "Name"}

    def _named_or_primitive(self, t: str, ns: str | None, drop: tuple[str, str] | None) -> Node:
        if t in PRIMITIVES:
            return _primitive(t, None, {})
        try:
            full, schema, _ = self.names.lookup(t, ns)
        except KeyError:
            raise UnsupportedSchemaError(f"unknown type {t!r}") from None
        return self._define(schema, full, drop)

    def _define(self, t: Mapping[str, Any], full: str, drop: tuple[str, str] | None) -> Node:
        if full in self.expanding:
            raise UnsupportedSchemaError(f"recursive type {full!r}")
        self.expanding.append(full)
        try:
            name = f"__t{next(self.counter)}"
            if t["type"] == "enum":
                return _enum(list(t["symbols"]))
            if t["type"] == "fixed":
                return _fixed(name, t)
            return self.record(t, name, namespace_of(full), drop)
        finally:
            self.expanding.pop()

    def record(self, t: Mapping[str, Any], name: str, ns: str | None,
               drop: tuple[str, str] | None = None) -> Node:
        kids = {f["name"]: self.node(f["type"], ns) for f in t["fields"]}
        gone = drop[1] if drop is not None and drop[1] in kids else None
        if gone is not None:
            assert drop is not None
            self.dropped.append(drop)
        return record_node(name, kids, gone, native=self.native)

    def _array(self, item: Node) -> Node:
        fix, check, py = item.fix, item.check, item.py
        return Node(
            container=None if item.container is None else {"type": "array",
                                                            "items": item.container},
            dtype=pl.List(item.dtype),
            prog=None if item.prog is None else ("array", item.prog),
            fix=None if fix is None else lambda e: e.list.eval(fix(pl.element())),
            check=None if check is None else (
                lambda e: e.list.eval(check(pl.element())).list.all().fill_null(True)),
            py=None if py is None else lambda v: None if v is None else [py(x) for x in v],
            slow=item.slow,
        )

    def _map(self, value: Node) -> Node:
        # A map's bytes are those of an array of {key, value} records: same blocks, same order.
        entry = record_node(f"__t{next(self.counter)}",
                        {"key": _primitive("string", None, {}), "value": value},
                        None, native=self.native)
        vpy = value.py or (lambda v: v)
        node = self._array(entry)
        return Node(node.container, node.dtype,
                    None if value.prog is None else ("map", value.prog), node.fix, node.check,
                    lambda m: None if m is None else [{"key": k, "value": vpy(v)}
                                                      for k, v in m.items()],
                    node.slow)

    def _union(self, branches: list[Any], ns: str | None,
               drop: tuple[str, str] | None) -> Node:
        nodes = [self.node(b, ns, drop) for b in branches]
        real = [(b, n) for b, n in zip(branches, nodes, strict=True) if n.dtype != pl.Null()]
        prog = None if any(n.prog is None and n.dtype != pl.Null() for n in nodes) else (
            "union", [n.prog or ("null",) for n in nodes])
        if len(real) == 1:
            (_, only), null_first = real[0], nodes[0].dtype == pl.Null()
            if only.container is None:
                return only
            # [T] is encoded exactly like [T, "null"] (branch 0 = T); Polars only takes the latter.
            members = ["null", only.container] if null_first else [only.container, "null"]
            return Node(members, only.dtype, prog, only.fix, only.check, only.py, only.slow)
        if not real:
            return Node(None, pl.Null(), slow="a null-only field")
        return self._multi_union(real, prog)

    def _multi_union(self, real: list[tuple[Any, Node]], prog: Any) -> Node:
        named = [(branch_name(b), n) for b, n in real]
        dtype = pl.Struct({name: n.dtype for name, n in named})
        py = _union_py(named)
        slow = next((n.slow for _, n in named if n.slow), None)
        if not self.native or slow is not None or prog is None:
            return Node(None, dtype, py=py, slow=slow or "a union of several non-null types")
        inner = {"type": "record", "name": f"__t{next(self.counter)}", "fields": [
            {"name": name, "type": ["null", n.container]} for name, n in named]}
        fixes = [(name, n.fix) for name, n in named if n.fix is not None]
        checks = [(name, n.check) for name, n in named if n.check is not None]
        return Node(
            container=["null", inner], dtype=dtype, prog=("split", prog[1]),
            fix=(lambda e: e.struct.with_fields([f(pl.field(k)).alias(k) for k, f in fixes]))
            if fixes else None,
            check=(lambda e: pl.all_horizontal([c(e.struct.field(k)).fill_null(True)
                                                for k, c in checks])) if checks else None,
            py=py,
        )


def _primitive(kind: str, logical: str | None, t: Mapping[str, Any]) -> Node:
    if kind == "null":
        return Node(None, pl.Null(), prog=("null",), slow="a null-typed field")
    if logical == "decimal" and kind == "bytes":
        dtype: pl.DataType = pl.Decimal(int(t["precision"]), int(t.get("scale", 0)))
        return Node(dict(t), dtype, prog=("bytes",))
    dtype = _LOGICAL.get((kind, logical or ""), _PRIMITIVE_DTYPES[kind])
    container: Any = {"type": kind, "logicalType": logical} if (kind, logical) in _LOGICAL else kind
    if logical == "uuid":
        return Node(container, dtype, prog=(kind,), py=lambda v: None if v is None else str(v))
    return Node(container, dtype, prog=(kind,))


def _fixed(name: str, t: Mapping[str, Any]) -> Node:
    container: dict[str, Any] = {"type": "fixed", "name": name, "size": int(t["size"])}
    prog = ("fixed", int(t["size"]))
    if t.get("logicalType") == "decimal":
        container.update(logicalType="decimal", precision=t["precision"], scale=t.get("scale", 0))
        return Node(container, pl.Decimal(int(t["precision"]), int(t.get("scale", 0))), prog)
    return Node(container, pl.Binary(), prog)


def _enum(symbols: list[str]) -> Node:
    # An enum's bytes are its index as an Avro int; read the int, map it to its symbol.
    last = len(symbols) - 1
    return Node(
        container="int",
        dtype=pl.String(),
        prog=("enum", len(symbols)),
        fix=lambda e: e.replace_strict(list(range(len(symbols))), symbols, default=None,
                                       return_dtype=pl.String),
        check=lambda e: e.is_between(0, last).fill_null(True),
    )


def record_node(name: str, kids: Mapping[str, Node], gone: str | None, *, native: bool) -> Node:
    """A record; ``gone`` names a string field left out of the result."""
    kept = {f: k for f, k in kids.items() if f != gone}
    slow = next((k.slow for k in kids.values() if k.slow), None)
    fixes = {f: k.fix for f, k in kept.items() if k.fix is not None}
    checks = {f: k.check for f, k in kept.items() if k.check is not None}
    pys = {f: k.py for f, k in kept.items() if k.py is not None}
    # Read directly, the dropped field is in the column: rebuild the struct without it.
    strip = gone is not None and not native

    def fix(e: pl.Expr) -> pl.Expr:
        if fixes:
            e = e.struct.with_fields([fn(pl.field(f)).alias(f) for f, fn in fixes.items()])
        if strip:
            e = pl.when(e.is_null()).then(None).otherwise(
                pl.struct([e.struct.field(f) for f in kept]))
        return e

    def check(e: pl.Expr) -> pl.Expr:
        return pl.all_horizontal([fn(e.struct.field(f)) for f, fn in checks.items()])

    def py(d: Any) -> Any:
        if d is None:
            return None
        return {f: (pys[f](d[f]) if f in pys else d[f]) for f in kept}

    shown = kept if native else kids
    container = None if slow or any(k.container is None for k in shown.values()) else {
        "type": "record", "name": name,
        "fields": [{"name": f, "type": k.container} for f, k in shown.items()]}
    prog = None if any(k.prog is None for k in kids.values()) else (
        "record", [(k.prog, f == gone) for f, k in kids.items()])
    return Node(container, pl.Struct({f: k.dtype for f, k in kept.items()}), prog,
                fix if fixes or strip else None, check if checks else None,
                py if pys or gone is not None else None, slow)


def _union_py(named: list[tuple[str, Node]]) -> PyFn:
    """fastavro's value of a multi-branch union -> {branch: value or None}."""
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

    return py


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

