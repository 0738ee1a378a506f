"""The window: the frames of one bounded pull, their metadata, and Parquet snapshots.

A snapshot is a directory: one Parquet file per frame and ``window.json`` with the window's
spec (topic, range, per-partition offsets, schema ids, created time). Loading it needs no
credentials and gives back equal frames, so a shared notebook reruns anywhere.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import polars as pl

from .errors import SnapshotError, SnapshotIntegrityError

Format = Literal["insights", "raw"]
T = TypeVar("T")
#: 2: window.json gains per-frame row counts and SHA-256s, and the spec lateness_ms,
#: max_disorder_ms, covered_end and dedupe. Version 1 snapshots still load.
SNAPSHOT_VERSION = 2


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
    #: Offsets were planned up to ``end + lateness`` and filtered by timestamp (0: not).
    lateness_ms: int = 0
    #: The largest backwards step between consecutive Kafka timestamps of a partition.
    max_disorder_ms: int = 0
    #: Where the read actually stopped when that is before ``end`` (a future end, a
    #: high watermark short of ``end + lateness``); None when ``end`` was fully covered.
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
        """The spec of ``window.json``; ValueError/TypeError/KeyError if any field is off."""
        if d["format"] not in ("insights", "raw"):
            raise ValueError(f"format {d['format']!r} is neither 'insights' nor 'raw'")
        machines = d.get("machines")
        return cls(
            topic=_typed(d["topic"], str),
            format=d["format"],
            start=_time(d["start"]),
            end=_time(d["end"]),
            machines=None if machines is None else tuple(_typed(m, str) for m in machines),
            offsets={int(_typed(p, str)): _pair(v) for p, v in _typed(d["offsets"], dict).items()},
            schema_ids=tuple(_typed(i, int) for i in _typed(d["schema_ids"], list)),
            created=_time(d["created"]),
            records=_typed(d["records"], int),
            errors=_typed(d["errors"], int),
            bootstrap_servers=_typed(d.get("bootstrap_servers", ""), str),
            # Older snapshots lack these: they planned to `end` exactly and kept repeats.
            lateness_ms=_typed(d.get("lateness_ms", 0), int),
            max_disorder_ms=_typed(d.get("max_disorder_ms", 0), int),
            covered_end=None if d.get("covered_end") is None else _time(d["covered_end"]),
            dedupe=_typed(d.get("dedupe", False), bool),
        )


def _typed(value: Any, kind: type[T]) -> T:
    # bool is an int to Python, never to a manifest.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"{value!r} is not {kind.__name__}")
    return value


def _time(value: Any) -> datetime:
    dt = datetime.fromisoformat(_typed(value, str))
    if dt.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset")
    return dt


def _pair(value: Any) -> tuple[int, int]:
    first, last = _typed(value, list)  # ValueError unless exactly two
    return _typed(first, int), _typed(last, int)


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

        ``column`` is any ``*_datetime`` column, or an insight's name, meaning that insight's
        own clock (``"CumulativeOperatingHours"`` -> ``CumulativeOperatingHours_datetime``).
        Records arrive late and out of order, so this is how to ask what was measured in a
        period rather than what was received. Times without an offset are local (see
        :class:`~tu_analytics.errors.NaiveTimeWarning`).
        """
        clock = _clock_column(self.main.schema, column)
        df = self.main.filter(pl.col(clock).is_not_null())
        if start is not None:
            df = df.filter(pl.col(clock) >= _as_utc(start))
        if end is not None:
            df = df.filter(pl.col(clock) < _as_utc(end))
        return df.sort(clock) if sort else df

    def insights(self) -> pl.DataFrame:
        """The insights present in ``main``: one row each, with ``unit``, ``value_type``,
        ``rows`` (non-null values), ``coverage`` (share of the window's rows), the value
        range ``min``/``max`` (numbers and booleans as 0/1; null for text), ``distinct``
        values and the first and last measurement time."""
        stats = [_insight_stats(self.main.schema, ins, vt) for ins, vt in self._insight_types()]
        if not stats or not self.main.height:
            return pl.DataFrame(schema=_INSIGHTS_SCHEMA)
        row = self.main.select(e for exprs in stats for e in exprs).row(0, named=True)
        units = dict(zip(self.units["insight"], self.units["unit"], strict=True))
        out = [
            {"insight": ins, "unit": units.get(ins), "value_type": vt,
             "rows": row[f"{ins}|rows"], "coverage": row[f"{ins}|rows"] / self.main.height,
             **{k: row[f"{ins}|{k}"] for k in ("min", "max", "distinct", "first", "last")}}
            for ins, vt in self._insight_types()
            if row[f"{ins}|rows"]
        ]
        return pl.DataFrame(out, schema=_INSIGHTS_SCHEMA)

    def drop_null_insights(self) -> Window:
        """This window with the insight columns (and their ``_datetime``) that hold no value
        dropped. The full, stable schema stays the default, for pipelines that need it."""
        names = [ins for ins, _ in self._insight_types()]
        if not names or not self.main.height:
            return self
        counts = self.main.select(pl.col(n).count() for n in names).row(0)
        empty = [n for n, c in zip(names, counts, strict=True) if c == 0]
        drop = [c for n in empty for c in (n, f"{n}_datetime") if c in self.main.columns]
        return replace(self, main=self.main.drop(drop))

    def _insight_types(self) -> list[tuple[str, str]]:
        if "insight" not in self.units.columns:
            return []
        cols = set(self.main.columns)
        return [(i, v) for i, v in zip(self.units["insight"], self.units["value_type"],
                                       strict=True) if i in cols]

    def to_pandas(self, frame: str = "main") -> Any:
        """A frame as a pandas DataFrame (needs ``pip install 'tu-analytics[pandas]'``)."""
        for module in ("pandas", "pyarrow"):
            if importlib.util.find_spec(module) is None:
                raise ModuleNotFoundError(
                    f"to_pandas() needs {module}: pip install 'tu-analytics[pandas]' "
                    "(or work in Polars: window.main is a polars.DataFrame)",
                    name=module,
                )
        return self.frames[frame].to_pandas()

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
        covered = self.spec.covered_end
        short = f" (read only to {covered.isoformat()})" if covered is not None else ""
        return (
            f"<Window {s['topic']} [{self.spec.start.isoformat()} .. {self.spec.end.isoformat()})"
            f"{short}: {s['records']:,} records, {s['machines']} machines, {s['errors']} errors, "
            f"schema ids {s['schema_ids']}, frames {list(self.frames)}>"
        )

    # -- snapshots --------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write every frame and ``window.json`` (the spec, and each frame's row count and
        SHA-256, which :func:`load_snapshot` checks) to a snapshot directory."""
        root = Path(path)
        try:
            root.mkdir(parents=True, exist_ok=True)
            files: dict[str, dict[str, Any]] = {}
            for name, df in self.frames.items():
                file = _frame_path(root, name)
                df.write_parquet(file)
                files[name] = {"rows": df.height, "sha256": _sha256(file)}
            meta = {
                "snapshot_version": SNAPSHOT_VERSION,
                "long": list(self.long),
                "frames": files,
                "spec": self.spec.to_json(),
            }
            (root / "window.json").write_text(json.dumps(meta, indent=1))
        except OSError as exc:
            raise SnapshotError(f"could not write snapshot to {root}: {exc}") from exc
        return root


_INSIGHTS_SCHEMA: Mapping[str, pl.DataType] = {
    "insight": pl.String(), "unit": pl.String(), "value_type": pl.String(), "rows": pl.Int64(),
    "coverage": pl.Float64(), "min": pl.Float64(), "max": pl.Float64(), "distinct": pl.Int64(),
    "first": pl.Datetime("ms", "UTC"), "last": pl.Datetime("ms", "UTC"),
}


def _insight_stats(schema: Mapping[str, pl.DataType], name: str, value_type: str) -> list[pl.Expr]:
    value = pl.col(name)
    number = value.cast(pl.Float64) if value_type != "enum" else pl.lit(None, pl.Float64)
    clock = f"{name}_datetime"
    when = pl.col(clock) if clock in schema else pl.lit(None, pl.Datetime("ms", "UTC"))
    return [
        value.count().alias(f"{name}|rows"),
        number.min().alias(f"{name}|min"),
        number.max().alias(f"{name}|max"),
        value.drop_nulls().n_unique().alias(f"{name}|distinct"),
        when.min().alias(f"{name}|first"),
        when.max().alias(f"{name}|last"),
    ]


def _clock_column(schema: Mapping[str, pl.DataType], column: str) -> str:
    """The measurement-clock column ``column`` names: itself if it is a time column, else the
    ``_datetime`` of the insight (or location field) of that name."""
    for name in (column, f"{column}_datetime", f"{column}_insight_datetime"):
        if isinstance(schema.get(name), pl.Datetime):
            return name
    if column in schema:
        raise KeyError(f"{column!r} is neither a time column nor an insight with a _datetime")
    raise KeyError(f"{column!r} is not a column of the main frame")


def _as_utc(value: datetime | str) -> datetime:
    from ._timespec import parse_time

    # The user's call is two frames up (by_measurement_time, then this).
    return parse_time(value, stacklevel=4).astimezone(UTC)


# -- loading ---------------------------------------------------------------------------------

_FRAME_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


def _frame_path(root: Path, name: object) -> Path:
    """``root/<name>.parquet``, refusing any name that could point outside ``root``."""
    if not isinstance(name, str) or not _FRAME_NAME.fullmatch(name):
        raise SnapshotError(f"snapshot {root}: {name!r} is not a frame name")
    return root / f"{name}.parquet"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_snapshot(path: str | Path) -> Window:
    """Load a snapshot written by :meth:`Window.save`; needs no credentials.

    Every frame is checked against the manifest (row count and SHA-256) before it is
    returned; a damaged or altered snapshot raises :class:`SnapshotError`. Snapshots of
    format version 1 (no checksums) still load.
    """
    root = Path(path)
    meta = _read_manifest(root)
    version = meta.get("snapshot_version")
    if version not in (1, SNAPSHOT_VERSION) or isinstance(version, bool):
        raise SnapshotError(f"{root}: unsupported snapshot version {version!r}")
    try:
        spec = WindowSpec.from_json(meta["spec"])
        long = meta["long"]
        checks = meta["frames"] if version >= 2 else None
        if not isinstance(long, list) or not all(isinstance(n, str) for n in long):
            raise TypeError("'long' must be a list of frame names")
        if not (checks is None or isinstance(checks, dict)):
            raise TypeError("'frames' must be an object")
    except (LookupError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise SnapshotError(f"{root / 'window.json'} is malformed: {exc!r}") from None
    names = ["main", "errors", "units", *long]
    if checks is not None and set(checks) != set(names):
        raise SnapshotError(
            f"{root / 'window.json'}: frames listed {sorted(map(str, checks))} but the "
            f"snapshot has {sorted(names)}"
        )
    frames = {name: _read_frame(root, name, checks) for name in names}
    return Window(spec=spec, main=frames.pop("main"), errors=frames.pop("errors"),
                  units=frames.pop("units"), long=frames)


def _read_manifest(root: Path) -> dict[str, Any]:
    try:
        meta = json.loads((root / "window.json").read_text())
    except FileNotFoundError:
        raise SnapshotError(f"{root} is not a tu-analytics snapshot (no window.json)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SnapshotError(f"could not read {root / 'window.json'}: {exc}") from exc
    if not isinstance(meta, dict):
        raise SnapshotError(f"{root / 'window.json'} is malformed: not a JSON object")
    return meta


def _read_frame(root: Path, name: object, checks: dict[str, Any] | None) -> pl.DataFrame:
    file = _frame_path(root, name)
    try:
        if file.resolve().parent != root.resolve():  # a symlink out of the snapshot
            raise SnapshotError(f"snapshot {root}: {file.name} points outside the snapshot")
        expected = checks[str(name)] if checks is not None else None
        if expected is not None:
            if not isinstance(expected, dict):
                raise SnapshotError(f"{root / 'window.json'}: entry for {name!r} is malformed")
            _verify(file, "sha256", expected.get("sha256"), _sha256(file))
        df = pl.read_parquet(file)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise SnapshotError(f"could not read {file.name} from {root}: {exc}") from exc
    if expected is not None:
        _verify(file, "rows", expected.get("rows"), df.height)
    return df


def _verify(file: Path, check: str, expected: object, found: object) -> None:
    if expected != found or isinstance(expected, bool):
        raise SnapshotIntegrityError(file, check, expected, found)
