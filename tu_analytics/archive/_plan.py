"""Planning one archive batch from stored watermarks, and retention gaps. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl

from ._layout import GAPS_SCHEMA
from ._source import Range


@dataclass(frozen=True)
class Gap:
    """Offsets ``[start, end)`` of ``partition`` that retention deleted before archiving."""

    partition: int
    start: int
    end: int


@dataclass
class Batch:
    ranges: list[Range]
    gaps: list[Gap] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(r.end - r.start for r in self.ranges)

    def new_watermarks(self) -> dict[int | str, int]:
        return {r.partition: r.end for r in self.ranges}


def plan_batch(watermarks: Mapping[int, int | None], marks: Mapping[int, tuple[int, int]],
               targets: Mapping[int, int], max_records: int | None) -> Batch:
    """Per partition: from its watermark (or the low watermark when none is stored) up to its
    target, at most ``max_records`` in all. A watermark below the low watermark is a gap."""
    parts = sorted(marks)
    share = None if max_records is None else max(1, max_records // max(1, len(parts)))
    batch = Batch([])
    for p in parts:
        low, high = marks[p]
        start = watermarks.get(p)
        if start is None:
            start = low
        elif start < low:
            batch.gaps.append(Gap(p, start, low))
            start = low
        end = max(start, min(targets.get(p, high), high))
        if share is not None:
            end = min(end, start + share)
        batch.ranges.append(Range(p, start, end, low))
    return batch


def late_gaps(batch: Batch, first_read: Mapping[int, int], lows_after: Mapping[int, int]) -> None:
    """Retention that struck while the batch was read: the consumer jumps to the new low
    watermark, so offsets from the planned start up to the first one read are lost."""
    for r in batch.ranges:
        low = lows_after.get(r.partition, r.low)
        if r.end > r.start and low > r.start:
            first = min(first_read.get(r.partition, r.end), low)
            if first > r.start:
                batch.gaps.append(Gap(r.partition, r.start, first))


def gaps_frame(gaps: list[Gap]) -> pl.DataFrame:
    now = datetime.now(UTC)
    return pl.DataFrame(
        {"partition": [g.partition for g in gaps], "start": [g.start for g in gaps],
         "end": [g.end for g in gaps], "recorded": [now] * len(gaps)},
        schema=GAPS_SCHEMA,
    )
