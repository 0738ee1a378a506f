"""``connect()`` and the connection's two ways to read: ``window()`` and ``tail()``.

The connection holds settings and a schema cache, nothing else: creating it touches no
network. Each ``window()`` opens its own consumer, reads the planned offsets, closes it;
chunks of records are decoded on worker threads while the read goes on.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import polars as pl

from . import _decode, _kafka, _machines, _memory, _pipeline
from ._pipeline import RecordConsumer
from ._registry import Registry, SchemaSource
from ._settings import Settings
from ._timespec import parse_duration, parse_time, resolve_range
from .errors import (
    CoverageWarning,
    DecodeWarning,
    DisorderWarning,
    RetentionWarning,
    UnknownSchemasError,
    WindowTooLargeError,
)
from .formats import detect_format
from .formats import machine_insights as mi
from .formats import raw as raw_format
from .window import Format, Window, WindowSpec

if TYPE_CHECKING:
    from .live import LiveTail

#: A window larger than this needs an explicit ``max_records``: ~10 GB of frames.
DEFAULT_MAX_RECORDS = 20_000_000
RETENTION_MS = 14 * 24 * 3600 * 1000


class Connection:
    """A Streaming API topic: settings plus a schema cache. Create with :func:`connect`.

    ``consumer`` and ``registry`` are for tests: a factory of
    :class:`~tu_analytics._pipeline.RecordConsumer` (e.g. ``_fake.FakeConsumer``) and a
    schema source in place of the Schema Registry."""

    def __init__(self, settings: Settings, *,
                 consumer: Callable[[Settings], RecordConsumer] | None = None,
                 registry: SchemaSource | None = None) -> None:
        self.settings = settings
        self._registry: SchemaSource = registry if registry is not None else Registry(settings)
        self._open = consumer if consumer is not None else _kafka.KafkaConsumer

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"<Connection topic={s.topic!r} bootstrap={s.bootstrap_servers!r} "
            f"user={s.sasl_username!r} registry={s.schema_registry_url!r} "
            f"protocol={s.security_protocol}>"
        )

    # -- windows ---------------------------------------------------------------------------

    def window(
        self,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        *,
        last: str | timedelta | None = None,
        machines: str | Iterable[str] | None = None,
        lateness: str | timedelta | None = None,
        dedupe: bool = False,
        max_records: int | None = DEFAULT_MAX_RECORDS,
        max_bytes: int | None = None,
        progress: bool = True,
        timeout: float = 10.0,
        stall_timeout: float = 30.0,
    ) -> Window:
        """Every record whose Kafka (receipt) timestamp lies in ``[start, end)``.

        ``start``/``end`` are datetimes or ISO strings (local time if no offset, with a
        :class:`NaiveTimeWarning`); or ``last="2h"``
        for the span up to ``end`` (default: now). Records are read up to the first offset
        stamped at or after ``end + lateness`` (default ``5m``, env ``TU_LATENESS``), so a
        record written late, out of timestamp order, is still in its window; the end offsets
        are fixed when the call starts, so the call finishes on a live topic. The spec says
        how far the window was actually read (``covered_end``) and the largest disorder seen
        (``max_disorder_ms``). ``machines`` keeps only those machines, named by machine id
        or EquipmentID (an unknown name warns). ``dedupe=True`` drops exact repeats (same
        key and value bytes), keeping the first offset; off by default, so a window equals
        the topic. ``max_records``/``max_bytes`` (default: half
        the memory available) stop an oversized window with :class:`WindowTooLargeError`
        before memory runs out. Records that cannot be decoded are returned in
        ``window.errors`` (with a :class:`DecodeWarning`), never dropped.
        """
        begin, stop = resolve_range(start, end, last, stacklevel=3)
        lateness_ms = _lateness_ms(lateness, self.settings)
        if stop > datetime.now(UTC) + timedelta(seconds=1):
            warnings.warn(
                f"the window ends at {stop.isoformat()}, in the future: it is read up to now, "
                "and window.spec.covered_end says how far", CoverageWarning, stacklevel=2)
        limit = max_bytes if max_bytes is not None else _memory.default_max_bytes()
        read = self._read(_ms(begin), _ms(stop), lateness_ms, dedupe=dedupe,
                          max_records=max_records, max_bytes=limit, progress=progress,
                          timeout=timeout, stall_timeout=stall_timeout)
        return self._build(read, begin, stop, _machine_set(machines))

    def _read(self, start_ms: int, end_ms: int, lateness_ms: int, *, dedupe: bool,
              max_records: int | None, max_bytes: int, progress: bool, timeout: float,
              stall_timeout: float) -> _Read:
        s = self.settings
        consumer = self._open(s)
        bar: Any = None
        # Chunks are decoded on worker threads while the consumer keeps reading.
        decoding = _Decoding(self._registry, start_ms, end_ms, dedupe=dedupe)
        # No GC pass until every chunk is decoded: each would walk all the values queued.
        with _pipeline.gc_paused(), self._registry.deadline():
            try:
                plan = _pipeline.plan(consumer, start_ms, end_ms, lateness_ms, timeout=timeout)
                self._registry.check(s.topic)  # after the topic is known to exist
                _check_records(s.topic, plan.records, max_records)
                self._warn_retention(list(plan.ranges), start_ms)
                if progress:
                    from tqdm.auto import tqdm

                    bar = tqdm(total=plan.records, unit="rec", desc=s.topic, leave=False)
                guard = _Guard(s.topic, plan.records, max_bytes, bar)
                stats = _pipeline.read(consumer, plan.ranges, decoding.submit,
                                       max_bytes=max_bytes, stall_timeout=stall_timeout,
                                       on_progress=guard)
            except BaseException:
                decoding.cancel()
                raise
            finally:
                if bar is not None:
                    bar.close()
                consumer.close()
            decoded, schemas = decoding.result()
        return _Read(plan, stats, decoded, schemas, decoding.dropped)

    def _build(self, read: _Read, begin: datetime, stop: datetime,
               wanted: set[str] | None) -> Window:
        decoded, schemas = read.decoded, read.schemas
        _raise_if_all_unknown(self.settings, self._registry, decoded)
        # Ids the registry knew; an unknown id of a bad record is in window.errors instead.
        ids = sorted(sid for sid, txt in schemas.items() if txt)
        known = [txt for _, txt in sorted(schemas.items()) if txt]
        if not known:
            latest = self._registry.latest_for_topic(self.settings.topic)
            known = [latest] if latest else []
        fmt: Format = detect_format(known[0]) if known else _format_from_topic(self.settings.topic)
        module = mi if fmt == "insights" else raw_format
        frames = (module.flatten(decoded.records) if decoded.records.height
                  else module.empty_frames(known))
        main, long = frames.main, dict(frames.long)
        if wanted is not None:
            id_col = "MachineId" if fmt == "insights" else "machineId"
            main = _machines.select(main, wanted, id_col, stacklevel=4)  # ids or EquipmentIDs
            keys = main.select("partition", "offset")
            long = {k: v.join(keys, on=["partition", "offset"], how="semi")
                    for k, v in long.items()}
        err = decoded.errors
        if err.height:
            total = err.height + decoded.records.height
            warnings.warn(
                f"{err.height:,} of {total:,} records could not be decoded; they are "
                "in window.errors with their partition, offset and raw bytes",
                DecodeWarning, stacklevel=3,
            )
        _warn_disorder(read.stats.max_disorder_ms, read.plan.lateness_ms)
        units = (mi.units(decoded.records, known, raw_units=decoded.units)
                 if fmt == "insights" else mi.empty_units())
        spec = WindowSpec(
            topic=self.settings.topic, format=fmt, start=begin, end=stop,
            machines=tuple(sorted(wanted)) if wanted is not None else None,
            offsets={r.partition: (r.start, r.end) for r in read.plan.ranges},
            schema_ids=tuple(sorted(ids)), created=datetime.now(UTC),
            records=main.height, errors=err.height,
            bootstrap_servers=self.settings.bootstrap_servers,
            lateness_ms=read.plan.lateness_ms, max_disorder_ms=read.stats.max_disorder_ms,
            covered_end=covered_end(read.plan, read.stats), dedupe=read.dropped is not None,
        )
        return Window(spec=spec, main=main, errors=err, units=units, long=long)

    def _warn_retention(self, ranges: list[_pipeline.PartitionRange], start_ms: int) -> None:
        now = _ms(datetime.now(UTC))
        trimmed = any(r.low > 0 and r.start == r.low for r in ranges)
        if start_ms < now - RETENTION_MS or trimmed:
            warnings.warn(
                f"the window starts at {datetime.fromtimestamp(start_ms / 1000, UTC).isoformat()}, "
                "before the oldest record the topic still retains (records are kept 14 days); "
                "older data is past retention — returning what exists",
                RetentionWarning, stacklevel=3,
            )

    # -- archive ---------------------------------------------------------------------------

    def archive(self, uri: str, *, once: bool = True, every: float = 60.0,
                max_records: int | None = 200_000, **kwargs: Any) -> Any:
        """Archive the topic into Delta tables under ``uri``, exactly once (see
        :mod:`tu_analytics.archive`); returns what the run did."""
        from .archive import archive

        return archive(self, uri, once=once, every=every, max_records=max_records, **kwargs)

    def history(self, start: datetime | str | None = None, end: datetime | str | None = None,
                *, archive: str, **kwargs: Any) -> Window:
        """Records received in ``[start, end)`` from the archive at ``archive`` and the topic:
        archived rows below each partition's watermark, the topic from there on."""
        from .archive import history

        return history(self, start, end, archive=archive, **kwargs)

    # -- live ------------------------------------------------------------------------------

    def tail(self, start: datetime | str | Mapping[int, int] | None = None, *,
             history: int = 50_000, poll_records: int = 5000) -> LiveTail:
        """A live tail from now, from ``start`` (a time), or from stored offsets (a
        ``{partition: offset}`` mapping such as an earlier tail's ``tail.positions``):
        call ``.start()``, bind widgets, ``.stop()``. Records that cannot be decoded are kept
        in ``tail.bad_records()`` and counted in ``tail.stats.bad_records``."""
        from ._tail import KafkaBatchSource
        from .live import LiveTail

        offsets = start if isinstance(start, Mapping) else None
        when = start if not isinstance(start, Mapping) else None
        source = KafkaBatchSource(
            self.settings, self._registry,
            start_ms=_ms(parse_time(when, stacklevel=3)) if when is not None else None,
            start_offsets=offsets, poll_records=poll_records, consumer=self._open,
        )
        return LiveTail(source, history=history)


