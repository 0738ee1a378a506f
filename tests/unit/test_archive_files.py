"""The local fast append: a batch split by day without a gather, files without the columns
that hold no value, and readers (scan_archive, deltalake, compaction) seeing those as null."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
from deltalake import DeltaTable
from polars.testing import assert_frame_equal

from tu_analytics._decode import ERRORS_SCHEMA
from tu_analytics.archive import _files, compact
from tu_analytics.archive import _layout as L
from tu_analytics.archive._store import Store, with_added
from tu_analytics.archive.reader import scan_archive

TS = pl.Datetime("ms", "UTC")


def test_split_by_day_keeps_row_order_in_and_out_of_time_order() -> None:
    days = [1, 1, 2, 2, 1, 3, 3, 2, 1]
    df = pl.DataFrame({"offset": range(len(days)),
                       "kafka_date": [date(2026, 1, d) for d in days]})
    want = {k[0]: v.drop("kafka_date") for k, v in
            df.partition_by("kafka_date", as_dict=True, maintain_order=True).items()}
    for limit in (512, 2):  # slices of the runs, and the gather when runs are many
        _files._MAX_RUNS = limit
        try:
            got = _files.split(df, "kafka_date")
        finally:
            _files._MAX_RUNS = 512
        assert [v for v, _ in got] == list(want)
        for value, part in got:
            assert_frame_equal(part, want[value])


def test_files_leave_out_empty_columns_that_readers_and_compaction_read_as_null(
        tmp_path: Path) -> None:
    uri = str(tmp_path / "arch")
    main = pl.DataFrame(schema={"partition": pl.Int32, "offset": pl.Int64,
                                "kafka_timestamp": TS, "schema_id": pl.Int32,
                                "MachineId": pl.String, "FuelLevel": pl.Float64})
    store = Store.create_or_open(uri, "t", "insights", {
        L.MAIN: main, L.ERRORS: pl.DataFrame(schema=ERRORS_SCHEMA)})
    t = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
    rows = [(0, t, None), (1, t + 1, None), (2, t + 2, 40.0)]
    for i, (off, ts, fuel) in enumerate(rows):
        batch = pl.DataFrame({"partition": [0], "offset": [off], "kafka_timestamp": [ts],
                              "schema_id": [1], "MachineId": ["m"], "FuelLevel": [fuel]},
                             schema=main.schema)
        store.commit({L.MAIN: with_added(batch, "kafka")}, {0: i or None}, {0: i + 1})
    files = sorted((tmp_path / "arch" / "main").rglob("*.parquet"),
                   key=lambda f: f.stat().st_mtime_ns)
    assert [("FuelLevel" in pq.read_schema(f).names) for f in files] == [False, False, True]
    before = scan_archive(uri).sort("offset").collect()
    assert before["FuelLevel"].to_list() == [None, None, 40.0]
    fuel = DeltaTable(f"{uri}/main").to_pyarrow_table().sort_by("offset")["FuelLevel"]
    assert fuel.to_pylist() == [None, None, 40.0]
    compact(uri, retention_hours=1)
    assert_frame_equal(scan_archive(uri).sort("offset").collect(), before)
