"""``spark.read.format("trackunit")``: a Spark 4 Python Data Source over the project's own
planning and decoding. The driver plans (or takes the plan ``window()`` pinned); each task
reads one offset range and yields Arrow record batches with the frame's exact schema."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import polars as pl
from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition
from pyspark.sql.types import StructType

from ._plan import (
    DEFAULT_MAX_RECORDS_PER_TASK,
    Job,
    TaskRange,
    frame_schema,
    plan_job,
    settings_from,
    settings_options,
    window_bounds,
)
from ._schema import conform, spark_schema, to_batches
from ._task import read_range

NAME = "trackunit"


class TrackunitDataSource(DataSource):
    """Options: the settings ``connect()`` takes (``bootstrap_servers``, ``sasl_username``,
    ``sasl_password``, ``topic``, ``schema_registry_url``, ...), or ``format`` for the
    sandbox's topics; ``start``/``end`` or ``last``; ``machines`` (comma-separated);
    ``frame``; ``max_records_per_task``; ``lateness``. ``plan`` is set by ``window()``."""

    @classmethod
    def name(cls) -> str:
        return NAME

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self._settings = settings_options(dict(options))
        self._frame = str(options.get("frame") or "main")
        self._pl_schema: pl.Schema | None = None

    def _polars_schema(self) -> pl.Schema:
        if self._pl_schema is None:
            self._pl_schema = frame_schema(settings_from(self._settings), self._frame)
        return self._pl_schema

    def schema(self) -> StructType:
        return spark_schema(self._polars_schema())

    def reader(self, schema: StructType) -> DataSourceReader:
        stall = float(self.options.get("stall_timeout") or 30.0)
        return _Reader(self._job(), self._polars_schema(), schema, stall)

    def _job(self) -> Job:
        opts = dict(self.options)
        if opts.get("plan"):
            return Job.from_json(str(opts["plan"]), self._settings)
        start, end = window_bounds(opts.get("start"), opts.get("end"), opts.get("last"))
        machines = [m.strip() for m in str(opts["machines"]).split(",")] if opts.get(
            "machines") else None
        per_task = int(opts.get("max_records_per_task") or DEFAULT_MAX_RECORDS_PER_TASK)
        return plan_job(settings_from(self._settings), start_ms=start, end_ms=end,
                        machines=machines, frame=self._frame, per_task=per_task,
                        lateness=opts.get("lateness"))


class _Reader(DataSourceReader):
    def __init__(self, job: Job, schema: pl.Schema, spark_schema: StructType,
                 stall_timeout: float) -> None:
        self._job, self._schema, self._spark_schema = job, schema, spark_schema
        self._stall = stall_timeout

    def partitions(self) -> list[InputPartition]:
        return [InputPartition(r) for r in self._job.ranges] or [
            InputPartition(TaskRange(0, 0, 0, 0))]

    def read(self, partition: InputPartition) -> Iterator[Any]:
        rng: TaskRange = partition.value
        if rng.end <= rng.start:
            return
        with warnings.catch_warnings():
            # A bad record's DecodeWarning belongs to the errors frame, not the task's log.
            warnings.simplefilter("ignore")
            frame = read_range(self._job, rng, stall_timeout=self._stall)
        yield from to_batches(conform(frame, self._schema), self._spark_schema)
