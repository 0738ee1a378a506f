"""Native reading: bodies -> one in-memory Avro object container -> Polars' Rust reader.

The container's record is the writer schema between a ``fixed(5)`` (the Confluent header) and a
``fixed(8)`` sentinel, so each framed value is exactly one record and a group's values join with
the sentinel between them (one C call, no per-record Python). The reader then proves every
record boundary: a body that is truncated, has trailing bytes or is garbage shifts what is read
as the sentinel (or makes the reader raise). With the compiled transcoder, each value is first
rewritten (and fully validated) in Rust, so the reader also takes multi-branch unions.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Final

import polars as pl
from polars.exceptions import PanicException, PolarsError

from .._avro import HEADER_SIZE, encode_long
from .planning import END, HDR, Plan, native_module

__all__ = ["NATIVE_ERRORS", "good_prefix", "read_container", "transcode"]

# What the native reader can raise on a malformed container. A Rust panic surfaces as
# pyo3's PanicException, a BaseException: caught by name so KeyboardInterrupt still propagates.
NATIVE_ERRORS: Final = (PolarsError, PanicException, OSError, ValueError)


def read_container(plan: Plan, data: bytes, count: int, sentinel: bytes) -> pl.DataFrame | None:
    """``count`` records (``data``: each framed value followed by the sentinel) as one block;
    None when the reader rejects the container."""
    assert plan.container_head is not None
    buf = b"".join((plan.container_head, encode_long(count), encode_long(len(data)), data,
                    plan.sync))
    try:
        return pl.read_avro(io.BytesIO(buf))
    except NATIVE_ERRORS:
        return None


def joined(values: Sequence[bytes], sentinel: bytes) -> bytes:
    """Values as container data without transcoding."""
    return sentinel.join(values) + sentinel if values else b""


def transcode(plan: Plan, values: list[bytes],
              sentinel: bytes) -> tuple[bytes, list[int], list[str | None]]:
    """Values rewritten for the container (the plan's program); positions of invalid values
    (left out); the first unit string seen per ``plan.units`` slot."""
    data, bad, seen = native_module().transcode(plan.program, values, HEADER_SIZE, sentinel)
    return data, bad, seen


def good_prefix(df: pl.DataFrame, n: int, header: bytes, sentinel: bytes) -> int:
    """How many leading rows are provably well-delimited records."""
    if df.height != n:
        return 0
    broken = df.select(
        ((pl.col(HDR) != header) | (pl.col(END) != sentinel)).arg_true().first()
    ).item()
    return n if broken is None else int(broken)
