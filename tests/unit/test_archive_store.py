"""The archive's Delta store and planning, without Kafka: exactly-once commits, recovery of
rows a crash left, fencing of a second writer, schema evolution, refusals."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable
from polars.testing import assert_frame_equal

from tu_analytics.archive import _layout as L
from tu_analytics.archive._plan import Gap, gaps_frame, late_gaps, plan_batch
from tu_analytics.archive._store import Store, with_added
from tu_analytics.archive.reader import scan_archive
from tu_analytics.errors import ArchiveConflictError, ArchiveError, ArchiveSchemaError

TS = pl.Datetime("ms", "UTC")


def _main(rows: list[tuple[int | None, int | None, int]], **extra: list[object]) -> pl.DataFrame:
    df = pl.DataFrame(
        {"partition": [r[0] for r in rows], "offset": [r[1] for r in rows],
         "kafka_timestamp": [r[2] for r in rows], "schema_id": [1] * len(rows),
         "MachineId": [f"m{r[1]}" for r in rows], **extra},
        schema_overrides={"partition": pl.Int32, "offset": pl.Int64, "kafka_timestamp": TS,
                          "schema_id": pl.Int32, "MachineId": pl.String},
    )
    return df


def _long(main: pl.DataFrame) -> pl.DataFrame:
    return main.select("partition", "offset", "kafka_timestamp", "schema_id", "MachineId",
                       pl.lit("F1", dtype=pl.String).alias("CodeIdentifier"))


def _errors() -> pl.DataFrame:
    from tu_analytics._decode import ERRORS_SCHEMA

    return pl.DataFrame(schema=ERRORS_SCHEMA)


def _store(tmp_path: Path, topic: str = "t1") -> Store:
    main = _main([])
    frames = {L.MAIN: main, "fault_codes": _long(main), L.ERRORS: _errors()}
    return Store.create_or_open(str(tmp_path / "arch"), topic, "insights", frames)


def _batch(rows: list[tuple[int | None, int | None, int]], source: str = "kafka",
           gaps: list[Gap] | None = None) -> dict[str, pl.DataFrame]:
    main = _main(rows)
    return {L.MAIN: with_added(main, source), "fault_codes": with_added(_long(main), source),
            L.ERRORS: with_added(_errors(), source), L.GAPS: gaps_frame(gaps or [])}


def test_commit_sets_app_id_watermarks_read_by_plain_deltalake(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.commit(_batch([(0, 0, 1000), (0, 1, 2000), (1, 0, 1500)]), {0: None, 1: None},
                 {0: 2, 1: 1})
    dt = DeltaTable(str(tmp_path / "arch" / "main"))
    aid = store.identity.archive_id
    assert dt.transaction_version(f"tu-archive/{aid}/t1/0") == 2
    assert dt.transaction_version(f"tu-archive/{aid}/t1/1") == 1
    assert dt.metadata().partition_columns == ["kafka_date"]
    main = scan_archive(str(tmp_path / "arch")).collect()
    assert sorted(zip(main["partition"], main["offset"], strict=True)) == [(0, 0), (0, 1), (1, 0)]
    assert main.schema["kafka_timestamp"] == TS


def test_crash_between_writes_leaves_invisible_rows_removed_next_run(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.commit(_batch([(0, 0, 1000)]), {0: None}, {0: 1})

    def crash() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.commit(_batch([(0, 1, 2000), (0, 2, 2100)]), {0: 1}, {0: 3}, before_main=crash)
    raw = pl.read_delta(str(tmp_path / "arch" / "fault_codes"))
    assert raw.height == 3  # the orphans are in the table ...
    seen = scan_archive(str(tmp_path / "arch"), table="fault_codes").collect()
    assert seen["offset"].to_list() == [0]  # ... but not visible to the project's readers
    assert store.recover([0], lambda m: None) == 3  # fault_codes, errors, gaps
    assert pl.read_delta(str(tmp_path / "arch" / "fault_codes"))["offset"].to_list() == [0]
    store.commit(_batch([(0, 1, 2000), (0, 2, 2100)]), {0: 1}, {0: 3})
    seen = scan_archive(str(tmp_path / "arch"), table="fault_codes").collect()
    assert sorted(seen["offset"].to_list()) == [0, 1, 2]
    assert store.recover([0], lambda m: None) == 0


def test_second_writer_planned_from_the_same_watermark_is_refused(tmp_path: Path) -> None:
    a, b = _store(tmp_path), Store.open(str(tmp_path / "arch"), "t1")
    a.commit(_batch([(0, 0, 1000)]), {0: None}, {0: 1})
    with pytest.raises(ArchiveConflictError, match="another archiver"):
        b.commit(_batch([(0, 0, 1000)]), {0: None}, {0: 1})
    assert pl.read_delta(str(tmp_path / "arch" / "main")).height == 1


def test_fence_stops_an_archiver_whose_main_commit_is_still_in_flight(tmp_path: Path) -> None:
    store = _store(tmp_path)
    other = Store.open(str(tmp_path / "arch"), "t1")

    def meanwhile() -> None:  # another run recovers while this one is between its writes
        other.recover([0], lambda m: None)

    with pytest.raises(ArchiveConflictError):
        store.commit(_batch([(0, 0, 1000)]), {0: None}, {0: 1}, before_main=meanwhile)
    assert pl.read_delta(str(tmp_path / "arch" / "fault_codes")).height == 0
    assert pl.read_delta(str(tmp_path / "arch" / "main")).height == 0


def test_new_columns_merge_and_incompatible_types_write_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.commit(_batch([(0, 0, 1000)]), {0: None}, {0: 1})
    batch = _batch([(0, 1, 2000)])
    batch[L.MAIN] = batch[L.MAIN].with_columns(RedStopLamp=pl.lit(True))
    store.commit(batch, {0: 1}, {0: 2})
    main = scan_archive(str(tmp_path / "arch")).sort("offset").collect()
    assert main["RedStopLamp"].to_list() == [None, True]
    bad = _batch([(0, 2, 3000)])
    bad[L.MAIN] = bad[L.MAIN].with_columns(RedStopLamp=pl.lit("on"))
    versions = {n: DeltaTable(str(tmp_path / "arch" / n)).version()
                for n in ("main", "fault_codes", "errors", "gaps")}
    with pytest.raises(ArchiveSchemaError, match="RedStopLamp: Boolean in the archive, String"):
        store.commit(bad, {0: 2}, {0: 3})
    assert versions == {n: DeltaTable(str(tmp_path / "arch" / n)).version() for n in versions}


def test_refuses_other_topics_plain_delta_tables_and_foreign_directories(tmp_path: Path) -> None:
    _store(tmp_path)
    with pytest.raises(ArchiveError, match="belongs to topic 't1'"):
        _store(tmp_path, topic="t2")
    with pytest.raises(ArchiveError, match="belongs to topic 't1'"):
        Store.open(str(tmp_path / "arch"), "t2")
    with pytest.raises(ArchiveError, match="is a Delta table itself"):
        Store.open(str(tmp_path / "arch" / "main"))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("x")
    with pytest.raises(ArchiveError, match="not a tu-analytics archive"):
        Store.open(str(tmp_path / "junk"))
    main = _main([])
    with pytest.raises(ArchiveError, match="non-empty directory"):
        Store.create_or_open(str(tmp_path / "junk"), "t1", "insights",
                             {L.MAIN: main, "fault_codes": _long(main), L.ERRORS: _errors()})
    assert sorted(p.name for p in (tmp_path / "junk").iterdir()) == ["notes.txt"]


def test_backfill_rows_are_visible_below_the_backfill_day_only(tmp_path: Path) -> None:
    store = _store(tmp_path)
    day1 = int(datetime(2026, 1, 1, 12, tzinfo=UTC).timestamp() * 1000)
    store.commit(_batch([(None, None, day1)], "backfill"), {L.BACKFILL: None},
                 {L.BACKFILL: L.day_number(datetime(2026, 1, 2).date())})

    def crash() -> None:
        raise RuntimeError("killed between the writes")

    with pytest.raises(RuntimeError):
        store.commit(_batch([(None, None, day1 + 86_400_000)], "backfill"),
                     {L.BACKFILL: L.day_number(datetime(2026, 1, 2).date())},
                     {L.BACKFILL: L.day_number(datetime(2026, 1, 3).date())}, before_main=crash)
    long = scan_archive(str(tmp_path / "arch"), table="fault_codes").collect()
    assert long["kafka_timestamp"].dt.day().to_list() == [1]
    main = scan_archive(str(tmp_path / "arch")).collect()
    assert main["source"].to_list() == ["backfill"]
    assert main["partition"].to_list() == [None]


def test_plan_batch_records_gaps_and_caps_records() -> None:
    batch = plan_batch({0: 5, 1: None, 2: 40}, {0: (10, 100), 1: (3, 50), 2: (0, 45)},
                       {}, max_records=30)
    assert batch.gaps == [Gap(0, 5, 10)]
    assert [(r.partition, r.start, r.end) for r in batch.ranges] == [
        (0, 10, 20), (1, 3, 13), (2, 40, 45)]
    late_gaps(batch, {0: 15, 1: 3}, {0: 12, 1: 3, 2: 0})
    assert batch.gaps == [Gap(0, 5, 10), Gap(0, 10, 12)]


def test_visibility_predicate_on_offsets_and_days() -> None:
    df = pl.DataFrame({"partition": [0, 0, 1, None, None], "offset": [4, 5, 0, None, None],
                       "kafka_date": [datetime(2026, 1, d).date() for d in (1, 1, 1, 1, 2)]},
                      schema_overrides={"partition": pl.Int32})
    wm: dict[L.Key, int | None] = {0: 5, 1: None,
                                   L.BACKFILL: L.day_number(datetime(2026, 1, 2).date())}
    assert df.filter(L.visible(wm, "fault_codes"))["offset"].to_list() == [4, None]
    assert L.orphans(0, 5, "gaps") == '"partition" = 0 AND "start" >= 5'
    assert L.orphans(L.BACKFILL, None, "errors") == '"partition" IS NULL'


def test_compact_keeps_rows_and_watermarks_and_applies_the_retention_policy(
        tmp_path: Path) -> None:
    from tu_analytics.archive import compact

    store = _store(tmp_path)
    old = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1000)
    now = int(datetime.now(UTC).timestamp() * 1000)
    planned: int | None = None
    for i in range(6):
        store.commit(_batch([(0, 2 * i, old), (0, 2 * i + 1, now)]), {0: planned}, {0: 2 * i + 2})
        planned = 2 * i + 2
    before = scan_archive(str(tmp_path / "arch")).sort("offset").collect()
    lines = compact(str(tmp_path / "arch"), retention_hours=1)
    assert lines[0].startswith("main: ")
    after = scan_archive(str(tmp_path / "arch")).sort("offset").collect()
    assert_frame_equal(after, before)
    assert store.committed()[1] == {0: 12}
    compact(str(tmp_path / "arch"), retention_hours=1, keep_days=30)
    kept = scan_archive(str(tmp_path / "arch")).collect()
    assert sorted(kept["offset"].to_list()) == [1, 3, 5, 7, 9, 11]
    assert store.committed()[1] == {0: 12}
    with pytest.raises(ArchiveError, match="at least"):
        compact(str(tmp_path / "arch"), retention_hours=0)


def test_cli_registers_archive_commands() -> None:
    from tu_analytics.cli import build_parser

    p = build_parser()
    args = p.parse_args(["archive", "run", "data/a", "--once", "--every", "5",
                         "--max-records", "100"])
    assert (args.uri, args.once, args.every, args.max_records) == ("data/a", True, 5.0, 100)
    assert p.parse_args(["archive", "status", "data/a", "--json"]).json is True
    assert p.parse_args(["archive", "compact", "data/a"]).retention_hours == 168.0


def test_an_archive_whose_watermarks_could_expire_is_refused(tmp_path: Path) -> None:
    _store(tmp_path)
    DeltaTable(str(tmp_path / "arch" / "main")).alter.set_table_properties(
        {"delta.setTransactionRetentionDuration": "interval 1 days"})
    with pytest.raises(ArchiveError, match="setTransactionRetentionDuration"):
        Store.open(str(tmp_path / "arch"), "t1")
