"""Spark reads that stay exact through broker faults, and keep secrets out of plans, the UI
and logs (issue: beyond one machine)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import threading
import time
import urllib.request
import warnings
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

import tu_analytics.spark as tus


def _pairs_polars(conn, start, end) -> set[tuple[int, int]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        win = conn.window(start, end, progress=False)
    return set(zip(win.main["partition"], win.main["offset"], strict=True))


def _broker_pid(sandbox) -> int:
    from tu_analytics.sandbox._state import load_state

    return load_state(sandbox.root).pids["broker"]


def _app_api(spark, path: str):
    base = spark.sparkContext.uiWebUrl
    app = spark.sparkContext.applicationId
    with urllib.request.urlopen(f"{base}/api/v1/applications/{app}/{path}", timeout=120) as r:
        return r.read().decode()


def _failed_tasks(spark) -> int:
    tracker = spark.sparkContext.statusTracker()
    infos = [tracker.getStageInfo(i) for i in tracker.getActiveStageIds()]
    return sum(i.numFailedTasks for i in infos if i is not None)


def _resume_after_a_failure(spark, pid: int, limit: float = 180.0) -> None:
    """SIGCONT the broker once some task has failed (or after ``limit`` seconds)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and _failed_tasks(spark) == 0:
        time.sleep(0.2)
    os.kill(pid, signal.SIGCONT)


def test_paused_broker_tasks_are_retried_and_exact(spark, sandbox) -> None:
    conn = sandbox.connect()
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    start = end - timedelta(days=2)
    df = tus.window(spark, conn, start, end, max_records_per_task=4000, stall_timeout=3)
    pid = _broker_pid(sandbox)
    # Paused before the action: the first tasks stall past their 3 s and fail; the broker
    # comes back once one has, and Spark retries the same pinned ranges.
    os.kill(pid, signal.SIGSTOP)
    watcher = threading.Thread(target=_resume_after_a_failure, args=(spark, pid))
    watcher.start()
    try:
        rows = df.select("partition", "offset").collect()
    finally:
        watcher.join()
        os.kill(pid, signal.SIGCONT)
    failed = [e for e in json.loads(_app_api(spark, "stages?status=complete"))
              if e["numFailedTasks"]]
    assert failed, "no task failed: the fault was not exercised"
    got = {(r.partition, r.offset) for r in rows}
    assert len(got) == len(rows)
    assert got == _pairs_polars(conn, start, end)


def test_no_secret_in_plans_ui_or_event_log(spark, sandbox, spark_event_log) -> None:
    env = sandbox.env()
    secrets = [env["TU_SASL_PASSWORD"], env["TU_SCHEMA_REGISTRY_PASSWORD"]]
    conn = sandbox.connect()
    end = datetime.now(UTC) - timedelta(minutes=5)
    df = tus.window(spark, conn, end - timedelta(hours=1), end)
    df.count()
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):
        df.explain(mode="extended")
        df.explain(mode="formatted")
    texts = [
        df._jdf.queryExecution().toString(),
        shown.getvalue(),
        _app_api(spark, "sql?details=true&planDescription=true"),
        _app_api(spark, "environment"),
    ]
    texts += [p.read_text(errors="replace") for p in spark_event_log.rglob("*") if p.is_file()]
    assert any("trackunit" in t.lower() for t in texts)  # the plan text is really there
    for text in texts:
        for secret in secrets:
            assert secret not in text


def test_unknown_frame_is_a_clear_error(spark, sandbox) -> None:
    from tu_analytics.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="frame must be one of"):
        tus.window(spark, sandbox.connect(), last="1h", frame="nope")


def test_errors_frame_has_the_polars_schema(spark, sandbox) -> None:
    conn = sandbox.connect()
    end = datetime.now(UTC) - timedelta(minutes=5)
    df = tus.window(spark, conn, end - timedelta(hours=1), end, frame="errors")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = conn.window(end - timedelta(hours=1), end, progress=False).errors
    assert df.columns == want.columns
    assert df.count() == want.height
    assert isinstance(want, pl.DataFrame)