@dataclass
class _Read:
    plan: _pipeline.Plan
    stats: _pipeline.ReadStats
    decoded: _decode.Decoded
    schemas: dict[int, str | None]
    dropped: int | None  # exact repeats dropped (None: dedupe off)


class _Guard:
    """Progress hook of a read: after each batch, the plan's records × the bytes per record
    measured so far against the memory limit, so an oversized window stops one batch in
    (and a window whose records grow stops one batch after the estimate crosses the limit);
    then the progress bar."""

    def __init__(self, topic: str, planned: int, limit: int, bar: Any) -> None:
        self.topic, self.planned, self.limit, self.bar = topic, planned, limit, bar

    def __call__(self, got: int, stats: _pipeline.ReadStats) -> None:
        _memory.check(self.topic, self.planned, stats.count, stats.bytes, self.limit)
        if self.bar is not None:
            self.bar.update(got)


def covered_end(plan: _pipeline.Plan, stats: _pipeline.ReadStats) -> datetime:
    """How far the window is known complete. A partition whose range stopped at the high
    watermark (``end + lateness`` not yet written, or an open transaction holding the last
    stable offset back) is complete up to its last timestamp read less ``lateness``: later
    writes may still carry earlier times. Never past the planning time, never before start."""
    covered = min(plan.end_ms, plan.planned_at_ms)
    for r in plan.ranges:
        if r.open and r.partition in stats.last_stamp:
            covered = min(covered, stats.last_stamp[r.partition] - plan.lateness_ms)
    return datetime.fromtimestamp(max(plan.start_ms, covered) / 1000, UTC)


