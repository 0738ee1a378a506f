"""``connect()`` and the connection's two ways to read: ``window()`` and ``tail()``.

The connection holds settings and a schema cache, nothing else: creating it touches no
network. Each ``window()`` opens its own consumer, reads the planned offsets, closes it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import polars as pl

from . import _decode, _kafka
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

        ``start``/``end`` are datetimes or ISO strings (UTC if no offset); or ``last="2h"``
        for the span up to ``end`` (default: now). The end offsets are fixed when the call
        starts, so the call finishes on a live topic. ``machines`` keeps only those
        MachineIds. ``max_records``/``max_bytes`` stop an oversized window with
        :class:`WindowTooLargeError` before memory runs out. Records that cannot be decoded
        are returned in ``window.errors`` (with a :class:`DecodeWarning`), never dropped.
        """
        begin, stop = resolve_range(start, end, last)
        start_ms, end_ms = _ms(begin), _ms(stop)
        wanted = _machine_set(machines)
        s = self.settings
        consumer, errors = _kafka.make_consumer(s)
        bar: Any = None
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
            fetched = _kafka.fetch(
                consumer, errors, s, ranges, start_ms=start_ms, end_ms=end_ms,
                max_bytes=max_bytes, stall_timeout=stall_timeout,
                on_progress=bar.update if bar is not None else None,
            )
        finally:
            if bar is not None:
                bar.close()
            consumer.close()
        return self._build(fetched.records, begin, stop, ranges, wanted)

    def _build(self, records: pl.DataFrame, begin: datetime, stop: datetime,
               ranges: list[_kafka.PartitionRange], wanted: set[str] | None) -> Window:
        ids = _decode.schema_ids(records["value"])
        schemas = self._registry.schemas(ids)
        decoded = _decode.decode(records, schemas)
        known = [txt for txt in schemas.values() if txt]
        if not known:
            latest = self._registry.latest_for_topic(self.settings.topic)
            known = [latest] if latest else []
        fmt: Format = detect_format(known[0]) if known else _format_from_topic(self.settings.topic)
        module = mi if fmt == "insights" else raw_format
        frames = module.flatten(decoded.records) if decoded.records.height else module.empty_frames(known)
        main, long = frames.main, dict(frames.long)
        if wanted is not None:
            id_col = "MachineId" if fmt == "insights" else "machineId"
            main = main.filter(pl.col(id_col).is_in(list(wanted)))
            keys = main.select("partition", "offset")
            long = {k: v.join(keys, on=["partition", "offset"], how="semi") for k, v in long.items()}
        err = decoded.errors
        if err.height:
            warnings.warn(
                f"{err.height:,} of {records.height:,} records could not be decoded; they are "
                "in window.errors with their partition, offset and raw bytes",
                DecodeWarning, stacklevel=3,
            )
        units = mi.units(decoded.records, known) if fmt == "insights" else pl.DataFrame(
            {"insight": [], "unit": [], "value_type": []},
            schema={"insight": pl.String, "unit": pl.String, "value_type": pl.String},
        )
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

    # -- live ------------------------------------------------------------------------------

    def tail(self, start: datetime | str | None = None, *, history: int = 50_000,
             poll_records: int = 5000) -> LiveTail:
        """A live tail from now (or ``start``): call ``.start()``, bind widgets, ``.stop()``."""
        from ._tail import KafkaBatchSource
        from .live import LiveTail

        source = KafkaBatchSource(
            self.settings, self._registry,
            start_ms=_ms(parse_time(start)) if start is not None else None,
            poll_records=poll_records,
        )
        return LiveTail(source, history=history)


def connect(settings: Settings | None = None, *, profile: str | None = None, **kwargs: Any) -> Connection:
    """A connection from keyword arguments, a profile, or the ``TU_*`` environment.

    With no arguments after ``eval "$(tu-analytics sandbox env)"`` it connects to the
    local sandbox. Keyword names: ``bootstrap_servers``, ``sasl_username``,
    ``sasl_password``, ``topic``, ``schema_registry_url``, ``schema_registry_username``,
    ``schema_registry_password``, ``security_protocol`` (default ``SASL_SSL``).
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
