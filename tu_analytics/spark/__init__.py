"""tu-analytics on Apache Spark (the optional ``spark`` extra; nothing else imports pyspark).

``register(spark)`` adds the ``trackunit`` data source::

    tu_analytics.spark.register(spark)
    df = (spark.read.format("trackunit")
          .options(bootstrap_servers=..., sasl_username=..., sasl_password=..., topic=...,
                   schema_registry_url=..., schema_registry_username=...,
                   schema_registry_password=..., last="2h")
          .load())

``window(spark, conn, ...)`` does the same from a :class:`~tu_analytics.Connection` and pins
the plan: every action on the returned DataFrame reads the same (partition, offset) set, even
with ``last=`` near now. The driver plans with ``offsets_for_times`` (start, and end plus the
lateness allowance), splits each partition into ranges of at most ``max_records_per_task``
offsets, and each task reads and decodes its range with the project's own decoder, failing
(so Spark retries it) unless the consumer's position reached the range's end.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from .._connection import Connection
from ._archive import archive
from ._features import feature_table

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["archive", "feature_table", "local_session", "register", "window"]


def local_session(cores: int = 2, *, app_name: str = "tu-analytics",
                  **conf: str) -> SparkSession:
    """A SparkSession in ``local[cores]`` on this machine (notebooks, tests, benchmarks).

    Bound to 127.0.0.1, session time zone UTC, Python workers on this interpreter (where
    tu-analytics is installed; ``PYSPARK_PYTHON`` is set to it unless already set), Spark's own
    log at ERROR and no console progress bar, so its warnings do not fill a notebook. ``conf``
    adds or overrides Spark settings: ``**{"spark.driver.memory": "4g"}``."""
    from pyspark.sql import SparkSession

    # The JVM starts the data source's planning workers with PYSPARK_PYTHON (not the
    # spark.pyspark.python setting): without it they run a `python3` lacking tu-analytics.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    log4j = Path(__file__).with_name("log4j2.properties")
    settings = {
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.host": "127.0.0.1",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={log4j.as_uri()}",
        **conf,
    }
    builder = SparkSession.builder.master(f"local[{cores}]").appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def register(spark: SparkSession) -> None:
    """Make ``spark.read.format("trackunit")`` available in this session."""
    from ._source import TrackunitDataSource

    spark.dataSource.register(TrackunitDataSource)


def window(
    spark: SparkSession,
    conn: Connection,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    *,
    last: str | timedelta | None = None,
    machines: str | Iterable[str] | None = None,
    frame: str = "main",
    max_records_per_task: int | None = None,
    lateness: str | None = None,
    stall_timeout: float = 30.0,
) -> DataFrame:
    """The records of ``conn``'s topic with a Kafka timestamp in ``[start, end)``, as a Spark
    DataFrame with the columns and types of the Polars window's ``frame``.

    A task that gets no data for ``stall_timeout`` seconds fails, and Spark retries its
    range (``spark.task.maxFailures``); a range is never returned in part."""
    from ._plan import (
        DEFAULT_MAX_RECORDS_PER_TASK,
        as_options,
        frame_schema,
        plan_job,
        window_bounds,
    )
    from ._schema import spark_schema

    register(spark)
    wanted = [machines] if isinstance(machines, str) else machines
    span = last if last is None or isinstance(last, str) else f"{last.total_seconds()}s"
    start_ms, end_ms = window_bounds(start, end, span)
    schema = frame_schema(conn.settings, frame)  # validates frame before planning
    job = plan_job(conn.settings, start_ms=start_ms, end_ms=end_ms, machines=wanted,
                   frame=frame, per_task=max_records_per_task or DEFAULT_MAX_RECORDS_PER_TASK,
                   lateness=lateness)
    return (spark.read.format("trackunit")
            .schema(spark_schema(schema))
            .options(**as_options(conn.settings), frame=frame, plan=job.to_json(),
                     stall_timeout=str(stall_timeout))
            .load())