def _warn_disorder(max_disorder_ms: int, lateness_ms: int) -> None:
    if max_disorder_ms and max_disorder_ms * 5 >= lateness_ms * 4:
        warnings.warn(
            f"a record's timestamp lay {max_disorder_ms / 1000:.0f} s behind an earlier "
            f"record of its partition, within a fifth of lateness={lateness_ms / 1000:.0f} s: "
            "larger disorder would lose records; pass a larger lateness= (or set TU_LATENESS)",
            DisorderWarning, stacklevel=4)


def _raise_if_all_unknown(settings: Settings, registry: SchemaSource,
                          decoded: _decode.Decoded) -> None:
    """No record decoded and every id asked for came back not found: the registry is the
    wrong one; an empty frame would pass for data."""
    asked = registry.asked()
    if decoded.records.height or not decoded.errors.height or not asked:
        return
    if any(txt is not None for txt in asked.values()):
        return
    ids = tuple(sorted(asked))
    raise UnknownSchemasError(
        f"none of the {decoded.errors.height:,} records decoded: the Schema Registry at "
        f"{settings.schema_registry_url} knows none of their schema ids {list(ids)[:10]}; "
        "check schema_registry_url (it must be the registry the topic's producer uses)",
        schema_ids=ids, topic=settings.topic, url=settings.schema_registry_url)


