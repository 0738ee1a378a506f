"""``connect()`` and the connection's two ways to read: ``window()`` and ``tail()``.

The connection holds settings and a schema cache, nothing else: creating it touches no
network. Each ``window()`` opens its own consumer, reads the planned offsets, closes it;
chunks of records are decoded on worker threads while the read goes on.
"""

from __future__ import annotations

import importlib
import os
import threading
import warnings
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import polars as pl

from . import _decode, _kafka, _machines
from ._registry import Registry
from ._settings import Settings
from ._timespec import parse_time, resolve_range
from .errors import DecodeWarning, RetentionWarning, WindowTooLargeError
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
    """A Streaming API topic: settings plus a schema cache. Create with :func:`connect`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._registry = Registry(settings)

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
        max_records: int | None = DEFAULT_MAX_RECORDS,
        max_bytes: int | None = None,
        progress: bool = True,
        timeout: float = 10.0,
        stall_timeout: float = 30.0,
    ) -> Window:
        """Every record whose Kafka (receipt) timestamp lies in ``[start, end)``.

        ``start``/``end`` are datetimes or ISO strings (local time if no offset, with a
        :class:`NaiveTimeWarning`); or ``last="2h"``
        for the span up to ``end`` (default: now). The end offsets are fixed when the call
        starts, so the call finishes on a live topic. ``machines`` keeps only those
        machines, named by machine id or EquipmentID (an unknown name warns).
        ``max_records``/``max_bytes`` stop an oversized window with
        :class:`WindowTooLargeError` before memory runs out. Records that cannot be decoded
        are returned in ``window.errors`` (with a :class:`DecodeWarning`), never dropped.
        """
        begin, stop = resolve_range(start, end, last, stacklevel=3)
        start_ms, end_ms = _ms(begin), _ms(stop)
        wanted = _machine_set(machines)
        s = self.settings
        consumer, errors = _kafka.make_consumer(s)
        bar: Any = None
        # Chunks are decoded on worker threads while the consumer keeps reading.
        decoding = _Decoding(self._registry, start_ms, end_ms)
        # No GC pass until every chunk is decoded: each would walk all the values queued.
        with _kafka.gc_paused():
            try:
                ranges = _kafka.plan(consumer, errors, s, start_ms, end_ms, timeout)
                planned = sum(r.count for r in ranges)
                if max_records is not None and planned > max_records:
                    raise WindowTooLargeError(
                        f"the window holds {planned:,} records, more than max_records="
                        f"{max_records:,}; narrow the range or pass a larger max_records"
                    )
                self._warn_retention(ranges, start_ms)
                if progress:
                    from tqdm.auto import tqdm

                    bar = tqdm(total=planned, unit="rec", desc=s.topic, leave=False)
                _kafka.fetch(
                    consumer, errors, s, ranges, start_ms=start_ms, end_ms=end_ms,
                    max_bytes=max_bytes, stall_timeout=stall_timeout,
                    on_progress=bar.update if bar is not None else None,
                    on_chunk=decoding.submit,
                )
            except BaseException:
                decoding.cancel()
                raise
            finally:
                if bar is not None:
                    bar.close()
                consumer.close()
            decoded, schemas = decoding.result()
        return self._build(decoded, schemas, begin, stop, ranges, wanted)

    def _build(self, decoded: _decode.Decoded, schemas: dict[int, str | None], begin: datetime,
               stop: datetime, ranges: list[_kafka.PartitionRange],
               wanted: set[str] | None) -> Window:
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
        units = (mi.units(decoded.records, known, raw_units=decoded.units)
                 if fmt == "insights" else mi.empty_units())
        spec = WindowSpec(
            topic=self.settings.topic, format=fmt, start=begin, end=stop,
            machines=tuple(sorted(wanted)) if wanted is not None else None,
            offsets={r.partition: (r.start, r.end) for r in ranges},
            schema_ids=tuple(sorted(ids)), created=datetime.now(UTC),
            records=main.height, errors=err.height,
            bootstrap_servers=self.settings.bootstrap_servers,
        )
        return Window(spec=spec, main=main, errors=err, units=units, long=long)

    def _warn_retention(self, ranges: list[_kafka.PartitionRange], start_ms: int) -> None:
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

    def tail(self, start: datetime | str | None = None, *, history: int = 50_000,
             poll_records: int = 5000) -> LiveTail:
        """A live tail from now (or ``start``): call ``.start()``, bind widgets, ``.stop()``."""
        from ._tail import KafkaBatchSource
        from .live import LiveTail

        source = KafkaBatchSource(
            self.settings, self._registry,
            start_ms=_ms(parse_time(start, stacklevel=3)) if start is not None else None,
            poll_records=poll_records,
        )
        return LiveTail(source, history=history)


class _Decoding:
    """Decodes a window's chunks as they are read: registry lookups and ``decode_chunk`` on
    worker threads (Polars' Avro reader releases the GIL), results joined in (partition,
    offset) order. A failed chunk (e.g. an unreachable registry) stops the read at the next
    chunk rather than at the end."""

    def __init__(self, registry: Registry, start_ms: int, end_ms: int,
                 workers: int | None = None) -> None:
        self._registry, self._start_ms, self._end_ms = registry, start_ms, end_ms
        self._pool = ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1,
                                        thread_name_prefix="tu-decode")
        self._jobs: dict[int, list[Future[tuple[_decode.Decoded, dict[int, str | None]]]]] = {}
        self._lock = threading.Lock()  # the registry's cache is not made for concurrent misses
        self._failed: BaseException | None = None
        # The registry client's import (~0.2 s) overlaps planning instead of the first chunk.
        self._pool.submit(importlib.import_module, "confluent_kafka.schema_registry")

    def submit(self, chunk: _kafka.Chunk) -> None:
        if self._failed is not None:
            raise self._failed
        job = self._pool.submit(self._run, chunk)
        job.add_done_callback(self._check)
        self._jobs.setdefault(chunk.partition, []).append(job)

    def _check(self, job: Future[Any]) -> None:
        if not job.cancelled() and job.exception() is not None and self._failed is None:
            self._failed = job.exception()

    def _run(self, chunk: _kafka.Chunk) -> tuple[_decode.Decoded, dict[int, str | None]]:
        records, raw = chunk.frame(self._start_ms, self._end_ms)
        return _decode.decode_chunk(records, raw, self._schemas)

    def _schemas(self, ids: list[int]) -> dict[int, str | None]:
        with self._lock:
            return self._registry.schemas(ids)

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


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _machine_set(machines: str | Iterable[str] | None) -> set[str] | None:
    if machines is None:
        return None
    return {machines} if isinstance(machines, str) else set(machines)


def _format_from_topic(topic: str) -> Format:
    return "raw" if topic.endswith("raw") else "insights"


__all__ = ["Connection", "connect"]
