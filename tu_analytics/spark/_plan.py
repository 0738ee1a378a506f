"""The driver's half: settings from options, a pinned plan of offset ranges, the frame schema.

Everything a task needs travels in one :class:`Job` (plain strings and ints, picklable): the
settings as options, the window's bounds, and the ranges the driver fixed. Tasks never plan
and never resolve times again, so every action on a DataFrame reads the same
(partition, offset) set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from .. import _decode, _pipeline
from .._settings import ENV_VARS, Settings
from .._timespec import resolve_range
from ..errors import ConfigurationError
from ..formats import Frames, detect_format
from ..formats import machine_insights as mi
from ..formats import raw as raw_format

#: Options that are settings, by the name ``connect()`` takes.
SETTING_OPTIONS = tuple(ENV_VARS)
#: Frames a task can return: ``main``, the long frames, and ``errors``.
FORMAT_TOPIC_ENV = {"insights": "TU_TOPIC_INSIGHTS", "raw": "TU_TOPIC_RAW"}
DEFAULT_MAX_RECORDS_PER_TASK = 200_000
DEFAULT_LATENESS_MS = 300_000


@dataclass(frozen=True)
class TaskRange:
    """Offsets ``[start, end)`` of one partition: the unit of a Spark task."""

    partition: int
    start: int
    end: int
    low: int


@dataclass(frozen=True)
class Job:
    """What every task of one read shares. ``settings`` holds clear-text secrets: it travels
    only inside the pickled data source, never into a plan string or a log line."""

    settings: dict[str, str]
    start_ms: int
    end_ms: int
    machines: tuple[str, ...] | None
    frame: str
    ranges: tuple[TaskRange, ...]
    lateness_ms: int = 0

    def to_json(self) -> str:
        """The plan without the settings (for the ``plan`` option of ``window()``)."""
        body = asdict(self)
        del body["settings"]
        return json.dumps(body)

    @classmethod
    def from_json(cls, text: str, settings: dict[str, str]) -> Job:
        body = json.loads(text)
        ranges = tuple(TaskRange(**r) for r in body.pop("ranges"))
        machines = body.pop("machines")
        return cls(settings=settings, ranges=ranges,
                   machines=tuple(machines) if machines is not None else None, **body)


def settings_options(options: Mapping[str, str]) -> dict[str, str]:
    """The connection settings among Spark options (Spark lower-cases option keys), with the
    sandbox's ``format`` shortcut resolved to a topic on the driver."""
    chosen = {k: str(options[k]) for k in SETTING_OPTIONS if options.get(k)}
    fmt = options.get("format")
    if fmt and "topic" not in chosen:
        var = FORMAT_TOPIC_ENV.get(str(fmt))
        if var is None:
            raise ConfigurationError(f"format must be 'insights' or 'raw', not {fmt!r}")
        topic = os.environ.get(var)
        if not topic:
            raise ConfigurationError(f"format={fmt} needs {var} (printed by "
                                     "`tu-analytics sandbox env`), or pass topic=")
        chosen["topic"] = topic
    return chosen


def settings_from(options: Mapping[str, str], env: Mapping[str, str] | None = None) -> Settings:
    """Settings from options over the ``TU_*`` environment (the driver's, when given)."""
    known: dict[str, Any] = {k: v for k, v in options.items() if k in ENV_VARS}
    return Settings.resolve(env=env if env is not None else {}, **known)


def as_options(settings: Settings) -> dict[str, str]:
    """A :class:`Settings` back as options (clear-text secrets: keep them out of plans)."""
    out = {k: v for k, v in settings.masked().items() if v is not None and k in ENV_VARS}
    for name in ("sasl_password", "schema_registry_password"):
        secret = getattr(settings, name)
        if secret is not None:
            out[name] = secret.get()
    return {k: str(v) for k, v in out.items()}


def split(ranges: Iterable[_pipeline.PartitionRange], per_task: int) -> tuple[TaskRange, ...]:
    """Each partition's range cut into pieces of at most ``per_task`` offsets."""
    if per_task < 1:
        raise ConfigurationError(f"max_records_per_task must be ≥ 1, not {per_task}")
    return tuple(
        TaskRange(r.partition, a, min(a + per_task, r.end), r.low)
        for r in ranges for a in range(r.start, r.end, per_task)
    )


def window_bounds(start: datetime | str | None, end: datetime | str | None,
                  last: str | None) -> tuple[int, int]:
    begin, stop = resolve_range(start, end, last)
    return int(begin.timestamp() * 1000), int(stop.timestamp() * 1000)


def plan_job(settings: Settings, *, start_ms: int, end_ms: int, machines: Iterable[str] | None,
             frame: str, per_task: int, lateness: str | None = None,
             timeout: float = 10.0) -> Job:
    """Fix every partition's offsets now: from the first record at ``start`` to the first at
    ``end + lateness``, so records written up to ``lateness`` out of order are in range (tasks
    keep exactly those with a timestamp in ``[start, end)``)."""
    from .._connection import plan_window

    plan = plan_window(settings, _utc(start_ms), _utc(end_ms), lateness=lateness,
                       timeout=timeout)
    return Job(settings=as_options(settings), start_ms=start_ms, end_ms=end_ms,
               machines=tuple(sorted(machines)) if machines is not None else None,
               frame=frame, ranges=split(plan.ranges, per_task), lateness_ms=plan.lateness_ms)


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def frame_schema(settings: Settings, frame: str) -> pl.Schema:
    """The Polars schema of ``frame`` across every value-schema version of the topic: the
    columns a Polars window of any range would have."""
    texts = _schema_versions(settings)
    if frame == "errors":
        return pl.Schema(_decode.ERRORS_SCHEMA)
    frames = _empty_frames(texts, settings.topic)
    if frame == "main":
        return frames.main.schema
    if frame in frames.long:
        return frames.long[frame].schema
    choices = ", ".join(["main", *frames.long, "errors"])
    raise ConfigurationError(f"frame must be one of {choices}, not {frame!r}")


def _empty_frames(texts: list[str], topic: str) -> Frames:
    fmt = detect_format(texts[0]) if texts else ("raw" if topic.endswith("raw") else "insights")
    module: Any = mi if fmt == "insights" else raw_format
    return module.empty_frames(texts)  # type: ignore[no-any-return]


def _schema_versions(settings: Settings) -> list[str]:
    """Every registered value-schema version of the topic (TopicNameStrategy), oldest first."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from .._registry import Registry

    conf = settings.registry_config()
    conf.setdefault("timeout", 10)
    subject = f"{settings.topic}-value"
    with SchemaRegistryClient(conf) as client:
        try:
            versions = client.get_versions(subject)
        except Exception:
            # No subject (or no rights to list it): the newest schema the registry gives.
            latest = Registry(settings).latest_for_topic(settings.topic)
            return [latest] if latest else []
        return [str(client.get_version(subject, v).schema.schema_str) for v in versions]