def _check_records(topic: str, planned: int, max_records: int | None) -> None:
    if max_records is not None and planned > max_records:
        raise WindowTooLargeError(
            f"the window holds {planned:,} records, more than max_records={max_records:,}; "
            "narrow the range, pass machines=, read it with the archive or Spark, or pass a "
            "larger max_records", records=planned, limit_records=max_records, topic=topic)


def _lateness_ms(lateness: str | timedelta | None, settings: Settings) -> int:
    if lateness is None:
        return int(settings.lateness_ms)
    if isinstance(lateness, str) and lateness.strip() in ("0", "0s"):
        return 0
    return int(parse_duration(lateness).total_seconds() * 1000)


class _Decoding:
    """Decodes a window's chunks as they are read: registry lookups and ``decode_chunk`` on
    worker threads (Polars' Avro reader releases the GIL), results joined in (partition,
    offset) order. A failed chunk (e.g. an unreachable registry) stops the read at the next
    chunk rather than at the end. Chunks are cut to ``[start, end)`` (and deduplicated) on
    the reading thread, which sees each partition's chunks in offset order."""

    def __init__(self, registry: SchemaSource, start_ms: int, end_ms: int, *,
                 dedupe: bool = False, workers: int | None = None) -> None:
        self._registry, self._start_ms, self._end_ms = registry, start_ms, end_ms
        self._dedupe = _pipeline.Deduper() if dedupe else None
        self._pool = ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1,
                                        thread_name_prefix="tu-decode")
        self._jobs: dict[int, list[Future[tuple[_decode.Decoded, dict[int, str | None]]]]] = {}
        self._failed: BaseException | None = None

    @property
    def dropped(self) -> int | None:
        return self._dedupe.dropped if self._dedupe is not None else None

    def submit(self, chunk: _pipeline.Chunk) -> None:
        if self._failed is not None:
            raise self._failed
        chunk = chunk.within(self._start_ms, self._end_ms)
        if self._dedupe is not None:
            chunk = self._dedupe(chunk)
        job = self._pool.submit(self._run, chunk)
        job.add_done_callback(self._check)
        self._jobs.setdefault(chunk.partition, []).append(job)

    def _check(self, job: Future[Any]) -> None:
        if not job.cancelled() and job.exception() is not None and self._failed is None:
            self._failed = job.exception()

    def _run(self, chunk: _pipeline.Chunk) -> tuple[_decode.Decoded, dict[int, str | None]]:
        return _decode.decode_chunk(chunk.frame(), chunk.values, self._registry.schemas)

    def result(self) -> tuple[_decode.Decoded, dict[int, str | None]]:
        """Every chunk decoded, in (partition, offset) order, and the writer schemas by id."""
        try:
            parts: list[_decode.Decoded] = []
            schemas: dict[int, str | None] = {}
            for p in sorted(self._jobs):
                for job in self._jobs[p]:
                    decoded, used = job.result()
                    parts.append(decoded)
                    schemas.update(used)
        except BaseException:
            self.cancel()
            raise
        self._pool.shutdown()
        return _decode.concat(parts), schemas

    def cancel(self) -> None:
        # Chunks not started are dropped; running ones finish on their own (not waited for).
        self._pool.shutdown(wait=False, cancel_futures=True)


