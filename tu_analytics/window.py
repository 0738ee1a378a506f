"""The window: the frames of one bounded pull, their metadata, and Parquet snapshots.

A snapshot is a directory: one Parquet file per frame and ``window.json`` with the window's
spec (topic, range, per-partition offsets, schema ids, created time). Loading it needs no
credentials and gives back equal frames, so a shared notebook reruns anywhere.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import polars as pl

from .errors import SnapshotError

Format = Literal["insights", "raw"]
SNAPSHOT_VERSION = 1


@dataclass(frozen=True)
class WindowSpec:
    """What was asked for and what was read: enough to rerun or audit the window."""

    topic: str
    format: Format
    start: datetime
    end: datetime
    machines: tuple[str, ...] | None
    #: partition -> [first offset, one past the last offset] as planned
    offsets: dict[int, tuple[int, int]]
    schema_ids: tuple[int, ...]
    created: datetime
    records: int
    errors: int
    bootstrap_servers: str = ""
    #: Records were read up to the first offset stamped at or after ``end + lateness``.
    lateness_ms: int = 0
    #: The largest step back in Kafka timestamp seen within a partition.
    max_disorder_ms: int = 0
    #: How far the window was actually read: before ``end`` when the end lies in the future,
    #: past the high watermark, or behind an open transaction (``None``: not recorded).
    covered_end: datetime | None = None
    #: Exact repeats (same key and value bytes) were dropped, keeping the first offset.
    dedupe: bool = False

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("start", "end", "created"):
            d[k] = getattr(self, k).isoformat()
        d["covered_end"] = self.covered_end.isoformat() if self.covered_end else None
        d["offsets"] = {str(p): list(v) for p, v in self.offsets.items()}
        d["machines"] = list(self.machines) if self.machines is not None else None
        d["schema_ids"] = list(self.schema_ids)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> WindowSpec:
        return cls(
            topic=d["topic"],
            format=d["format"],
            start=datetime.fromisoformat(d["start"]),
            end=datetime.fromisoformat(d["end"]),
            machines=tuple(d["machines"]) if d.get("machines") is not None else None,
            offsets={int(p): (int(v[0]), int(v[1])) for p, v in d["offsets"].items()},
            schema_ids=tuple(d["schema_ids"]),
            created=datetime.fromisoformat(d["created"]),
            records=int(d["records"]),
            errors=int(d["errors"]),
            bootstrap_servers=d.get("bootstrap_servers", ""),
            lateness_ms=int(d.get("lateness_ms", 0)),
            max_disorder_ms=int(d.get("max_disorder_ms", 0)),
            covered_end=(datetime.fromisoformat(d["covered_end"])
                         if d.get("covered_end") else None),
            dedupe=bool(d.get("dedupe", False)),
        )


@dataclass
class Window:
    """Frames of one window: ``main``, the long frames, ``errors`` and ``units``."""

    spec: WindowSpec
    main: pl.DataFrame
    errors: pl.DataFrame
    units: pl.DataFrame
    long: dict[str, pl.DataFrame] = field(default_factory=dict)

    def __getattr__(self, name: str) -> pl.DataFrame:
        # fault_codes, can_messages, ... read like attributes.
        long: dict[str, pl.DataFrame] = self.__dict__.get("long", {})
        if name in long:
            return long[name]
        raise AttributeError(name)

    @property
    def frames(self) -> dict[str, pl.DataFrame]:
        return {"main": self.main, **self.long, "errors": self.errors, "units": self.units}

    def by_measurement_time(
        self,
        column: str = "Location_datetime",
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        *,
        sort: bool = True,
    ) -> pl.DataFrame:
        """``main`` re-keyed by a measurement clock: rows whose ``column`` lies in [start, end).

        ``column`` is any ``*_datetime`` column (or an insight name, meaning its
        ``_datetime``). Records arrive late and out of order, so this is how to ask what was
        measured in a period rather than what was received.
        """
        if column not in self.main.columns and f"{column}_datetime" in self.main.columns:
            column = f"{column}_datetime"
        if column not in self.main.columns:
            raise KeyError(f"{column!r} is not a column of the main frame")
        df = self.main.filter(pl.col(column).is_not_null())
        tz = "UTC"
        if start is not None:
            df = df.filter(pl.col(column) >= pl.lit(_as_dt(start)).dt.convert_time_zone(tz))
        if end is not None:
            df = df.filter(pl.col(column) < pl.lit(_as_dt(end)).dt.convert_time_zone(tz))
        return df.sort(column) if sort else df

    def summary(self) -> dict[str, Any]:
        id_col = "MachineId" if "MachineId" in self.main.columns else "machineId"
        ts = self.main["kafka_timestamp"] if self.main.height else None
        return {
            "topic": self.spec.topic,
            "format": self.spec.format,
            "records": self.main.height,
            "machines": self.main[id_col].n_unique() if self.main.height else 0,
            "first": ts.min() if ts is not None else None,
            "last": ts.max() if ts is not None else None,
            "errors": self.errors.height,
            "schema_ids": list(self.spec.schema_ids),
        }

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"<Window {s['topic']} [{self.spec.start.isoformat()} .. {self.spec.end.isoformat()}): "
            f"{s['records']:,} records, {s['machines']} machines, {s['errors']} errors, "
            f"schema ids {s['schema_ids']}, frames {list(self.frames)}>"
        )

    # -- snapshots --------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write every frame and the spec to a snapshot directory."""
        root = Path(path)
        try:
            root.mkdir(parents=True, exist_ok=True)
            for name, df in self.frames.items():
                df.write_parquet(root / f"{name}.parquet")
            meta = {
                "snapshot_version": SNAPSHOT_VERSION,
                "long": list(self.long),
                "spec": self.spec.to_json(),
            }
            (root / "window.json").write_text(json.dumps(meta, indent=1))
        except OSError as exc:
            raise SnapshotError(f"could not write snapshot to {root}: {exc}") from exc
        return root


def load_snapshot(path: str | Path) -> Window:
    """Load a snapshot written by :meth:`Window.save`; needs no credentials."""
    root = Path(path)
    try:
        meta = json.loads((root / "window.json").read_text())
    except FileNotFoundError:
        raise SnapshotError(f"{root} is not a tu-analytics snapshot (no window.json)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise SnapshotError(f"could not read {root / 'window.json'}: {exc}") from exc
    if meta.get("snapshot_version") != SNAPSHOT_VERSION:
        raise SnapshotError(f"unsupported snapshot version {meta.get('snapshot_version')!r}")

    def read(name: str) -> pl.DataFrame:
        try:
            return pl.read_parquet(root / f"{name}.parquet")
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise SnapshotError(f"could not read {name}.parquet from {root}: {exc}") from exc

    return Window(
        spec=WindowSpec.from_json(meta["spec"]),
        main=read("main"),
        errors=read("errors"),
        units=read("units"),
        long={name: read(name) for name in meta["long"]},
    )


def _as_dt(value: datetime | str) -> datetime:
    from ._timespec import parse_time

    return parse_time(value)
