"""``tu_analytics.spark.archive`` writes the Python archiver's archive: same tables, same
watermarks, same rows; each resumes the other's (issue: beyond one machine, "Writing")."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import tu_analytics as tu
import tu_analytics.spark as tus
from tu_analytics.archive import Archiver
from tu_analytics.archive._store import Store
from tu_analytics.spark._archive import SparkArchiver

_GAPS = "gaps"


@pytest.fixture(scope="module")
def conn(sandbox):
    return sandbox.connect()


@pytest.fixture(scope="module")
def reference(conn, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The Python archiver's archive of the topic as it is now."""
    uri = str(tmp_path_factory.mktemp("archive") / "python")
    conn.archive(uri, once=True)
    return uri


def _first_batch(arch: Archiver) -> list[str]:
    """Run ``arch`` for one batch: watermarks part-way into the topic."""
    said: list[str] = []

    def say(message: str) -> None:
        said.append(message)
        if message.startswith("archived"):
            arch.stop()

    arch.say = say
    arch.run(once=True)
    return said


def _watermarks(uri: str, conn) -> dict[int, int]:
    return {p["partition"]: p["watermark"] for p in tu.archive_status(uri, conn)["partitions"]}


def _batch_size(reference: str) -> int:
    return max(100, tu.scan_archive(reference).select(pl.len()).collect().item() // 3)


def _same_as_reference(uri: str, reference: str, conn) -> None:
    """Every (partition, offset) once, and on the reference's range every table's rows equal
    the Python archiver's, column for column."""
    ref_wm, wm = _watermarks(reference, conn), _watermarks(uri, conn)
    assert all(wm[p] >= w for p, w in ref_wm.items())
    below = pl.col("offset") < pl.col("partition").replace_strict(ref_wm, return_dtype=pl.Int64)
    tables = [n for n in Store.open(reference).tables if n != _GAPS]
    assert "fault_codes" in tables
    for name in ["main", *tables]:
        want = tu.scan_archive(reference, table=name).collect()
        got = tu.scan_archive(uri, table=name).collect()
        if name in ("main", "errors"):
            assert got.select("partition", "offset").is_duplicated().sum() == 0
        got = got.filter(below).select(want.columns)
        keys = ["partition", "offset"]
        assert_frame_equal(got.sort(keys, maintain_order=True),
                           want.sort(keys, maintain_order=True), check_exact=True)
    main = tu.scan_archive(uri).collect()
    assert main.height > 0


def test_spark_then_python_resumes(spark, conn, reference, tmp_path: Path) -> None:
    uri = str(tmp_path / "spark-first")
    size = _batch_size(reference)
    parts = len(_watermarks(reference, conn))
    arch = SparkArchiver(spark, conn, uri, max_records=size,
                         max_records_per_task=max(1, size // (4 * parts)))
    said = _first_batch(arch)
    assert any(m.startswith("archived") for m in said)
    first = _watermarks(uri, conn)
    assert 0 < sum(first.values()) < sum(_watermarks(reference, conn).values())
    conn.archive(uri, once=True)  # the Python archiver resumes at Spark's watermarks
    _same_as_reference(uri, reference, conn)


def test_python_then_spark_resumes(spark, conn, reference, tmp_path: Path) -> None:
    uri = str(tmp_path / "python-first")
    _first_batch(Archiver(conn, uri, max_records=_batch_size(reference)))
    first = _watermarks(uri, conn)
    result = tus.archive(spark, conn, uri, max_records_per_task=20_000)
    assert result.records > 0
    assert all(result.watermarks[p] >= w for p, w in first.items())
    _same_as_reference(uri, reference, conn)
