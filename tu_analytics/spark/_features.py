"""The feature table on Spark: the project's own ``feature_table``, one machine per group.

Machines never interact once the bucket grid is fixed (``features.table``: with ``end`` given,
the table built machine group by machine group equals the whole-frame table), so each Spark
group runs :func:`tu_analytics.features.feature_table` on one machine's rows with the same
explicit ``start``/``end`` and the union of the groups is the Polars table of the whole input.
The output schema is the Polars one, derived on the driver from a lazy plan over zero rows.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import polars as pl

from ..counters import duration_string
from ..features.table import feature_site_anchors
from ..features.table import feature_table as polars_feature_table
from ..sites import merge_anchors
from ._schema import conform, spark_schema, to_batches

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame

_M = "MachineId"


@dataclass(frozen=True)
class _Grouped:
    """What every group's task runs (picklable: plain values and Polars schemas)."""

    every: str
    allowed_latency: str | None
    site_radius_m: float
    start: datetime | None
    end: datetime | None
    main_schema: pl.Schema
    fault_schema: pl.Schema | None
    out_schema: pl.Schema
    #: The whole input's site anchors (``feature_site_anchors``); None: each group's own.
    anchors: pl.DataFrame | None = None

    def table(self, main: pl.DataFrame, faults: pl.DataFrame | None) -> pl.DataFrame:
        built = polars_feature_table(
            main, every=self.every, fault_codes=faults, allowed_latency=self.allowed_latency,
            site_radius_m=self.site_radius_m, start=self.start, end=self.end,
            site_anchors=self.anchors)
        assert isinstance(built.frame, pl.DataFrame)
        return built.frame

    def site_anchors(self, main: pa.Table, faults: pa.Table | None) -> pa.Table:
        """One group's site anchors, times as microseconds (no session time zone between)."""
        anchors = feature_site_anchors(
            _frame(main, self.main_schema), every=self.every,
            allowed_latency=self.allowed_latency)
        import pyarrow as pa

        table = anchors.select("cy", "cx", "City", pl.col("first").dt.epoch("us").alias("first_us"))
        return table.to_arrow().cast(pa.schema([
            ("cy", pa.int64()), ("cx", pa.int64()), ("City", pa.string()),
            ("first_us", pa.int64())]))

    def _table_of(self, main: pa.Table, faults: pa.Table | None) -> pl.DataFrame:
        fault_frame = None if faults is None else _frame(faults, self.fault_schema or pl.Schema())
        return self.table(_frame(main, self.main_schema), fault_frame)

    def arrow(self, main: pa.Table, faults: pa.Table | None) -> pa.Table:
        """The table of one group's Arrow rows, as Arrow in the Spark schema."""
        return self._arrow(self._table_of(main, faults))

    def last_bucket(self, main: pa.Table, faults: pa.Table | None) -> pa.Table:
        """This group's last bucket with data (the grid's end when ``end`` is not given)."""
        import pyarrow as pa

        last = self._table_of(main, faults).get_column("bucket_start").max()
        return pa.table({"last": pa.array([last], pa.timestamp("us", "UTC"))})

    def _arrow(self, frame: pl.DataFrame) -> pa.Table:
        import pyarrow as pa

        schema = spark_schema(self.out_schema)
        batches = to_batches(conform(frame, self.out_schema), schema)
        if batches:
            return pa.Table.from_batches(batches)
        from pyspark.sql.pandas.types import to_arrow_schema

        return to_arrow_schema(schema, timezone="UTC").empty_table()


def _udf(method: Callable[[pa.Table, pa.Table | None], pa.Table], *, cogrouped: bool
         ) -> Callable[..., pa.Table]:
    """``method`` as a grouped (or co-grouped) Arrow UDF. A lambda, because Spark counts a
    UDF's arguments (``self`` of a bound method included) to decide whether to pass the group
    key, and reads its annotations (a ``partial`` has them, unresolvable) to infer its kind."""
    if cogrouped:
        return lambda main, faults: method(main, faults)
    return lambda main: method(main, None)


def _frame(table: pa.Table, schema: pl.Schema) -> pl.DataFrame:
    """A group's Arrow rows as Polars, times in UTC whatever the session's time zone (the
    instants are the same; bucket arithmetic must not see a local zone)."""
    frame = pl.from_arrow(table) if table.num_rows else pl.DataFrame(schema=schema)
    assert isinstance(frame, pl.DataFrame)
    return frame.with_columns(
        pl.col(n).dt.convert_time_zone("UTC") for n, t in frame.schema.items()
        if isinstance(t, pl.Datetime) and t.time_zone is not None)


