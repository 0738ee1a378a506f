"""The simulator: merges every machine's day-by-day messages into one stream in receipt order.

Determinism: every random draw comes from a ``random.Random`` seeded by (seed, machine, day,
purpose), and a day's start state is the previous day's end state, chained from ``epoch``
(checkpointed). So any window of delivery times is a pure function of (fleet, seed, v2_from,
v3_from, epoch, config, window): generating [a, b) then [b, c) equals generating [a, c), and a fresh
simulator gives the same records as a long-running one. Windows may not start before
``epoch`` (the first seek chains ~50 µs per machine-day from there: ~1 s for 76 machines x
330 days).
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Final, Literal

from tu_analytics.sandbox.encode import AvroEncoder
from tu_analytics.sandbox.fleet import Fleet, Machine
from tu_analytics.sandbox.schemas import SCHEMA_FILES

from .calendar import Calendar
from .config import DEFAULT_EPOCH, MAX_DELAY_MS, SimConfig, to_ms
from .insights import catalogue_units
from .messages import MessageEnv, day_messages
from .model import WORK, Msg, Plan, State, Unit
from .plan import plan_day
from .sparse import SparseRecordWriter
from .units import build_unit, operators

__all__ = ["SimFormat", "SimRecord", "Simulator", "load_schemas"]

SimFormat = Literal["insights", "raw"]
EncodedRecord = tuple[bytes, bytes, int, str, str]

_SLICE_MS: Final = 3_600_000  # internal merge step: bounds memory on long backfills
_CHECKPOINT_EVERY: Final = 8  # days between stored start states
_FORMATS: Final[tuple[SimFormat, ...]] = ("insights", "raw")


def load_schemas() -> dict[tuple[str, int], dict[str, Any]]:
    """The sandbox's writer schemas (parsed JSON) by (format, version)."""
    pkg = resources.files("tu_analytics.sandbox.schemas")
    return {(key.split(".")[0], int(key.split(".")[1])):
            json.loads(pkg.joinpath(f).read_text(encoding="utf-8"))
            for key, f in SCHEMA_FILES.items()}


@dataclass(slots=True)
class SimRecord:
    """One simulated record: what a producer writes to the platform topic."""

    machine_id: str
    customer: str
    format: SimFormat
    receipt_ms: int  # platform receipt time: the Kafka record timestamp
    schema_version: int  # 1, 2 or 3 for insights (see v2_from, v3_from); always 1 for raw
    payload: dict[str, Any]  # matches the format's .avsc; absent fields are omitted




class _Cursor:
    __slots__ = ("day", "it", "next_state", "peek", "u")

    def __init__(self, u: Unit) -> None:
        self.u = u
        self.day = 0
        self.it: Iterator[Msg] = iter(())
        self.next_state = u.init
        self.peek: Msg | None = None


