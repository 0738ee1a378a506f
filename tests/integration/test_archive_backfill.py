"""`tu-analytics sandbox up --archive-backfill-days N --archive URI --customer C` on the
running sandbox: the N days before the topic's first record land in the archive through the
archiver's own writer (null partition/offset, source "backfill"), readable by scan_archive and
history(), and a real `archive run --once` on that URI then archives every offset once."""

from __future__ import annotations

import sys
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from kafka_helpers import Children, read_all
from polars.testing import assert_frame_equal

import tu_analytics as tu

DAYS = 1.5
CLI = [sys.executable, "-m", "tu_analytics.cli"]


def _cli(children: Children, args: list[str], env: dict[str, str]) -> str:
    proc = children.start([*CLI, *args], env)
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    return err


def _truth(sandbox, customer: str, start: datetime, end: datetime) -> list[tuple[str, int]]:
    """(machine, Kafka ms) of every insights record of ``customer`` the streamer's own
    simulation has received in ``[start, end)``."""
    from tu_analytics.sandbox.streamer import sim_config_for, simulator_for

    sim = simulator_for(sandbox.state, sim_config_for(sandbox.root))
    return sorted((r.machine_id, r.receipt_ms) for r in
                  sim.records(start, end, formats=["insights"]) if r.customer == customer)


def _pairs(df: pl.DataFrame) -> list[tuple[str, int]]:
    ms = df["kafka_timestamp"].dt.epoch("ms")
    return sorted(zip(df["MachineId"].to_list(), ms.to_list(), strict=True))


def test_archive_backfill_days_writes_older_days_once_beside_the_archiver(
        sandbox, tmp_path: Path, children: Children) -> None:
    customer = sandbox.customers[-1]  # not the default one: --customer is honoured
    env = sandbox.env(customer)
    uri = str(tmp_path / "backfilled")
    epoch = datetime.fromtimestamp(sandbox.state.epoch_ms / 1000, UTC)  # the topic's start
    start = epoch - timedelta(days=DAYS)
    up = ["sandbox", "up", "--archive-backfill-days", str(DAYS), "--archive", uri,
          "--customer", customer]
    err = _cli(children, up, {"TU_SANDBOX_DIR": str(sandbox.root)})
    assert "sandbox already up" in err

    old = tu.scan_archive(uri).collect()
    n = old.height
    assert n > 0
    truth = _truth(sandbox, customer, start, epoch)
    assert _pairs(old) == truth
    assert old["source"].unique().to_list() == ["backfill"]
    assert old["partition"].null_count() == old["offset"].null_count() == n
    assert old["kafka_timestamp"].max() < epoch  # type: ignore[operator]
    for name in ("fault_codes", "errors"):  # the other tables: backfilled rows only, too
        rows = tu.scan_archive(uri, table=name).collect()
        assert rows["partition"].null_count() == rows["offset"].null_count() == rows.height
    # By Kafka time (a few records moved back by up to 3 min may fall before ``start``): the
    # dates from the start to the day of the topic's start, no later one.
    dates = set(old["kafka_date"].unique().to_list())
    first = (start - timedelta(minutes=3)).date()
    last = (epoch - timedelta(milliseconds=1)).date()
    assert dates <= {first + timedelta(days=i) for i in range((last - first).days + 1)}
    truth_dates = {datetime.fromtimestamp(ms / 1000, UTC).date() for _, ms in truth}
    assert dates == truth_dates  # each day the simulation has records for
    assert len(dates) >= 2  # 36 h: two dates at least
    status = tu.archive_status(uri, kafka=False)
    assert status["backfill_until"] == (epoch.date() + timedelta(days=1)).isoformat()
    assert status["partitions"] == []

    # The customer's topic: none of its records is in the archive already.
    topic = read_all(env, env["TU_TOPIC"])
    seen = set(_pairs(old))
    assert not [r for r in topic if (r[3].decode(), r[2]) in seen]

    # A real archiver on the same URI, then the option once more: nothing doubled.
    _cli(children, ["archive", "run", uri, "--once"], env)
    again = _cli(children, up, {"TU_SANDBOX_DIR": str(sandbox.root)})
    assert ": 0 backfilled records" in again
    main = tu.scan_archive(uri).collect()
    kafka = main.filter(pl.col("partition").is_not_null())
    assert (kafka["source"] == "kafka").all()
    keys = list(zip(kafka["partition"].to_list(), kafka["offset"].to_list(), strict=True))
    assert len(keys) == len(set(keys))
    wm = {p["partition"]: p["watermark"] for p in tu.archive_status(uri, kafka=False)["partitions"]}
    topic = read_all(env, env["TU_TOPIC"])  # read after the run: it covers its end offsets
    assert set(keys) == {(p, o) for p, o, *_ in topic if o < wm[p]}
    assert_frame_equal(main.filter(pl.col("partition").is_null()).sort("MachineId",
                                                                       "kafka_timestamp"),
                       old.sort("MachineId", "kafka_timestamp"))

    # Readers: scan_archive by time, and history() over both sides of the topic's start.
    inside = old.filter(pl.col("kafka_timestamp") >= start).sort("MachineId", "kafka_timestamp")
    ranged = tu.scan_archive(uri, start, epoch).collect()
    assert_frame_equal(ranged.filter(pl.col("source") == "backfill")
                       .sort("MachineId", "kafka_timestamp"), inside)
    conn = sandbox.connect(customer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hist = conn.history(start, epoch + timedelta(hours=6), archive=uri)
        win = conn.window(start, epoch + timedelta(hours=6), progress=False)
    assert _pairs(hist.main.filter(pl.col("partition").is_null())) == _pairs(inside)
    assert_frame_equal(hist.main.filter(pl.col("partition").is_not_null()), win.main)
    assert hist.main.height == inside.height + win.main.height
