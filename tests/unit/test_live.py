"""The live tail and pump, against an in-memory BatchSource (no broker)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from tu_analytics.live import BatchSource, LiveTail, Pump, bind, latest_per_machine

T0 = datetime(2024, 5, 6, 6, 0, tzinfo=UTC)
TIME = pl.Datetime("ms", "UTC")


def batch(
    machines: list[str],
    *,
    at: datetime = T0,
    received: datetime | None = None,
    lat: float = 56.0,
    offset: int = 0,
) -> pl.DataFrame:
    n = len(machines)
    return pl.DataFrame(
        {
            "partition": pl.Series([0] * n, dtype=pl.Int32),
            "offset": pl.Series(range(offset, offset + n), dtype=pl.Int64),
            "kafka_timestamp": pl.Series([received or at] * n, dtype=TIME),
            "MachineId": machines,
            "Latitude": [lat] * n,
            "Longitude": [10.0] * n,
            "Location_datetime": pl.Series([at] * n, dtype=TIME),
        }
    )


class FakeSource:
    """Hands out queued frames; records calls; can be told to fail or to block."""

    def __init__(self, frames: list[pl.DataFrame] | None = None) -> None:
        self.frames: deque[pl.DataFrame] = deque(frames or [])
        self.polls = 0
        self.closed = 0
        self.fail_with: BaseException | None = None
        self.close_error: Exception | None = None
        self.block = threading.Event()
        self.block.set()
        self.threads: set[str] = set()

    def poll(self, timeout: float) -> pl.DataFrame | None:
        self.polls += 1
        self.threads.add(threading.current_thread().name)
        self.block.wait()
        if self.fail_with is not None:
            raise self.fail_with
        if self.frames:
            return self.frames.popleft()
        time.sleep(min(timeout, 0.01))
        return None

    def close(self) -> None:
        self.closed += 1
        if self.close_error is not None:
            raise self.close_error


class EndlessSource:
    """Produces a fresh batch of ``rows`` records on every poll, as fast as it is asked."""

    def __init__(self, rows: int = 500, machines: int = 50) -> None:
        self.rows = rows
        self.machines = machines
        self.i = 0
        self.closed = False

    def poll(self, timeout: float) -> pl.DataFrame | None:
        self.i += 1
        ids = [f"M{k % self.machines}" for k in range(self.rows)]
        at = T0 + timedelta(seconds=self.i)
        return batch(ids, at=at, lat=55 + (self.i % 100) * 0.001, offset=self.i * self.rows)

    def close(self) -> None:
        self.closed = True


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


class RecordingView:
    def __init__(self) -> None:
        self.frames: list[pl.DataFrame] = []
        self.errors: list[tuple[BaseException, str]] = []
        self.threads: set[str] = set()

    def update(self, frame: pl.DataFrame) -> None:
        self.threads.add(threading.current_thread().name)
        self.frames.append(frame)

    def show_error(self, error: BaseException, *, context: str = "") -> None:
        self.errors.append((error, context))


class BadRecordSource(FakeSource):
    """A source that also hands out records it could not decode, as the Kafka one does."""

    def __init__(self, frames: list[pl.DataFrame], bad: list[pl.DataFrame]) -> None:
        super().__init__(frames)
        self.bad = deque(bad)

    def take_errors(self) -> pl.DataFrame | None:
        return self.bad.popleft() if self.bad else None


def test_bad_records_from_the_source_are_kept_and_counted() -> None:
    bad = [pl.DataFrame({"offset": [5, 6], "reason": ["x", "y"]}),
           pl.DataFrame({"offset": [9], "reason": ["z"]})]
    source: BatchSource = BadRecordSource([batch(["A"]), batch(["B"], offset=1)], bad)
    with LiveTail(source) as tail:
        wait_until(lambda: tail.stats.bad_records == 3 and tail.version == 2)
    assert tail.bad_records()["offset"].to_list() == [5, 6, 9]
    assert tail.stats.records == 2


def test_a_source_without_an_errors_buffer_counts_none() -> None:
    with LiveTail(FakeSource([batch(["A"])])) as tail:
        wait_until(lambda: tail.version == 1)
    assert tail.stats.bad_records == 0
    assert tail.bad_records().height == 0


# -- the tail ------------------------------------------------------------------------------------


def test_tail_appends_batches_and_counts_versions() -> None:
    source = FakeSource([batch(["A", "B"]), batch(["A"], offset=2), batch(["C"], offset=3)])
    with LiveTail(source) as tail:
        wait_until(lambda: tail.version == 3)
        frame = tail.frame()
        assert frame.height == 4
        assert frame.get_column("offset").to_list() == [0, 1, 2, 3]
        stats = tail.stats
        assert (stats.records, stats.batches, stats.buffered, stats.machines) == (4, 3, 4, 3)
        assert stats.records_per_s > 0
    assert source.closed == 1
    assert source.threads == {"tu-analytics-live-tail"}  # polled only from the consumer thread


def test_frame_is_a_consistent_copy() -> None:
    source = FakeSource([batch(["A"])])
    with LiveTail(source) as tail:
        wait_until(lambda: tail.version == 1)
        first = tail.frame()
        source.frames.append(batch(["B"], offset=1))
        wait_until(lambda: tail.version == 2)
        assert first.height == 1  # an earlier copy does not change under the reader
        assert tail.frame().height == 2
        assert tail.frame().equals(tail.frame())
        mine = tail.frame()
        mine.insert_column(0, pl.Series("mutated", [1] * mine.height))  # in place, on our copy
        assert "mutated" not in tail.frame().columns


def test_empty_and_none_batches_do_not_bump_the_version() -> None:
    source = FakeSource([batch([]), batch(["A"])])
    with LiveTail(source) as tail:
        wait_until(lambda: tail.version == 1)
        time.sleep(0.05)
        assert tail.version == 1
        assert tail.frame().height == 1


def test_history_is_capped_and_latest_state_survives_trimming() -> None:
    frames = [batch([f"M{i}"] * 30, at=T0 + timedelta(minutes=i), offset=i * 30) for i in range(10)]
    with LiveTail(FakeSource(frames), history=100) as tail:
        wait_until(lambda: tail.version == 10)
        frame = tail.frame()
        assert frame.height == 100
        assert frame.get_column("offset").to_list() == list(range(200, 300))  # the newest rows
        assert tail.stats.trimmed == 200
        # M0..M5 left the history but are still known in the latest-state table.
        assert sorted(tail.latest().get_column("MachineId").to_list()) == [
            f"M{i}" for i in range(10)
        ]


def test_batch_larger_than_history_keeps_its_tail() -> None:
    with LiveTail(FakeSource([batch(["A"] * 10)]), history=4) as tail:
        wait_until(lambda: tail.version == 1)
        assert tail.frame().get_column("offset").to_list() == [6, 7, 8, 9]


def test_latest_is_by_measurement_time_not_arrival() -> None:
    newer = batch(["A"], at=T0 + timedelta(minutes=10), lat=1.0)
    late_old = batch(["A"], at=T0, received=T0 + timedelta(minutes=20), lat=2.0, offset=1)
    with LiveTail(FakeSource([newer, late_old])) as tail:
        wait_until(lambda: tail.version == 2)
        latest = tail.latest()
        assert latest.height == 1
        assert latest.item(0, "Latitude") == 1.0


def test_latest_per_machine_ties_break_by_arrival_and_drop_null_ids() -> None:
    frame = pl.concat(
        [batch(["A", "B"]), batch(["A"], lat=3.0, offset=2), batch([None], offset=3)],  # type: ignore[list-item]
    )
    latest = latest_per_machine(frame)
    assert latest.get_column("MachineId").to_list() == ["B", "A"]
    assert latest.filter(pl.col("MachineId") == "A").item(0, "Latitude") == 3.0
    assert latest_per_machine(pl.DataFrame({"x": [1]})).height == 0


def test_batches_with_different_columns_concatenate() -> None:
    extra = batch(["B"], offset=1).with_columns(pl.lit(42.0).alias("FuelLevel"))
    with LiveTail(FakeSource([batch(["A"]), extra])) as tail:
        wait_until(lambda: tail.version == 2)
        frame = tail.frame()
        assert frame.get_column("FuelLevel").to_list() == [None, 42.0]
        assert set(tail.latest().columns) >= {"FuelLevel", "Latitude"}


def test_pause_stops_polling_and_resume_continues() -> None:
    source = FakeSource()
    tail = LiveTail(source, poll_timeout=0.02).start()
    try:
        wait_until(lambda: source.polls > 0)
        tail.pause()
        assert tail.paused
        time.sleep(0.1)  # let an in-flight poll finish
        polls = source.polls
        source.frames.append(batch(["A"]))
        time.sleep(0.15)
        assert source.polls == polls
        assert tail.version == 0
        tail.resume()
        wait_until(lambda: tail.version == 1)
        assert not tail.paused
    finally:
        tail.stop()


def test_stop_is_idempotent_and_closes_the_source_once() -> None:
    source = FakeSource()
    tail = LiveTail(source).start()
    wait_until(lambda: source.polls > 0)
    tail.stop()
    tail.stop()
    assert source.closed == 1
    assert not tail.running
    assert tail.stopped
    with pytest.raises(RuntimeError, match="stopped"):
        tail.start()


def test_stop_while_paused_and_stop_before_start() -> None:
    paused_source = FakeSource()
    tail = LiveTail(paused_source).start()
    tail.pause()
    tail.stop(timeout=2)
    assert paused_source.closed == 1

    never_started = FakeSource()
    LiveTail(never_started).stop()
    assert never_started.closed == 1
    assert never_started.polls == 0


def test_start_twice_is_a_no_op() -> None:
    source = FakeSource()
    tail = LiveTail(source)
    assert tail.start() is tail.start()
    tail.stop()
    assert source.closed == 1


def test_thread_error_is_captured_not_lost() -> None:
    source = FakeSource([batch(["A"])])
    tail = LiveTail(source).start()
    wait_until(lambda: tail.version == 1)
    boom = ValueError("decoder exploded")
    source.fail_with = boom
    wait_until(lambda: tail.error is not None)
    assert tail.error is boom
    assert tail.stats.errors == 1
    wait_until(lambda: not tail.running)
    assert tail.stopped
    assert source.closed == 1
    assert tail.frame().height == 1  # what arrived before the error is kept
    assert "error: ValueError" in repr(tail)
    tail.stop()  # still fine


def test_close_error_is_captured() -> None:
    source = FakeSource()
    source.close_error = OSError("close failed")
    tail = LiveTail(source).start()
    tail.stop()
    assert isinstance(tail.error, OSError)


def test_stop_times_out_when_poll_ignores_its_timeout() -> None:
    source = FakeSource()
    tail = LiveTail(source).start()
    wait_until(lambda: source.polls > 0)
    source.block.clear()
    time.sleep(0.05)
    with pytest.raises(TimeoutError):
        tail.stop(timeout=0.1)
    assert source.closed == 0  # never closed under a poll still running in the thread
    source.block.set()
    wait_until(lambda: source.closed == 1)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="history"):
        LiveTail(FakeSource(), history=0)
    with pytest.raises(ValueError, match="poll_timeout"):
        LiveTail(FakeSource(), poll_timeout=0)
    with pytest.raises(ValueError, match="rate_hz"):
        Pump(LiveTail(FakeSource()), rate_hz=0)


# -- the pump ------------------------------------------------------------------------------------


def test_pump_coalesces_200_batches_into_few_redraws() -> None:
    frames = [batch([f"M{i % 20}"], offset=i) for i in range(200)]
    source = FakeSource(frames)
    view = RecordingView()

    async def main() -> tuple[Pump, LiveTail, float]:
        tail = LiveTail(source).start()
        pump = Pump(tail, view, rate_hz=5)
        start = time.monotonic()
        pump.start()
        while tail.version < 200:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # one more tick draws the final version
        elapsed = time.monotonic() - start
        pump.stop()
        tail.stop()
        return pump, tail, elapsed

    pump, tail, elapsed = asyncio.run(main())
    assert tail.version == 200
    assert 1 <= pump.redraws <= 5 * elapsed + 1
    assert pump.redraws < 200
    assert view.frames[-1].height == 200  # the last redraw saw every batch
    assert view.threads == {threading.main_thread().name}  # widgets touched on the loop thread


def test_pump_keeps_the_loop_free_while_the_tail_ingests_fast() -> None:
    from tu_analytics.widgets.map import MachineMap

    machine_map = MachineMap()  # a real staged view: prepare off the loop, render on it

    async def main() -> tuple[float, float, int, int]:
        tail = LiveTail(EndlessSource(rows=500), history=20_000).start()
        pump = bind(tail, machine_map, rate_hz=2)
        gaps: list[float] = []
        last = time.monotonic()
        start = last
        while time.monotonic() - start < 2.0:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now
        rate = tail.stats.records / (time.monotonic() - start)
        pump.stop()
        tail.stop()
        return max(gaps), rate, pump.redraws, len(gaps)

    worst_gap, rate, redraws, beats = asyncio.run(main())
    assert rate >= 2_000
    assert worst_gap < 0.5, f"event loop blocked for {worst_gap:.3f} s"
    assert beats > 50
    assert 1 <= redraws <= 2 * 2.0 + 1
    assert machine_map.machines.height == 50


def test_pump_shows_widget_errors_under_the_widget_and_keeps_going() -> None:
    class Failing(RecordingView):
        def update(self, frame: pl.DataFrame) -> None:
            raise RuntimeError("bad update")

    failing, healthy = Failing(), RecordingView()
    source = FakeSource([batch(["A"])])

    async def main() -> Pump:
        tail = LiveTail(source).start()
        pump = Pump(tail, failing, healthy, rate_hz=20)
        pump.start()
        await asyncio.sleep(0.2)
        source.frames.append(batch(["B"], offset=1))
        await asyncio.sleep(0.2)
        pump.stop()
        tail.stop()
        return pump

    pump = asyncio.run(main())
    assert pump.redraws >= 2
    assert len(healthy.frames) == pump.redraws
    assert [str(e) for e, _ in failing.errors] == ["bad update"] * pump.redraws
    assert {ctx for _, ctx in failing.errors} == {"live update"}


def test_pump_keeps_errors_of_views_without_an_error_sink() -> None:
    class Plain:
        def update(self, frame: pl.DataFrame) -> None:
            raise KeyError("x")

    async def main() -> Pump:
        tail = LiveTail(FakeSource([batch(["A"])])).start()
        pump = Pump(tail, Plain(), rate_hz=20)
        pump.start()
        await asyncio.sleep(0.2)
        pump.stop()
        tail.stop()
        return pump

    pump = asyncio.run(main())
    assert pump.errors
    assert isinstance(pump.errors[0], KeyError)


def test_pump_reports_a_tail_error_once_and_ends_after_the_tail_stops() -> None:
    source = FakeSource([batch(["A"])])
    view = RecordingView()

    async def main() -> Pump:
        tail = LiveTail(source).start()
        pump = bind(tail, view, rate_hz=20)
        while tail.version < 1:
            await asyncio.sleep(0.01)
        source.fail_with = ConnectionError("broker went away")
        await asyncio.wait_for(pump.wait(), timeout=3)  # ends by itself
        return pump

    pump = asyncio.run(main())
    assert not pump.running
    assert [(type(e), ctx) for e, ctx in view.errors] == [(ConnectionError, "live tail")]
    assert view.frames
    assert view.frames[-1].height == 1


def test_pump_start_is_idempotent_and_stop_cancels() -> None:
    async def main() -> None:
        tail = LiveTail(FakeSource())
        pump = Pump(tail, rate_hz=10)
        task = pump.start()
        assert pump.start() is task
        assert pump.task is task
        pump.stop()
        await pump.wait()
        assert not pump.running
        assert "stopped" in repr(pump)
        tail.stop()

    asyncio.run(main())


def test_pump_start_outside_a_loop_explains_itself() -> None:
    with pytest.raises(RuntimeError, match="running event loop"):
        Pump(LiveTail(FakeSource())).start()


def test_bind_without_start_leaves_everything_idle() -> None:
    source = FakeSource()
    tail = LiveTail(source)
    pump = bind(tail, RecordingView(), start=False)
    assert pump.task is None
    assert not tail.running
    tail.stop()


def test_positions_come_from_a_source_that_tracks_them() -> None:
    source = FakeSource([batch(["A"])])
    source.positions = {0: 7, 2: 3}  # type: ignore[attr-defined]
    with LiveTail(source) as tail:
        wait_until(lambda: tail.version == 1)
        assert tail.positions == {0: 7, 2: 3}
    assert LiveTail(FakeSource()).positions == {}
