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
    batch = Batch([])
    spans: dict[int, tuple[int, int, int]] = {}
    for p in sorted(marks):
        low, high = marks[p]
        start = watermarks.get(p)
        if start is None:
            start = low
        elif start < low:
            batch.gaps.append(Gap(p, start, low))
            start = low
        spans[p] = (start, max(start, min(targets.get(p, high), high)), low)
    take = shares({p: end - start for p, (start, end, _) in spans.items()}, max_records)
    batch.ranges = [Range(p, start, start + take[p], low)
                    for p, (start, end, low) in spans.items()]
    return batch


def shares(left: Mapping[int, int], budget: int | None) -> dict[int, int]:
    """Records to take per partition: an equal share of ``budget`` each, and what a partition
    with fewer left does not use goes to the others. So a batch is full while records are
    left, and a run takes ceil(records / budget) batches (no batch of a rounding rest)."""
    if budget is None:
        return dict(left)
    out: dict[int, int] = {}
    for i, p in enumerate(sorted(left, key=lambda q: (left[q], q))):  # fewest left first
        fair = -(-budget // (len(left) - i))  # ceil: the rounding rest goes to the first
        out[p] = min(left[p], fair)
        budget -= out[p]
    return out


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