def _polars_schema(df: DataFrame) -> pl.Schema:
    """The Polars schema of a Spark DataFrame's Arrow form."""
    from pyspark.sql.pandas.types import to_arrow_schema

    empty = pl.from_arrow(to_arrow_schema(df.schema, timezone="UTC").empty_table())
    assert isinstance(empty, pl.DataFrame)
    return _frame(empty.to_arrow(), empty.schema).schema


def _out_schema(task: _Grouped) -> pl.Schema:
    """The Polars schema of the feature table for these inputs, from a plan over zero rows."""
    main = pl.LazyFrame(schema=task.main_schema)
    faults = None if task.fault_schema is None else pl.LazyFrame(schema=task.fault_schema)
    end = task.end or datetime(1970, 1, 2, tzinfo=UTC)  # any end: only the schema is used
    built = polars_feature_table(
        main, every=task.every, fault_codes=faults, allowed_latency=task.allowed_latency,
        site_radius_m=task.site_radius_m, start=task.start, end=end, lazy=True)
    return built.frame.collect_schema()


@contextmanager
def arrow_udfs() -> Iterator[None]:
    """Around ``applyInArrow``/``mapInArrow``: PySpark checks the pandas version even for Arrow
    UDFs and warns about pandas 3, which these functions never use."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas",
                                category=FutureWarning)
        yield


def feature_table(
    df: DataFrame,
    every: str | timedelta = "1h",
    *,
    fault_codes: DataFrame | None = None,
    allowed_latency: str | timedelta | None = None,
    site_radius_m: float = 100.0,
    start: datetime | None = None,
    end: datetime | None = None,
) -> DataFrame:
    """:func:`tu_analytics.features.feature_table` of a Spark ``main`` frame (e.g. from
    :func:`tu_analytics.spark.window`), computed per ``MachineId`` with
    ``groupBy(...).applyInArrow``: the same rows, columns and values as the Polars table of
    the same records. ``fault_codes`` (the long fault frame) is co-grouped with ``df``.

    Without ``end`` the grid ends at the last bucket with data anywhere in the input, as in
    Polars; finding it costs one extra pass over the data, so pass ``end`` when known.
    The table's dictionary: ``tu_analytics.features.feature_dictionary(result.columns)``."""
    latency = allowed_latency
    if isinstance(latency, timedelta):
        latency = None if latency == timedelta(0) else duration_string(latency)
    task = _Grouped(
        every=duration_string(every), allowed_latency=latency, site_radius_m=site_radius_m,
        start=start, end=end, main_schema=_polars_schema(df),
        fault_schema=None if fault_codes is None else _polars_schema(fault_codes),
        out_schema=pl.Schema())
    if end is None:
        task = _with_end(task, df, fault_codes)
    task = replace(task, out_schema=_out_schema(task), anchors=_site_anchors(task, df))
    schema = spark_schema(task.out_schema)
    with arrow_udfs():
        if fault_codes is None:
            return df.groupBy(_M).applyInArrow(_udf(task.arrow, cogrouped=False), schema)
        return df.groupBy(_M).cogroup(fault_codes.groupBy(_M)).applyInArrow(
            _udf(task.arrow, cogrouped=True), schema)


def _site_anchors(task: _Grouped, df: DataFrame) -> pl.DataFrame:
    """The whole input's site anchors: each machine's (Polars, per group), merged by a Spark
    aggregation and collected (a few rows per ~1 km cell and City name)."""
    from pyspark.sql import functions as F

    schema = "cy long, cx long, City string, first_us long"
    with arrow_udfs():
        parts = df.groupBy(_M).applyInArrow(_udf(task.site_anchors, cogrouped=False), schema)
    merged = parts.groupBy("cy", "cx", "City").agg(F.min("first_us").alias("first_us"))
    table = pl.from_arrow(merged.toArrow())
    assert isinstance(table, pl.DataFrame)
    first = pl.from_epoch("first_us", "us").dt.replace_time_zone("UTC")
    return merge_anchors(table.with_columns(first.alias("first")))


def _with_end(task: _Grouped, df: DataFrame, fault_codes: DataFrame | None) -> _Grouped:
    """``task`` with the grid's end: one past the last bucket any machine has data in."""
    from pyspark.sql import functions as F

    schema = "last timestamp"
    with arrow_udfs():
        if fault_codes is None:
            lasts = df.groupBy(_M).applyInArrow(_udf(task.last_bucket, cogrouped=False), schema)
        else:
            lasts = df.groupBy(_M).cogroup(fault_codes.groupBy(_M)).applyInArrow(
                _udf(task.last_bucket, cogrouped=True), schema)
    # As microseconds since the epoch: no session time zone between Spark and Polars.
    micros: Any = lasts.agg(F.unix_micros(F.max("last")).alias("us")).collect()[0]["us"]
    if micros is None:  # no data at all: any grid gives no rows
        return task
    last_start = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(micros))
    last = pl.Series([last_start]).dt.offset_by(task.every).item()
    return replace(task, end=last)
