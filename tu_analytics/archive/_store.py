"""The archive's Delta tables: open or create, watermarks, recovery, the two-step commit.

All writes go through ``DeltaTable`` objects loaded just before the check they rely on, so
delta-rs's conflict check (an app id committed by someone else since our snapshot) fences a
second archiver: it fails with ``CommitFailedError``, which becomes
:class:`ArchiveConflictError` here.

Creation takes the same fence: a Delta create is the put-if-absent of version 0, made with
no commit retry (delta-rs would retry a lost create as version 1, replacing the winner's
metadata and with it the archive id, so two archivers would append under different app
ids). ``main`` is created first; of two archivers creating one archive at once, exactly one
creates each table and the other adopts it, taking the archive's identity from ``main``.
Their first commits then meet like any others: one of them stops with "another archiver".
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

from ..errors import ArchiveConflictError, ArchiveError, ArchiveSchemaError
from . import _files
from . import _layout as L
from ._layout import Identity, Key

T = TypeVar("T")


def _deltalake() -> Any:
    try:
        import deltalake
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ArchiveError("the archive needs `deltalake` (pip install deltalake)") from exc
    return deltalake


class Store:
    """One archive: ``URI/main`` plus its other tables. ``identity`` is read from ``main``."""

    def __init__(self, uri: str, identity: Identity,
                 storage_options: dict[str, str] | None = None) -> None:
        self.uri, self.identity = uri, identity
        self.storage_options = storage_options
        self._loaded: dict[str, Any] = {}

    @property
    def tables(self) -> list[str]:
        """The tables besides ``main``, in the order every batch writes them."""
        return list(self.identity.tables)

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, uri: str, topic: str | None = None,
             storage_options: dict[str, str] | None = None) -> Store:
        """An existing archive; ``topic`` (when given) must be the one it archives."""
        _refuse_plain_table(uri, storage_options)
        main = _load(L.table_uri(uri, L.MAIN), storage_options)
        if main is None and _in_creation(L.table_uri(uri, L.MAIN)):
            raise ArchiveError(f"another archiver is creating the archive at {uri} ({L.MAIN} "
                               "has no commit yet); try again in a moment (if its creator "
                               "stopped, the next `tu-analytics archive run` completes it)",
                               uri=uri)
        if main is None:
            raise ArchiveError(f"{uri} is not a tu-analytics archive (no Delta table at "
                               f"{L.table_uri(uri, L.MAIN)}); create one with "
                               "`tu-analytics archive run`", uri=uri)
        ident = _identity(main, uri)
        _check_topic(ident, topic, uri)
        return cls(uri, ident, storage_options)

    @classmethod
    def create_or_open(cls, uri: str, topic: str, fmt: str, frames: Mapping[str, pl.DataFrame],
                       storage_options: dict[str, str] | None = None) -> Store:
        """The archive of ``topic`` at ``uri``, creating missing tables from ``frames``'
        (zero-row) schemas. ``main`` is created first: its identity is the archive's, also
        when another archiver created it a moment earlier (see the module's docstring)."""
        _refuse_plain_table(uri, storage_options)
        _refuse_foreign_directory(uri)
        tables = (*(n for n in frames if n != L.MAIN), L.GAPS)
        store = cls(uri, Identity(topic, uuid.uuid4().hex[:12], fmt, tables), storage_options)
        store._create(L.MAIN, frames[L.MAIN])
        store.identity = _identity(store.load(L.MAIN), uri)  # the winner's, if not ours
        _check_topic(store.identity, topic, uri)
        for name in store.tables:
            df = pl.DataFrame(schema=L.GAPS_SCHEMA) if name == L.GAPS else frames.get(name)
            store._create(name, df)
            store._check_member(name)
        return store

    def _create(self, name: str, frame: pl.DataFrame | None) -> None:
        """Create table ``name`` unless it exists; a lost race leaves the other's table."""
        dl = _deltalake()
        target = L.table_uri(self.uri, name)
        if _load(target, self.storage_options) is not None:
            return
        if frame is None:
            raise ArchiveError(f"the archive at {self.uri} lists a table {name!r} that this "
                               "topic's schemas do not have", uri=self.uri)
        df = frame.clear() if name == L.GAPS else with_added(frame.clear(), "kafka")
        try:
            dl.write_deltalake(
                target, _arrow(df), mode="error", storage_options=self.storage_options,
                partition_by=None if name == L.GAPS else [L.DATE_COL],
                name=f"tu-archive {name}", description=self.identity.describe(name),
                commit_properties=dl.CommitProperties(max_commit_retries=0))
        except dl.exceptions.CommitFailedError:
            return  # version 0 was written by another archiver first: its table is checked
        except dl.exceptions.DeltaError as exc:
            if "already exists" in str(exc):
                return  # created by another archiver meanwhile: its identity is checked next
            raise _io_error(exc, self.uri, f"create {target}") from exc
        except OSError as exc:
            raise _io_error(exc, self.uri, f"create {target}") from exc

    def _check_member(self, name: str) -> None:
        """Table ``name`` belongs to this archive (the topic and archive id of ``main``)."""
        ident = _identity(self.load(name), self.uri)
        _check_topic(ident, self.identity.topic, self.uri)
        if ident.archive_id != self.identity.archive_id:
            raise ArchiveError(
                f"table {name!r} of the archive at {self.uri} belongs to archive "
                f"{ident.archive_id}, its {L.MAIN} table to {self.identity.archive_id}: the "
                "tables were not created together; archive into a new URI", uri=self.uri)

    # -- reading state ---------------------------------------------------------------------------

    def load(self, name: str) -> Any:
        """``name``'s latest snapshot. The object is kept and brought up to date with only
        the new log entries (a full load per batch grows with the log)."""
        dt = self._loaded.get(name)
        if dt is not None:
            try:
                dt.update_incremental()
            except (_deltalake().exceptions.DeltaError, OSError) as exc:
                raise _io_error(exc, self.uri, f"read {name}") from exc
            return dt
        dt = _load(L.table_uri(self.uri, name), self.storage_options)
        if dt is not None:
            self._loaded[name] = dt
        if dt is None and name in self.identity.tables:
            raise ArchiveError(f"the archive at {self.uri} has no table {name!r} yet: another "
                               "archiver is creating it, or its creation stopped (the next "
                               "`tu-analytics archive run` completes it)", uri=self.uri)
        if dt is None:
            raise ArchiveError(f"the archive at {self.uri} has no table {name!r}: it is "
                               "incomplete or not a tu-analytics archive", uri=self.uri)
        return dt

    def app(self, key: Key) -> str:
        return L.app_id(self.identity.archive_id, self.identity.topic, key)

    def watermarks(self, dt: Any, keys: Iterable[Key]) -> dict[Key, int | None]:
        """Stored versions of ``keys`` in ``dt``; -1 (written by recovery) reads as None."""
        out: dict[Key, int | None] = {}
        for k in keys:
            v = dt.transaction_version(self.app(k))
            out[k] = None if v is None or v < 0 else int(v)
        return out

    def keys(self, dt: Any) -> list[Key]:
        """Partitions with a stored watermark (0, 1, ... up to the first missing one), and
        ``backfill`` when set. Every commit states every partition's watermark."""
        keys: list[Key] = []
        while dt.transaction_version(self.app(len(keys))) is not None:
            keys.append(len(keys))
        if dt.transaction_version(self.app(L.BACKFILL)) is not None:
            keys.append(L.BACKFILL)
        return keys

    def committed(self) -> tuple[Any, dict[Key, int | None]]:
        main = self.load(L.MAIN)
        return main, self.watermarks(main, self.keys(main))

    # -- recovery ------------------------------------------------------------------------------

    def recover(self, keys: Iterable[Key], say: Callable[[str], None]) -> int:
        """Remove rows that ``main`` does not cover (a crash between the writes, or a losing
        archiver); first a fence commit on ``main`` so an archiver still in flight fails.
        Returns how many tables were cleaned."""
        keys = list(keys)
        main = self.load(L.MAIN)
        wm = self.watermarks(main, keys)
        stale = {}
        for name in self.tables:
            dt = self.load(name)
            theirs = self.watermarks(dt, keys)
            bad = [k for k in keys if theirs[k] != wm[k]]
            if bad:
                stale[name] = bad
        if not stale:
            return 0
        say(f"recovering: rows above main's watermarks in {', '.join(stale)} (an earlier run "
            "stopped between its writes); removing them")
        self._commit(main, L.MAIN, None, {})  # the fence
        for name, bad in stale.items():
            pred = " OR ".join(f"({L.orphans(k, wm[k], name)})" for k in bad)
            txns: dict[Key, int] = {k: _or_none(wm[k]) for k in bad}
            dt = self.load(name)
            self._guard(lambda dt=dt, pred=pred: dt.delete(pred),  # type: ignore[misc]
                        f"clean {name}")
            # A delete that matched nothing commits nothing: the watermarks go in their own.
            self._commit(self.load(name), name, None, txns)
        return len(stale)

    # -- writing -------------------------------------------------------------------------------

    def commit(self, frames: Mapping[str, pl.DataFrame], planned: Mapping[Key, int | None],
               new: Mapping[Key, int], before_main: Callable[[], None] | None = None) -> None:
        """Write every non-main table, then ``main`` with the new watermarks. Stops with
        :class:`ArchiveConflictError` when the stored watermarks are not ``planned`` (another
        archiver moved them) and with :class:`ArchiveSchemaError` before writing anything
        when a column's type changed incompatibly."""
        main = self.load(L.MAIN)
        self._expect(main, L.MAIN, planned)
        # ``main`` is not loaded again: its snapshot must stay the one checked above.
        ready = {name: conform(df, main if name == L.MAIN else self.load(name), name)
                 for name, df in frames.items()}
        for name in self.tables:
            dt = self.load(name)
            self._expect(dt, name, planned)
            self._commit(dt, name, ready.get(name), new)
        if before_main is not None:
            before_main()
        self._commit(main, L.MAIN, ready[L.MAIN], new)

    def _expect(self, dt: Any, name: str, planned: Mapping[Key, int | None]) -> None:
        got = self.watermarks(dt, planned)
        if got != dict(planned):
            moved = {k: (planned[k], got[k]) for k in planned if got[k] != planned[k]}
            raise ArchiveConflictError(
                f"another archiver is writing to {self.uri}: the watermarks of {name!r} moved "
                f"since this run planned ({_moves(moved)}); this archiver stops, nothing it "
                "read was committed", uri=self.uri)

    def _commit(self, dt: Any, name: str, df: pl.DataFrame | None,
                txns: Mapping[Key, int]) -> None:
        dl = _deltalake()
        data = df if df is not None else _empty_like(dt)
        all_txns: dict[Key, int] = dict(txns)
        if name == L.MAIN:
            n = dt.transaction_version(self.app(L.COMMITS)) or 0
            all_txns[L.COMMITS] = n + 1
        part = None if name == L.GAPS else L.DATE_COL
        root = _files.local_root(str(dt.table_uri))
        table = _polars_schema(dt)
        if root is not None and _files.fits(data, table):
            actions = self._guard(lambda: _files.add_actions(root, data, table, part),
                                  f"write {name}")
            self._guard(lambda: dt.create_write_transaction(
                actions, mode="append", schema=dt.schema(),
                partition_by=[part] if part else None,
                commit_properties=self._props(all_txns)), f"commit {name}")
            return
        self._guard(lambda: dl.write_deltalake(
            dt, _arrow(data), mode="append", schema_mode="merge",
            partition_by=[part] if part else None,
            storage_options=self.storage_options, commit_properties=self._props(all_txns),
        ), f"commit {name}")

    def _props(self, txns: Mapping[Key, int]) -> Any:
        dl = _deltalake()
        return dl.CommitProperties(app_transactions=[
            dl.Transaction(self.app(k), int(v)) for k, v in txns.items()])

    def _guard(self, fn: Callable[[], T], what: str) -> T:
        dl = _deltalake()
        try:
            return fn()
        except dl.exceptions.CommitFailedError as exc:
            raise ArchiveConflictError(
                f"another archiver committed to {self.uri} first ({what}: {exc}); this "
                "archiver stops, nothing it read was committed", uri=self.uri) from exc
        except (dl.exceptions.DeltaError, OSError, pl.exceptions.PolarsError) as exc:
            raise _io_error(exc, self.uri, what) from exc


# -- schema evolution ----------------------------------------------------------------------------


def conform(df: pl.DataFrame, dt: Any, name: str) -> pl.DataFrame:
    """``df`` cast to the table's types where they differ losslessly (time units, wider
    integers, typed nulls); new columns stay (schema merge). An incompatible change raises
    :class:`ArchiveSchemaError`."""
    table = _polars_schema(dt)
    casts: dict[str, pl.DataType] = {}
    bad: list[str] = []
    for col, dtype in df.schema.items():
        old = table.get(col)
        if old is None or old == dtype:
            continue
        if _compatible(dtype, old) or df[col].null_count() == df.height:
            casts[col] = old
        else:
            bad.append(f"{col}: {old} in the archive, {dtype} now")
    if bad:
        raise ArchiveSchemaError(
            f"the writer schema changed a column's type incompatibly for table {name!r} "
            f"({'; '.join(bad)}); nothing was written. Archive into a new URI, or rewrite "
            "the table with the new type", uri=str(dt.table_uri))
    return df.with_columns(pl.col(c).cast(t) for c, t in casts.items()) if casts else df


def _compatible(new: pl.DataType, old: pl.DataType) -> bool:
    if isinstance(new, pl.Datetime) and isinstance(old, pl.Datetime):
        return new.time_zone == old.time_zone
    if new.is_integer() and old.is_integer():
        return new.is_signed_integer() == old.is_signed_integer() and _bits(new) <= _bits(old)
    if new.is_float() and old.is_float():
        return _bits(new) <= _bits(old)
    return new == pl.Null()


def _bits(t: pl.DataType) -> int:
    sizes: dict[type[pl.DataType], int] = {
        pl.Int8: 8, pl.Int16: 16, pl.Int32: 32, pl.Int64: 64, pl.UInt8: 8, pl.UInt16: 16,
        pl.UInt32: 32, pl.UInt64: 64, pl.Float32: 32, pl.Float64: 64}
    return sizes.get(type(t), 128)


def _polars_schema(dt: Any) -> dict[str, pl.DataType]:
    return dict(pl.scan_delta(dt).collect_schema())


def with_added(df: pl.DataFrame, source: str) -> pl.DataFrame:
    """``df`` with the archive's own columns: ``kafka_date`` (partitioning) and ``source``
    (``kafka`` or ``backfill``). A long frame with a field of that name (Delta names are
    case-insensitive: ``advanced_sensors.Source``) goes without; its null ``partition``
    tells backfilled rows there."""
    date = pl.col("kafka_timestamp").dt.date().alias(L.DATE_COL)
    if L.SOURCE_COL in {c.lower() for c in df.columns}:
        return df.with_columns(date)
    return df.with_columns(date, pl.lit(source, dtype=pl.String).alias(L.SOURCE_COL))


# -- helpers ---------------------------------------------------------------------------------------


def _arrow(df: pl.DataFrame) -> Any:
    return df.to_arrow(compat_level=pl.CompatLevel.oldest())


def _empty_like(dt: Any) -> pl.DataFrame:
    return pl.DataFrame(schema=_polars_schema(dt))


def _load(uri: str, storage_options: dict[str, str] | None) -> Any:
    dl = _deltalake()
    try:
        return dl.DeltaTable(uri, storage_options=storage_options)
    except dl.exceptions.TableNotFoundError:
        return None
    except (dl.exceptions.DeltaError, OSError) as exc:
        raise _io_error(exc, uri, "open") from exc


def _identity(dt: Any, uri: str) -> Identity:
    if "delta.setTransactionRetentionDuration" in (dt.metadata().configuration or {}):
        # Expiring app transactions would forget watermarks: the next run would re-append.
        raise ArchiveError(f"{dt.table_uri} sets delta.setTransactionRetentionDuration, which "
                           "expires the archive's watermarks; unset it before archiving",
                           uri=uri)
    ident = Identity.parse(dt.metadata().description)
    if ident is None:
        raise ArchiveError(f"{dt.table_uri} is a Delta table, but not one of a tu-analytics "
                           "archive (no archive identity in its description)", uri=uri)
    return ident


def _check_topic(ident: Identity, topic: str | None, uri: str) -> None:
    if topic is not None and ident.topic != topic:
        raise ArchiveError(
            f"the archive at {uri} belongs to topic {ident.topic!r} (archive id "
            f"{ident.archive_id}), not {topic!r}; use another URI for this topic", uri=uri)


def _refuse_plain_table(uri: str, storage_options: dict[str, str] | None) -> None:
    if _load(uri, storage_options) is not None:
        raise ArchiveError(f"{uri} is a Delta table itself; an archive is a directory holding "
                           "main/, errors/, ... — pass its parent or a new path", uri=uri)


def _refuse_foreign_directory(uri: str) -> None:
    """A local directory with other things in it and no ``main`` is not ours to fill."""
    if "://" in uri and not uri.startswith("file://"):
        return
    root = Path(uri.removeprefix("file://"))
    try:
        _check_local(root, uri)
    except PermissionError as exc:
        raise _io_error(exc, uri, "open") from exc


def _check_local(root: Path, uri: str) -> None:
    if root.is_file():
        raise ArchiveError(f"{uri} is a file, not an archive directory", uri=uri)
    main = root / L.MAIN
    # An archiver creating ``main`` makes the directory, then ``_delta_log`` in it (a create
    # writes no data file): a ``main`` holding nothing else is one being created.
    if main.is_file() or (main.is_dir() and not (main / "_delta_log").is_dir()
                          and any(p.name != "_delta_log" for p in main.iterdir())):
        raise ArchiveError(f"{uri} is not a tu-analytics archive: {main} exists but is not a "
                           "Delta table; pass an empty or new path", uri=uri)
    if root.is_dir() and not main.exists() and any(p.name != L.MAIN for p in root.iterdir()):
        raise ArchiveError(f"{uri} is a non-empty directory that is not a tu-analytics "
                           "archive (no main/ table); pass an empty or new path", uri=uri)


def _in_creation(table: str) -> bool:
    """A local table directory with a ``_delta_log`` but no commit: being created (or its
    creator stopped before the commit). Object stores cannot tell this from no table."""
    root = _files.local_root(table)
    return root is not None and (root / "_delta_log").is_dir()


def _io_error(exc: BaseException, uri: str, what: str) -> ArchiveError:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    hint = ""
    low = str(exc).lower()
    if "permission denied" in low or isinstance(exc, PermissionError):
        hint = " (no write permission)"
    elif "no space left" in low or "quota" in low:
        hint = " (the disk is full)"
    return ArchiveError(f"could not {what} in the archive at {uri}{hint}: {text}; nothing "
                        "half-written is visible to tu-analytics' readers", uri=uri)


def _or_none(v: int | None) -> int:
    """-1 stands for "no watermark" (app transaction versions cannot be removed)."""
    return -1 if v is None else v


def _moves(moved: Mapping[Key, tuple[int | None, int | None]]) -> str:
    return ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in list(moved.items())[:4])
