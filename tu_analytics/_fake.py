"""An in-memory :class:`~tu_analytics._pipeline.RecordConsumer` for tests (httpx's
``MockTransport`` idea): partitions as lists of log entries, with what a real topic has.

- records with any timestamps, in or out of order;
- transaction markers and aborted records, which take offsets but are never delivered
  (the position moves past them when ``consume`` reaches them, as librdkafka's does);
- an open transaction, which holds the last stable offset (the high watermark a
  ``read_committed`` consumer sees) back;
- errors to hand out, an authentication failure, stalls (``consume`` delivers nothing for a
  while or for ever), records appended while a read goes on.

Used by the unit tests of the window pipeline, the tail and the archive; needs no broker.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from ._pipeline import Batch, ConsumeError
from .errors import TopicNotFoundError

Kind = Literal["record", "marker", "aborted", "open"]
#: librdkafka's answer for a position not yet known.
OFFSET_INVALID = -1001


@dataclass(frozen=True)
class Entry:
    offset: int
    timestamp: int
    key: bytes | None = None
    value: bytes | None = None
    kind: Kind = "record"


@dataclass
class FakeConsumer:
    """A topic in memory. Build it with :meth:`append` & co., then read it as a consumer."""

    topic: str = "fake"
    #: Records handed out per partition and ``consume`` call (a fetch's worth).
    fetch_records: int = 1000
    logs: dict[int, list[Entry]] = field(default_factory=dict)
    low: dict[int, int] = field(default_factory=dict)
    #: ``consume`` calls that deliver nothing before delivery resumes (-1: for ever).
    stall_after: int | None = None
    stall_polls: int = 0
    #: Errors handed out by the next ``consume`` call.
    pending_errors: list[ConsumeError] = field(default_factory=list)
    auth_text: str | None = None
    #: Called at each ``consume`` with the fake (e.g. to append records during a read).
    on_consume: Callable[[FakeConsumer], None] | None = None
    assigned: dict[int, int] = field(default_factory=dict)  # partition -> next offset
    positions: dict[int, int] = field(default_factory=dict)
    consumed: int = 0
    closed: bool = False

    # -- building the topic ------------------------------------------------------------------

    def add_partitions(self, n: int) -> FakeConsumer:
        for p in range(n):
            self.logs.setdefault(p, [])
        return self

    def append(self, partition: int, timestamp: int, value: bytes | None = b"v",
               key: bytes | None = None, kind: Kind = "record") -> int:
        log = self.logs.setdefault(partition, [])
        offset = log[-1].offset + 1 if log else self.low.get(partition, 0)
        log.append(Entry(offset, timestamp, key, value, kind))
        return offset

    def extend(self, partition: int, stamps: Iterable[int],
               value: Callable[[int], bytes | None] | None = None,
               key: Callable[[int], bytes | None] | None = None, kind: Kind = "record") -> None:
        for ts in stamps:
            n = len(self.logs.get(partition, []))
            self.append(partition, ts, value(n) if value else b"v%d" % n,
                        key(n) if key else None, kind)

    def commit(self, partition: int, timestamp: int) -> int:
        """A transaction's commit (or abort) marker: one offset, no record."""
        return self.append(partition, timestamp, None, None, "marker")

    def abort(self, partition: int, stamps: Iterable[int]) -> None:
        """An aborted transaction: its records and its marker, none delivered."""
        stamps = list(stamps)
        self.extend(partition, stamps, kind="aborted")
        self.commit(partition, stamps[-1] if stamps else 0)

    def begin_open(self, partition: int, stamps: Iterable[int]) -> None:
        """Records of a transaction still open: they hold the last stable offset back."""
        self.extend(partition, stamps, kind="open")

    def trim(self, partition: int, low: int) -> None:
        """Retention: offsets below ``low`` are gone."""
        self.low[partition] = low
        self.logs[partition] = [e for e in self.logs[partition] if e.offset >= low]

    # -- RecordConsumer ----------------------------------------------------------------------

    def partitions(self, timeout: float) -> list[int]:
        if not self.logs:
            raise TopicNotFoundError(f"topic {self.topic!r} does not exist", topic=self.topic)
        return sorted(self.logs)

    def _stable(self, partition: int) -> list[Entry]:
        """Entries below the last stable offset."""
        out = []
        for e in self.logs[partition]:
            if e.kind == "open":
                break
            out.append(e)
        return out

    def watermarks(self, partition: int, timeout: float) -> tuple[int, int]:
        stable = self._stable(partition)
        low = self.low.get(partition, 0)
        return low, stable[-1].offset + 1 if stable else low

    def offsets_for_times(self, stamps: Mapping[int, int], timeout: float) -> dict[int, int]:
        # The first offset whose timestamp is at or after the time (the broker's time index
        # holds running maxima, so this is exact); -1 past the last stable offset.
        found = {}
        for p, ts in stamps.items():
            hit = next((e.offset for e in self._stable(p) if e.timestamp >= ts), -1)
            found[p] = hit
        return found

    def assign(self, starts: Mapping[int, int]) -> None:
        self.assigned.update(starts)
        for p in starts:  # unknown until a consume reaches the partition, as in librdkafka
            self.positions.pop(p, None)

    def unassign(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            if p not in self.assigned:  # as librdkafka: _INVALID_ARG, not in the assignment
                raise ValueError(f"partition {p} can't be unassigned: it is not assigned")
            del self.assigned[p]

    def consume(self, max_records: int, timeout: float) -> Batch:
        if self.on_consume is not None:
            self.on_consume(self)
        batch = Batch(errors=self.pending_errors[:])
        self.pending_errors.clear()
        if self._stalled():
            time.sleep(min(timeout, 0.005))
            return batch
        for p in sorted(self.assigned):
            self._fetch(p, batch, min(self.fetch_records, max_records - len(batch)))
        if not len(batch) and not batch.errors:
            time.sleep(min(timeout, 0.001))
        self.consumed += len(batch)
        return batch

    def _stalled(self) -> bool:
        if self.stall_after is None or self.consumed < self.stall_after:
            return False
        if self.stall_polls == 0:
            return False
        self.stall_polls -= 1 if self.stall_polls > 0 else 0
        return True

    def _fetch(self, p: int, batch: Batch, room: int) -> None:
        nxt = self.assigned[p]
        for e in self._stable(p):
            if room <= 0:
                break
            if e.offset < nxt:
                continue
            nxt = e.offset + 1
            if e.kind != "record":
                continue  # markers and aborted records: the position moves past, no record
            batch.partitions.append(p)
            batch.offsets.append(e.offset)
            batch.stamps.append(e.timestamp)
            batch.keys.append(e.key)
            batch.values.append(e.value)
            room -= 1
        if nxt != self.assigned[p] or p in self.positions:
            self.positions[p] = nxt
        self.assigned[p] = nxt

    def position(self, partition: int) -> int:
        return self.positions.get(partition, OFFSET_INVALID)

    def auth_failure(self) -> str | None:
        return self.auth_text

    def last_error(self) -> str:
        return "no answer from the fake broker"

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeRegistry:
    """A :class:`~tu_analytics._registry.SchemaSource` in memory: writer schemas by id.
    ``down`` makes every lookup fail as an unreachable registry does."""

    known: dict[int, str] = field(default_factory=dict)
    down: BaseException | None = None
    lookups: int = 0
    _asked: dict[int, str | None] = field(default_factory=dict)

    @contextlib.contextmanager
    def deadline(self, seconds: float = 10.0) -> Iterator[None]:
        yield

    def check(self, topic: str) -> None:
        if self.down is not None:
            raise self.down

    def schemas(self, ids: Iterable[int]) -> dict[int, str | None]:
        self.lookups += 1
        if self.down is not None:
            raise self.down
        found = {sid: self.known.get(sid) for sid in ids}
        self._asked.update(found)
        return found

    def asked(self) -> dict[int, str | None]:
        return dict(self._asked)

    def latest_for_topic(self, topic: str) -> str | None:
        return self.known[max(self.known)] if self.known else None
