"""Decoding the values of one schema id, chunk by chunk, with every bad record found.

Per chunk, the fast path decodes everything at once. With the transcoder, Rust validates each
record and names the bad ones. Without it, rows whose header and sentinel columns are intact
are exactly the well-delimited records; a failing chunk is narrowed down by bisection, and
small ones are checked record by record with fastavro.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, cast

import polars as pl

from . import fallback, native
from .assemble import ROW
from .planning import END, HDR, SENTINEL_SIZE, Plan

__all__ = ["CHUNK", "SMALL", "Group", "Result"]

# Chunks are the unit of parallel work and of failure isolation: a bad record costs at most a
# few re-decodes of its chunk. Below SMALL records, fastavro checks each record instead.
CHUNK: Final = 16_384
SMALL: Final = 64


@dataclass
class Result:
    """Decoded pieces (each with its ``ROW`` column), the input rows found corrupt, and the
    unit strings left out of the rows (first seen per field)."""

    pieces: list[pl.DataFrame] = field(default_factory=list)
    bad: list[int] = field(default_factory=list)
    units: dict[str, str] = field(default_factory=dict)

    def extend(self, other: Result) -> None:
        self.pieces += other.pieces
        self.bad += other.bad
        for f, u in other.units.items():
            self.units.setdefault(f, u)


class Group:
    """The values of one schema id (``rows``: their input row numbers) and how to decode them.
    Positions below are indexes into ``rows``."""

    def __init__(self, sid: int, plan: Plan, rows: pl.Series, values: pl.Series,
                 raw: Sequence[bytes | None] | None) -> None:
        # ``values`` is the whole input column: Python bytes are made one chunk at a time,
        # unless the caller already holds them (``raw``: the same values as bytes).
        self.sid, self.plan, self.rows, self._values, self._raw = sid, plan, rows, values, raw
        self.header = b"\x00" + sid.to_bytes(4, "big", signed=True)
        self.sentinel = os.urandom(SENTINEL_SIZE)
        n = len(rows)
        # Rows are increasing; a group holding every row in a span is sliced, not gathered.
        self._first = int(rows[0]) if n else 0
        self._span = n > 0 and int(rows[-1]) - self._first == n - 1

    def chunks(self, workers: int) -> list[tuple[int, int]]:
        n = len(self.rows)
        size = max(1, min(CHUNK, -(-n // workers)))
        return [(lo, min(lo + size, n)) for lo in range(0, n, size)]

    def solve(self, lo: int, hi: int) -> Result:
        """Decode values[lo:hi] natively, narrowing failures down to the bad records."""
        if self.plan.container_head is None:
            return self._slow(list(range(lo, hi)))
        if self.plan.program is not None:
            return self._transcoded(lo, hi)
        values = self._bytes(range(lo, hi))
        df = native.read_container(self.plan, native.joined(values, self.sentinel), hi - lo,
                                   self.sentinel)
        good = 0 if df is None else native.good_prefix(df, hi - lo, self.header, self.sentinel)
        out = Result()
        if df is not None and good:
            out.extend(self._accept(df.head(good), self.rows.slice(lo, good)))
        if good == hi - lo:
            return out
        # Rows before the first broken one were aligned, so the damage starts at lo + good.
        start = lo + good
        if hi - start <= SMALL:
            out.extend(self._one_by_one(start, hi))
        else:
            mid = (start + hi + 1) // 2
            out.extend(self.solve(start, mid))
            out.extend(self.solve(mid, hi))
        return out

    def _transcoded(self, lo: int, hi: int) -> Result:
        """Rust rewrites and validates each record; Polars reads the rewritten container."""
        data, bad, seen = native.transcode(self.plan, self._bytes(range(lo, hi)), self.sentinel)
        units = {f: u for (f, _), u in zip(self.plan.units, seen, strict=True) if u is not None}
        if bad:
            gone = set(bad)
            ok = [lo + i for i in range(hi - lo) if i not in gone]
            rows = self._rows(ok)
        else:
            ok, rows = list(range(lo, hi)), self.rows.slice(lo, hi - lo)
        out = Result(bad=self._rows([lo + i for i in bad]).to_list(), units=units)
        if not ok:
            return out
        df = native.read_container(self.plan, data, len(ok), self.sentinel)
        if df is not None and native.good_prefix(df, len(ok), self.header,
                                                 self.sentinel) == len(ok):
            out.extend(self._accept(df, rows))
        else:  # the reader refuses what the transcoder passed: decode them the slow way
            out.extend(self._slow(ok))
        return out

    def _accept(self, df: pl.DataFrame, rows: pl.Series) -> Result:
        """Keep well-delimited rows whose enum indexes are in range; finish their columns."""
        bad: list[int] = []
        if self.plan.check is not None:
            ok = df.select(self.plan.check).to_series()
            if not ok.all():
                bad = rows.filter(~ok).to_list()
                df, rows = df.filter(ok), rows.filter(ok)
        units = self._direct_units(df)
        df = df.drop(HDR, END)
        if self.plan.fixes:
            df = df.with_columns(self.plan.fixes)
        have = df.schema
        wrong = {c: t for c, t in self.plan.dtypes.items() if have[c] != t}
        if wrong:
            df = df.cast(wrong)  # type: ignore[arg-type]
        return Result([df.with_columns(rows.alias(ROW))], bad, units)

    def _direct_units(self, df: pl.DataFrame) -> dict[str, str]:
        """Read without the transcoder, the unit strings are still in the columns."""
        if self.plan.program is not None or not self.plan.units or not df.height:
            return {}
        row = df.select(pl.col(f).struct.field(u).drop_nulls().first().alias(f)
                        for f, u in self.plan.units).row(0, named=True)
        return {f: u for f, u in row.items() if u is not None}

    def _one_by_one(self, lo: int, hi: int) -> Result:
        """Check each record with fastavro, then decode the valid ones natively."""
        values = dict(zip(range(lo, hi), self._bytes(range(lo, hi)), strict=True))
        ok = [i for i, v in values.items() if fallback.valid(self.plan.parsed, v)]
        out = Result(bad=self._rows(sorted(set(values) - set(ok))).to_list())
        if not ok:
            return out
        picked = [values[i] for i in ok]
        df = native.read_container(self.plan, native.joined(picked, self.sentinel), len(ok),
                                   self.sentinel)
        if df is not None and native.good_prefix(df, len(ok), self.header,
                                                 self.sentinel) == len(ok):
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
                return cast("list[bytes]", list(self._raw[first:first + len(run)]))
            raw = self._raw
            return [cast("bytes", raw[i]) for i in self._rows(positions).to_list()]
        rows = self.rows.slice(run.start, len(run)) if run is not None else self._rows(positions)
        picked: list[bytes] = self._values.gather(rows).to_list()
        return picked

    def _slow(self, positions: list[int]) -> Result:
        units: dict[str, str] = {}
        recs = {i: fallback.read(self.plan, v, units)
                for i, v in zip(positions, self._bytes(positions), strict=True)}
        ok = [i for i, r in recs.items() if r is not None]
        bad = self._rows([i for i, r in recs.items() if r is None]).to_list()
        frame = fallback.frame_from_dicts(self.plan.dtypes, [recs[i] for i in ok])
        if frame is not None:
            return Result([frame.with_columns(self._rows(ok).alias(ROW))], bad, units)
        # One record Polars cannot hold spoils the batch: find it.
        out = Result(bad=bad, units=units)
        for i in ok:
            one = fallback.frame_from_dicts(self.plan.dtypes, [recs[i]])
            if one is None:
                out.bad += self._rows([i]).to_list()
            else:
                out.pieces.append(one.with_columns(self._rows([i]).alias(ROW)))
        return out
