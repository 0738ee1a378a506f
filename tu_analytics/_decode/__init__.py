"""Confluent-framed Avro values -> Polars, in bulk and natively. Pure: no I/O, no Kafka.

Values are grouped by schema id (``headers``); each writer schema is planned once (``plan``,
``types``); each group is decoded chunk by chunk (``group``) by Polars' Rust reader over an
in-memory Avro container (``native``), after the compiled transcoder (``tu_analytics._native``,
built from ``native/`` where a Rust toolchain exists) has rewritten what that reader cannot
take: unions of several non-null branches. Constructs no native path takes, and every schema
with such unions where the extension is not built, go to fastavro (``fallback``). The pieces are
put back in input order with dtypes merged over schema versions (``assemble``). Per-record unit
strings of insight records are left out of the rows and returned once (``handoff``).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import polars as pl
from polars.exceptions import PolarsError

from ..errors import SlowDecodeWarning
from .assemble import (
    ROW,
    as_dtype,
    assemble,
    errors_frame,
    materialized,
    merged_dtypes,
    shape,
    struct_fields,
)
from .group import Group, Result
from .handoff import UNITS_SCHEMA, units_frame
from .headers import (
    CORRUPT,
    ERRORS_SCHEMA,
    KAFKA_COLUMNS,
    KAFKA_SCHEMA,
    header_reasons,
    schema_ids,
    split_header,
)
from .planning import SCHEMA_ERRORS, avro_to_polars, native_module, plan, records_schema

__all__ = [
    "CORRUPT",
    "ERRORS_SCHEMA",
    "KAFKA_COLUMNS",
    "UNITS_SCHEMA",
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


def _no_units() -> pl.DataFrame:
    return pl.DataFrame(schema=UNITS_SCHEMA)


@dataclass(frozen=True)
class Decoded:
    """Decoded records (Kafka columns, ``schema_id``, ``key``, one column per Avro field, in
    input order), the records that could not be decoded (docs/frames.md, ``errors``), and the
    unit strings left out of the rows: ``units`` (``field``, ``raw_unit``: first seen)."""

    records: pl.DataFrame
    errors: pl.DataFrame
    units: pl.DataFrame = field(default_factory=_no_units)


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
        empty = pl.DataFrame(schema={**KAFKA_SCHEMA, "key": pl.Binary(), "value": pl.Binary()})
        return decode(empty, {})
    errors = [p.errors for p in parts if p.errors.height]
    errs = pl.concat(errors, rechunk=False) if errors else parts[0].errors
    units = pl.concat([p.units for p in parts]).unique("field", keep="first",
                                                        maintain_order=True)
    try:
        # Usually every chunk has the same columns and dtypes: Polars checks that in bulk
        # (building each chunk's schema in Python costs ms per chunk).
        return Decoded(pl.concat([materialized(p.records) for p in parts], rechunk=False),
                       errs, units)
    except PolarsError:
        pass
    fixed = len(KAFKA_SCHEMA) + 2  # Kafka columns, schema_id, key: the same in every chunk
    lead = dict(list(parts[0].records.schema.items())[:fixed])
    merged = merged_dtypes([dict(list(p.records.schema.items())[fixed:]) for p in parts])
    cols = {**lead, **merged}
    records = [materialized(shape(p.records, cols)) for p in parts]
    return Decoded(pl.concat(records, rechunk=False), errs, units)


def _decode(records: pl.DataFrame, head: pl.DataFrame, schemas: Mapping[int, str | None],
            raw: Sequence[bytes | None] | None, workers: int) -> Decoded:
    reasons = header_reasons(records["value"], head, schemas)
    sids = head["schema_id"]
    todo = pl.DataFrame({"sid": sids, "ok": reasons.is_null()}).with_row_index(ROW)
    todo = todo.filter(pl.col("ok"))
    groups, reasons = _groups(records["value"], raw, todo, schemas, reasons)
    result = _run(groups, workers)
    if result.bad:
        reasons = reasons.scatter(result.bad, CORRUPT)
    dtypes = merged_dtypes([g.plan.dtypes for g in groups])
    # One writer schema: every piece already has its dtypes (no per-piece schema check).
    body = assemble(records, sids, result.pieces, dtypes, uniform=len(groups) == 1)
    return Decoded(body, errors_frame(records, sids, reasons), units_frame(result.units))


def _groups(values: pl.Series, raw: Sequence[bytes | None] | None, todo: pl.DataFrame,
            schemas: Mapping[int, str | None],
            reasons: pl.Series) -> tuple[list[Group], pl.Series]:
    groups: list[Group] = []
    for (sid,), part in todo.group_by("sid", maintain_order=True):
        text = schemas[int(sid)]
        assert text is not None
        rows = part[ROW]
        try:
            p = plan(text)
        except SCHEMA_ERRORS as exc:
            reasons = reasons.scatter(rows, f"unusable writer schema {sid}: {exc}")
            continue
        _say_slow(int(sid), p.slow, p.container_head is None)
        groups.append(Group(int(sid), p, rows, values, raw))
    return groups, reasons


def _say_slow(sid: int, construct: str | None, slow: bool) -> None:
    """Name what sends a schema's records to fastavro: a warning for a construct no native
    path takes, a log line when only the compiled transcoder is missing."""
    if not slow:
        return
    if construct is not None and (native_module() is not None
                                  or construct != "a union of several non-null types"):
        warnings.warn(f"schema id {sid}: decoding with fastavro (slow) because of {construct}",
                      SlowDecodeWarning, stacklevel=4)
    else:
        log.warning("schema id %d: decoding with fastavro (slow): %s and tu_analytics._native "
                    "is not built (make setup builds it where cargo exists)", sid, construct)


def _run(groups: list[Group], workers: int) -> Result:
    jobs = [(g, lo, hi) for g in groups for lo, hi in g.chunks(workers)]
    out = Result()
    if len(jobs) <= 1 or workers <= 1:
        for g, lo, hi in jobs:
            out.extend(g.solve(lo, hi))
        return out
    # The Rust reader and transcoder release the GIL: chunks decode in parallel.
    with ThreadPoolExecutor(max_workers=min(len(jobs), workers)) as pool:
        for res in pool.map(lambda job: job[0].solve(job[1], job[2]), jobs):
            out.extend(res)
    return out
