"""Planning per schema id: everything needed to decode the values of one writer schema."""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import fastavro
import polars as pl

from .._avro import SYNC_SIZE, container_header
from . import handoff
from .assemble import merged_dtypes
from .headers import KAFKA_SCHEMA
from .types import Compiler, PyFn, UnsupportedSchemaError, record_node

__all__ = [
    "END",
    "HDR",
    "SENTINEL_SIZE",
    "Plan",
    "avro_to_polars",
    "native_module",
    "plan",
    "records_schema",
]

log = logging.getLogger(__name__)

HDR: Final = "__tu_hdr"
END: Final = "__tu_end"
SENTINEL_SIZE: Final = 8
SCHEMA_ERRORS: Final = (UnsupportedSchemaError, ValueError, KeyError, TypeError)


@functools.cache
def native_module() -> Any:
    """The compiled transcoder, or None where it was not built (no Rust toolchain)."""
    if os.environ.get("TU_NATIVE", "1") == "0":  # to test the pure-Python path
        return None
    try:
        native = importlib.import_module("tu_analytics._native")
    except ImportError:
        log.info("tu_analytics._native is not built: decoding without the native transcoder")
        return None
    return native


@dataclass(frozen=True)
class Plan:
    """How to decode one writer schema. ``program`` (the transcoder's, or None) rewrites each
    record before Polars reads the container whose header is ``container_head`` (None: fastavro
    only, because of ``slow``). ``units`` are the (field, unit field) pairs left out of the rows,
    in the transcoder's slot order."""

    dtypes: dict[str, pl.DataType]
    container_head: bytes | None
    sync: bytes
    slow: str | None
    fixes: tuple[pl.Expr, ...]
    check: pl.Expr | None
    pys: dict[str, PyFn]
    units: tuple[tuple[str, str], ...]
    program: Any = field(default=None, repr=False)
    parsed: Any = field(default=None, repr=False)  # fastavro's parsed writer schema


@functools.lru_cache(maxsize=64)
def plan(schema_json: str) -> Plan:
    writer = json.loads(schema_json)
    native = native_module()
    drops = handoff.unit_fields(writer)
    comp = Compiler(native=native is not None, drops=drops)
    if isinstance(writer, dict) and writer.get("type") in ("record", "error"):
        full = comp.names.define(writer, None, None)
        comp.expanding.append(full)
        ns = full.rpartition(".")[0] or None
        kids = {f["name"]: comp.top(f["name"], f["type"], ns) for f in writer["fields"]}
    else:  # a bare (non-record) schema: one column named "value"
        kids = {"value": comp.node(writer, None)}
    top = record_node("__TuFramed", kids, None, native=comp.native)
    sync = os.urandom(SYNC_SIZE)
    program = None
    if native is not None and top.container is not None and top.prog is not None:
        program = native.Program(top.prog)
    head = None if top.container is None else container_header(_wrap(top.container["fields"]),
                                                                sync)
    return Plan(
        dtypes={f: k.dtype for f, k in kids.items()},
        container_head=head,
        sync=sync,
        slow=top.slow,
        fixes=tuple(k.fix(pl.col(f)).alias(f) for f, k in kids.items() if k.fix),
        check=pl.all_horizontal([k.check(pl.col(f)) for f, k in kids.items() if k.check])
        if any(k.check for k in kids.values()) else None,
        pys={f: k.py for f, k in kids.items() if k.py},
        units=tuple(comp.dropped),
        program=program,
        parsed=fastavro.parse_schema(writer),
    )


def usable_plan(schema_json: str) -> Plan | None:
    try:
        return plan(schema_json)
    except SCHEMA_ERRORS:
        return None


def avro_to_polars(schema_json: str) -> pl.Schema:
    """The Polars dtype of each top-level field of a writer schema, as ``decode`` produces it."""
    return pl.Schema(plan(schema_json).dtypes)


def records_schema(schemas: Iterable[str]) -> pl.Schema:
    """The schema of ``Decoded.records`` for values written with these writer schemas
    (unusable ones are skipped: ``decode`` sends their records to ``errors``)."""
    fields = merged_dtypes([p.dtypes for p in map(usable_plan, schemas) if p is not None])
    return pl.Schema({**KAFKA_SCHEMA, "schema_id": pl.Int32(), "key": pl.Binary(), **fields})


def _wrap(fields: list[dict[str, Any]]) -> dict[str, Any]:
    # The 5-byte Confluent header and a sentinel around each body: every framed value is one
    # record, and a misaligned read shows in these two columns.
    return {"type": "record", "name": "__TuFramed", "fields": [
        {"name": HDR, "type": {"type": "fixed", "name": "__TuHeader", "size": 5}},
        *fields,
        {"name": END, "type": {"type": "fixed", "name": "__TuEnd", "size": SENTINEL_SIZE}},
    ]}