def plan_window(settings: Settings, start: datetime | str, end: datetime | str, *,
                lateness: str | timedelta | None = None, timeout: float = 10.0,
                consumer: Callable[[Settings], RecordConsumer] | None = None) -> _pipeline.Plan:
    """The shared first step for every engine (a Spark driver, the archive): the offset
    ranges of ``[start, end)`` with ``lateness``, planned on a consumer of its own."""
    c = (consumer or _kafka.KafkaConsumer)(settings)
    try:
        return _pipeline.plan(c, _ms(parse_time(start)), _ms(parse_time(end)),
                              _lateness_ms(lateness, settings), timeout=timeout)
    finally:
        c.close()


def read_window(settings: Settings, ranges: Iterable[_pipeline.PartitionRange], start_ms: int,
                end_ms: int, *, dedupe: bool = False, registry: SchemaSource | None = None,
                consumer: Callable[[Settings], RecordConsumer] | None = None,
                stall_timeout: float = 30.0) -> _decode.Decoded:
    """The shared second step: read ``ranges`` (all of a plan's, or one per Spark task),
    keep the records stamped in ``[start_ms, end_ms)``, decode them. Returns the decoded
    records (Kafka columns + Avro fields, in (partition, offset) order) and the records that
    could not be decoded; flatten with ``formats``."""
    reg = registry if registry is not None else Registry(settings)
    c = (consumer or _kafka.KafkaConsumer)(settings)
    decoding = _Decoding(reg, start_ms, end_ms, dedupe=dedupe)
    with _pipeline.gc_paused(), reg.deadline():
        try:
            _pipeline.read(c, ranges, decoding.submit, stall_timeout=stall_timeout)
        except BaseException:
            decoding.cancel()
            raise
        finally:
            c.close()
        decoded, _ = decoding.result()
    return decoded


def build_window(conn: Connection, plan: _pipeline.Plan, decoded: _decode.Decoded, *,
                 machines: str | Iterable[str] | None = None,
                 stats: _pipeline.ReadStats | None = None) -> Window:
    """The shared third step: decoded records of a plan (or of some of its ranges) as a
    :class:`Window`'s frames, flattened exactly as ``window()`` does. Writer schemas come
    from ``conn``'s registry cache (filled while ``read_window`` decoded with it)."""
    ids = pl.concat([decoded.records.select("schema_id"), decoded.errors.select("schema_id")])
    wanted = sorted(int(i) for i in ids["schema_id"].drop_nulls().unique())
    read = _Read(plan, stats or _pipeline.ReadStats(), decoded, conn._registry.schemas(wanted),
                 None)
    begin = datetime.fromtimestamp(plan.start_ms / 1000, UTC)
    stop = datetime.fromtimestamp(min(plan.end_ms, _MAX_MS) / 1000, UTC)
    return conn._build(read, begin, stop, _machine_set(machines))


def connect(
    settings: Settings | None = None, *, profile: str | None = None, **kwargs: Any
) -> Connection:
    """A connection from keyword arguments, a profile, or the ``TU_*`` environment.

    With no arguments after ``eval "$(tu-analytics sandbox env)"`` it connects to the
    local sandbox. Keyword names: ``bootstrap_servers``, ``sasl_username``,
    ``sasl_password``, ``topic``, ``schema_registry_url``, ``schema_registry_username``,
    ``schema_registry_password``, ``security_protocol`` (default ``SASL_SSL``),
    ``ssl_ca_location``, ``lateness`` (default ``"5m"``).
    """
    if settings is None:
        settings = Settings.resolve(profile=profile, **kwargs)
    return Connection(settings)


#: 9999-12-31T23:59:59Z: the latest instant a window's end can name.
_MAX_MS = 253_402_300_799_000


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _machine_set(machines: str | Iterable[str] | None) -> set[str] | None:
    if machines is None:
        return None
    return {machines} if isinstance(machines, str) else set(machines)


def _format_from_topic(topic: str) -> Format:
    return "raw" if topic.endswith("raw") else "insights"


__all__ = ["Connection", "connect"]