class Simulator:
    """Deterministic telemetry for a :class:`~tu_analytics.sandbox.fleet.Fleet`.

    ``records(start, end)`` yields the records *received* in ``[start, end)`` in receipt
    order; ``encoded_batches`` is the same stream as Confluent-framed Avro. Consecutive calls
    whose windows touch (``end`` of one is ``start`` of the next) continue the internal
    per-machine state; any other call re-seeks, with identical results either way. Not
    thread-safe; don't interleave two iterations on one instance.
    """

    def __init__(self, fleet: Fleet, seed: int = 7, v2_from: datetime | None = None,
                 epoch: datetime = DEFAULT_EPOCH, config: SimConfig | None = None,
                 v3_from: datetime | None = None) -> None:
        self.fleet = fleet
        self.seed = seed
        self.config = config = config or SimConfig()
        self.v2_from_ms: int | None = None if v2_from is None else to_ms(v2_from)
        self.v3_from_ms: int | None = None if v3_from is None else to_ms(v3_from)
        if self.v3_from_ms is not None and (self.v2_from_ms or 0) > self.v3_from_ms:
            raise ValueError("v3_from must not come before v2_from")
        self.epoch_ms = to_ms(epoch)
        self.schemas = load_schemas()
        units = catalogue_units()
        self._writers = {v: SparseRecordWriter(self.schemas[("insights", v)], units)
                         for v in (1, 2, 3)}
        self._raw_encoder = AvroEncoder(self.schemas[("raw", 1)])
        self._cal = Calendar(int(config.clock_offset.total_seconds() * 1000))
        # Versions only append fields, so v3's field indexes hold for every version.
        self._units = [build_unit(m, seed, self.epoch_ms, self._cal, self._writers[3])
                       for m in fleet.machines]
        self._env = MessageEnv(self.v2_from_ms, self.v3_from_ms, self._writers[3].index,
                               {c: operators(seed, c) for c in fleet.customers}, config)
        self._plans: dict[tuple[int, int], Plan] = {}
        self._checkpoints: list[dict[int, State]] = [{} for _ in self._units]
        self._cursors = [_Cursor(u) for u in self._units]
        self._pending: list[Msg] = []
        self._pos: int | None = None  # end of the last fully consumed window

    # -- public --------------------------------------------------------------------------------
    def records(self, start: datetime, end: datetime,
                formats: Iterable[SimFormat] = _FORMATS) -> Iterator[SimRecord]:
        """Records the platform writes in ``[start, end)``, in that order.

        The order is by delivery time; ``receipt_ms`` (the Kafka timestamp) equals it except
        for the ``disorder_share`` of records moved back by seconds to minutes (so a record's
        ``receipt_ms`` may fall up to 3 min before ``start``)."""
        want = _want(formats)
        writers = self._writers
        units = self._units
        for rec in self._messages(to_ms(start), to_ms(end)):
            fmt = rec[3]
            if not want[fmt]:
                continue
            m = units[rec[1]].m
            if fmt == 0:
                yield SimRecord(m.machine_id, m.customer, "insights", rec[6], rec[4],
                                writers[rec[4]].to_dict(rec[5]))
            else:
                yield SimRecord(m.machine_id, m.customer, "raw", rec[6], 1, rec[5])

    def encoded_batches(
        self, start: datetime, end: datetime, schema_ids: Mapping[tuple[str, int], int],
        batch_size: int = 10_000, formats: Iterable[SimFormat] = _FORMATS,
    ) -> Iterator[list[EncodedRecord]]:
        """The same records as ``records``, as ``(key, value, receipt_ms, customer, format)``.

        ``value`` is Confluent wire format (magic 0, 4-byte big-endian schema id, Avro body)
        with the id ``schema_ids[(format, version)]``; ``key`` is the MachineId in UTF-8.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        want = _want(formats)
        headers: dict[tuple[int, int], bytes] = {}
        for (fmt_name, version), sid in schema_ids.items():
            if fmt_name not in _FORMATS:
                raise ValueError(f"schema_ids: unknown format {fmt_name!r}")
            headers[(_FORMATS.index(fmt_name), version)] = b"\x00" + sid.to_bytes(4, "big")
        writers = self._writers
        raw_enc = self._raw_encoder.encode_into
        units = self._units
        batch: list[EncodedRecord] = []
        for rec in self._messages(to_ms(start), to_ms(end)):
            fmt = rec[3]
            if not want[fmt]:
                continue
            u = units[rec[1]]
            try:
                out = bytearray(headers[(fmt, rec[4])])
            except KeyError:
                raise KeyError(f"schema_ids has no id for {(_FORMATS[fmt], rec[4])}") from None
            if fmt == 0:
                writers[rec[4]].encode_into(rec[5], out)
            else:
                raw_enc(rec[5], out)
            batch.append((u.key, bytes(out), rec[6], u.m.customer, _FORMATS[fmt]))
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def working(self, at: datetime) -> list[Machine]:
        """Machines in a working block (engine on, at work) at ``at``, by the schedule alone.

        Tests use it to pick windows in which machines work instead of hoping for daytime.
        """
        t = to_ms(at)
        out: list[Machine] = []
        for u in self._units:
            plan = self._plan_of(u, self._cal.local_day(t, u.tz))
            if any(sg.st == WORK and sg.t0 <= t < sg.t1 for sg in plan.segs):
                out.append(u.m)
        return out

    def _plan_of(self, u: Unit, day: int) -> Plan:
        key = (u.m.index, day)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) > 8192:
                self._plans.clear()
            plan = self._plan(u, day, self._state_at(u, day), with_messages=True)
            self._plans[key] = plan
        return plan

    # -- windows -------------------------------------------------------------------------------

    # -- windows -------------------------------------------------------------------------------
    def _messages(self, a: int, b: int) -> Iterator[Msg]:
        if a < self.epoch_ms:
            raise ValueError(
                f"window starts {datetime.fromtimestamp(a / 1000, UTC):%Y-%m-%d %H:%M} UTC, "
                f"before the simulator's epoch {datetime.fromtimestamp(self.epoch_ms / 1000, UTC)}"
                "; machine state is chained day by day from the epoch: pass an earlier epoch=")
        if b <= a:
            return
        if self._pos != a:
            self._seek(a)
        self._pos = None  # an abandoned iteration forces a re-seek next time
        pending = self._pending
        s = a
        while s < b:
            e = min(b, s + _SLICE_MS)
            batch: list[Msg] = []
            while pending and pending[0][0] < e:
                batch.append(heapq.heappop(pending))
            for cur in self._cursors:
                self._pull(cur, e, a, batch, pending)
            batch.sort()
            yield from batch
            s = e
        self._pos = b

    def _seek(self, a: int) -> None:
        self._pending = []
        for cur in self._cursors:
            u = cur.u
            day = self._cal.local_day(a - MAX_DELAY_MS, u.tz)
            cur.peek = None
            self._open(cur, day, self._state_at(u, day))

    def _pull(self, cur: _Cursor, e: int, a: int, batch: list[Msg], pending: list[Msg]) -> None:
        """Move every message measured before ``e`` into batch (received < e) or pending."""
        while True:
            msg = cur.peek
            if msg is None:
                msg = next(cur.it, None)
                if msg is None:
                    self._open(cur, cur.day + 1, cur.next_state)
                    continue
            if msg[2] >= e:
                cur.peek = msg
                return
            cur.peek = None
            if msg[0] < a:
                continue  # received before the window (only right after a seek)
            if msg[0] < e:
                batch.append(msg)
            else:
                heapq.heappush(pending, msg)

    def _open(self, cur: _Cursor, day: int, state: State) -> None:
        cur.day = day
        if day < cur.u.epoch_day:
            cur.it = iter(())
            cur.next_state = state
            return
        plan = self._plan(cur.u, day, state, with_messages=True)
        cur.next_state = plan.end
        cur.it = day_messages(cur.u, plan, self._env)

    def _plan(self, u: Unit, day: int, state: State, with_messages: bool) -> Plan:
        plan = plan_day(u, day, state, self._cal.day_info(u.tz, day), with_messages)
        if (plan.day + 1) % _CHECKPOINT_EVERY == 0:
            self._checkpoints[u.m.index][plan.day + 1] = plan.end
        return plan

    def _state_at(self, u: Unit, day: int) -> State:
        """Start state of ``day``: chained from the nearest checkpoint (or the epoch)."""
        if day <= u.epoch_day:
            return u.init
        cps = self._checkpoints[u.m.index]
        keys = sorted(k for k in cps if k <= day)
        d, st = (keys[-1], cps[keys[-1]]) if keys else (u.epoch_day, u.init)
        while d < day:
            st = self._plan(u, d, st, with_messages=False).end
            d += 1
        return st


def _want(formats: Iterable[SimFormat]) -> tuple[bool, bool]:
    fs = set(formats)
    unknown = fs - set(_FORMATS)
    if unknown:
        raise ValueError(f"unknown formats {sorted(unknown)}; use 'insights' and/or 'raw'")
    return ("insights" in fs, "raw" in fs)
