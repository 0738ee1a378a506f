"""The fallback: fastavro, one record at a time (slow, but takes every valid Avro body).

Used for schemas the native reader cannot take (see ``types``), for checking records one by one
once bisection has narrowed a failure down, and where the native reader refuses valid records.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import fastavro
import polars as pl
from polars.exceptions import PolarsError

from .._avro import HEADER_SIZE
from .planning import Plan

__all__ = ["frame_from_dicts", "read", "valid"]


def valid(parsed: Any, value: bytes) -> bool:
    """Whether ``value``'s body is exactly one valid record of the parsed writer schema."""
    buf = io.BytesIO(value)
    buf.seek(HEADER_SIZE)
    try:
        fastavro.schemaless_reader(buf, parsed, None)
    except Exception:  # any failure on garbage means "not a valid body"
        return False
    return buf.tell() == len(value)


def read(plan: Plan, value: bytes, units: MutableMapping[str, str]) -> dict[str, Any] | None:
    """One record as the dict the Polars dtypes take; None when the body is not valid. Unit
    strings the plan leaves out of the rows are put in ``units`` (first seen per field)."""
    buf = io.BytesIO(value)
    buf.seek(HEADER_SIZE)
    try:
        rec = fastavro.schemaless_reader(buf, plan.parsed, None, return_record_name=True,
                                         return_record_name_override=True)
        if buf.tell() != len(value):
            return None
        if not isinstance(rec, dict):
            rec = {"value": rec}
        for f, u in plan.units:
            if f not in units and isinstance(rec.get(f), dict) and rec[f].get(u) is not None:
                units[f] = rec[f][u]
        return {**rec, **{f: fn(rec[f]) for f, fn in plan.pys.items()}}
    except Exception:  # any failure on garbage means "not a valid body"
        return None


def frame_from_dicts(dtypes: Mapping[str, pl.DataType],
                     dicts: Sequence[dict[str, Any] | None]) -> pl.DataFrame | None:
    # Columns built against the writer schema's dtypes: never inferred from sample rows.
    try:
        return pl.DataFrame([pl.Series(f, [d.get(f) if d else None for d in dicts], dtype=t)
                             for f, t in dtypes.items()])
    except (PolarsError, TypeError, ValueError, OverflowError):
        return None
