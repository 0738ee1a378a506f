"""The window pipeline on the in-memory consumer: planning, the read loop, the position rule,
lateness, coverage, dedupe, errors; no broker."""

from __future__ import annotations

import functools
import io
import json
import random
import struct
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fastavro
import polars as pl
import pytest

from tu_analytics import _pipeline
from tu_analytics._connection import Connection
from tu_analytics._fake import FakeConsumer, FakeRegistry
from tu_analytics._pipeline import Chunk, ConsumeError, Deduper, plan, read
from tu_analytics._settings import Secret, Settings
from tu_analytics.errors import (
    AuthenticationError,
    CoverageWarning,
    DecodeWarning,
    DisorderWarning,
    RegistryError,
    UnknownSchemasError,
    WindowError,
    WindowTooLargeError,
)

SCHEMA = (Path(_pipeline.__file__).parent / "sandbox" / "schemas"
          / "machine_insights_v1.avsc").read_text()
PARSED = fastavro.parse_schema(json.loads(SCHEMA))
#: Two days back, on the hour: inside retention and in the past at any hour the tests run.
T0 = (int(time.time()) // 3600 - 48) * 3_600_000
MIN = 60_000


@functools.cache
def _value(i: int, sid: int) -> bytes:
    buf = io.BytesIO()
    buf.write(b"\x00" + struct.pack(">i", sid))
    fastavro.schemaless_writer(buf, PARSED, {"Metadata": {"MachineId": f"M{i % 5}",
                                                          "UnitId": i}})
    return buf.getvalue()


def value(i: int, sid: int = 7) -> bytes:
    """A framed Machine Insights record (50 distinct ones: encoding is the slow part)."""
    return _value(i % 50, sid)


def settings(**kw: object) -> Settings:
    base: dict[str, object] = {
        "bootstrap_servers": "fake:9092", "topic": "fake",
        "schema_registry_url": "http://registry.invalid", "security_protocol": "SASL_PLAINTEXT",
        "sasl_username": "u", "sasl_password": Secret("pw")}
    return Settings(**{**base, **kw})  # type: ignore[arg-type]


def conn(fake: FakeConsumer, registry: FakeRegistry | None = None) -> Connection:
    return Connection(settings(), consumer=lambda s: fake,
                      registry=registry or FakeRegistry({7: SCHEMA}))


def topic(stamps: dict[int, list[int]], **kw: object) -> FakeConsumer:
    fake = FakeConsumer(**kw)  # type: ignore[arg-type]
    fake.add_partitions(len(stamps))
    for p, ts in stamps.items():
        fake.extend(p, ts, value=value)
    return fake


def dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def read_all(fake: FakeConsumer, ranges: tuple[_pipeline.PartitionRange, ...],
             **kw: object) -> tuple[list[Chunk], _pipeline.ReadStats]:
    chunks: list[Chunk] = []
    stats = read(fake, ranges, chunks.append, **kw)  # type: ignore[arg-type]
    return chunks, stats


def offsets_of(chunks: list[Chunk]) -> set[tuple[int, int]]:
    return {(c.partition, o) for c in chunks for o in c.offsets}


def disordered(rng: random.Random, n: int, back_ms: int, share: float = 0.03) -> list[int]:
    """Timestamps 1 s apart, ``share`` of them moved back by up to ``back_ms``."""
    return [T0 + i * 1000 - (rng.randrange(1, back_ms) if rng.random() < share else 0)
            for i in range(n)]


# -- planning --------------------------------------------------------------------------------


def test_plan_in_order_ranges_are_the_timestamp_bounds() -> None:
    fake = topic({0: [T0 + i * 1000 for i in range(100)], 1: [T0 + i * 500 for i in range(100)]})
    p = plan(fake, T0 + 10_000, T0 + 20_000, 0, timeout=1)
    assert [(r.partition, r.start, r.end) for r in p.ranges] == [(0, 10, 20), (1, 20, 40)]
    assert not any(r.open for r in p.ranges)
    assert p.records == 30


def test_plan_reaches_end_plus_lateness() -> None:
    fake = topic({0: [T0 + i * 1000 for i in range(1000)]})
    (r,) = plan(fake, T0, T0 + 10_000, 5 * MIN, timeout=1).ranges
    assert (r.start, r.end) == (0, 310)


def test_plan_of_empty_and_exhausted_partitions() -> None:
    fake = topic({0: [], 1: [T0, T0 + 1]})
    p = plan(fake, T0 + 5000, T0 + 6000, 0, timeout=1)
    assert [r.count for r in p.ranges] == [0, 0]
    assert all(r.open for r in p.ranges)  # nothing at or after end yet: more may come


def test_plan_stops_at_the_last_stable_offset_of_an_open_transaction() -> None:
    fake = topic({0: [T0 + i * 1000 for i in range(10)]})
    fake.begin_open(0, [T0 + 10_000 + i for i in range(5)])
    fake.extend(0, [T0 + 60_000])  # committed later than the open one: not stable yet
    (r,) = plan(fake, T0, T0 + 100_000, 0, timeout=1).ranges
    assert (r.start, r.end, r.high, r.open) == (0, 10, 10, True)


def test_plan_starts_at_the_low_watermark_after_retention() -> None:
    fake = topic({0: [T0 + i * 1000 for i in range(50)]})
    fake.trim(0, 20)
    (r,) = plan(fake, T0, T0 + 30_000, 0, timeout=1).ranges
    assert (r.low, r.start, r.end) == (20, 20, 30)


# -- reading ---------------------------------------------------------------------------------


def test_read_hands_on_chunks_in_offset_order_per_partition() -> None:
    fake = topic({0: [T0 + i for i in range(2500)], 1: [T0 + i for i in range(700)]},
                 fetch_records=300)
    p = plan(fake, T0, T0 + 10_000, 0, timeout=1)
    chunks, stats = read_all(fake, p.ranges, chunk_records=1000)
    assert stats.count == 3200
    assert offsets_of(chunks) == {
        *((0, o) for o in range(2500)), *((1, o) for o in range(700))}
    for part in (0, 1):
        offs = [o for c in chunks if c.partition == part for o in c.offsets]
        assert offs == sorted(offs)
    assert max(len(c) for c in chunks) == 1000
    assert fake.assigned == {}  # every partition unassigned when done


def test_a_partition_ending_mid_window_and_an_empty_one() -> None:
    fake = topic({0: [T0 + i * 1000 for i in range(30)], 1: [T0 + i * 1000 for i in range(5)],
                  2: []})
    p = plan(fake, T0, T0 + 20_000, 0, timeout=1)
    chunks, _ = read_all(fake, p.ranges, stall_timeout=2)
    assert offsets_of(chunks) == {*((0, o) for o in range(20)), *((1, o) for o in range(5))}


def test_range_ending_in_a_commit_marker_completes_promptly() -> None:
    fake = topic({0: []})
    fake.extend(0, [T0 + i for i in range(10)], value=value)
    fake.commit(0, T0 + 10)
    fake.extend(0, [T0 + 100])
    p = plan(fake, T0, T0 + 11, 0, timeout=1)
    assert p.ranges[0].end == 11  # the marker's offset is inside the range
    began = time.monotonic()
    chunks, _ = read_all(fake, p.ranges, stall_timeout=30)
    assert time.monotonic() - began < 2
    assert offsets_of(chunks) == {(0, o) for o in range(10)}


def test_range_ending_in_an_aborted_transaction_completes_promptly() -> None:
    fake = topic({0: [T0 + i for i in range(10)]})
    fake.abort(0, [T0 + 10 + i for i in range(5)])
    fake.extend(0, [T0 + 1000])
    p = plan(fake, T0, T0 + 20, 0, timeout=1)
    assert p.ranges[0].end == 16
    began = time.monotonic()
    chunks, _ = read_all(fake, p.ranges, stall_timeout=30)
    assert time.monotonic() - began < 2
    assert offsets_of(chunks) == {(0, o) for o in range(10)}


def test_range_of_only_markers_and_aborted_records_delivers_nothing_and_ends() -> None:
    fake = topic({0: [T0]})
    fake.abort(0, [T0 + 1, T0 + 2])
    fake.commit(0, T0 + 3)
    fake.extend(0, [T0 + 1000])
    chunks, _ = read_all(fake, plan(fake, T0 + 1, T0 + 5, 0, timeout=1).ranges,
                         stall_timeout=30)
    assert chunks == []


def test_a_stalled_fetch_fails_with_where_it_stopped() -> None:
    fake = topic({0: [T0 + i for i in range(100)]}, fetch_records=10)
    ranges = plan(fake, T0, T0 + 100, 0, timeout=1).ranges
    fake.consumed = 0  # planning reads a batch to find the first record: count the read only
    fake.stall_after, fake.stall_polls = 40, -1
    with pytest.raises(WindowError) as info:
        read_all(fake, ranges, stall_timeout=0.3)
    err = info.value
    assert (err.topic, err.partition, err.offsets) == ("fake", 0, (40, 100))
    assert "60 planned offsets still unread" in str(err)


def test_a_stall_shorter_than_the_timeout_is_waited_out() -> None:
    fake = topic({0: [T0 + i for i in range(100)]}, fetch_records=10)
    fake.stall_after, fake.stall_polls = 40, 50
    chunks, _ = read_all(fake, plan(fake, T0, T0 + 100, 0, timeout=1).ranges, stall_timeout=5)
    assert len(offsets_of(chunks)) == 100


def test_fatal_consumer_error_ends_the_read_with_its_partition() -> None:
    fake = topic({0: [T0 + i for i in range(10)], 1: [T0 + i for i in range(10)]},
                 fetch_records=2)
    fake.pending_errors.append(ConsumeError("_FENCED", "fenced", fatal=True, partition=1))
    with pytest.raises(WindowError) as info:
        read_all(fake, plan(fake, T0, T0 + 100, 0, timeout=1).ranges)
    assert info.value.partition == 1


def test_transient_errors_are_kept_and_the_read_completes() -> None:
    fake = topic({0: [T0 + i for i in range(10)]}, fetch_records=2)
    ranges = plan(fake, T0, T0 + 100, 0, timeout=1).ranges
    fake.pending_errors.append(ConsumeError("_TRANSPORT", "broker away"))
    chunks, stats = read_all(fake, ranges)
    assert len(offsets_of(chunks)) == 10
    assert [e.code for e in stats.errors] == ["_TRANSPORT"]


def test_authentication_failure_mid_read_is_an_authentication_error() -> None:
    fake = topic({0: [T0 + i for i in range(10)]}, fetch_records=2)
    fake.auth_text = "SASL authentication failed"
    with pytest.raises(AuthenticationError, match="SASL authentication failed"):
        read_all(fake, plan(fake, T0, T0 + 100, 0, timeout=1).ranges)


def test_records_written_during_the_read_are_not_read() -> None:
    fake = topic({0: [T0 + i for i in range(50)]}, fetch_records=10)
    fake.on_consume = lambda f: f.append(0, T0 + 10)  # a live topic: late, in-window stamps
    p = plan(fake, T0, T0 + 100, 0, timeout=1)
    chunks, _ = read_all(fake, p.ranges)
    assert offsets_of(chunks) == {(0, o) for o in range(50)}


def test_max_bytes_stops_the_read_with_the_numbers() -> None:
    fake = topic({0: [T0 + i for i in range(100)]}, fetch_records=10)
    ranges = plan(fake, T0, T0 + 100, 0, timeout=1).ranges
    fake.consumed = 0  # planning reads a batch to find the first record: count the read only
    with pytest.raises(WindowTooLargeError) as info:
        read_all(fake, ranges, max_bytes=50)
    assert info.value.limit_bytes == 50
    assert (info.value.estimate_bytes or 0) > 50
    assert fake.consumed <= 10  # stopped after the first batch


def test_max_disorder_is_the_largest_step_behind_the_running_maximum() -> None:
    rng = random.Random(3)
    stamps = disordered(rng, 3000, 90_000)
    fake = topic({0: stamps[:1500], 1: stamps[1500:]}, fetch_records=97)
    _, stats = read_all(fake, plan(fake, T0 - MIN, T0 + 10**7, 0, timeout=1).ranges)
    brute = 0
    for part in (stamps[:1500], stamps[1500:]):
        top = part[0]
        for t in part:
            brute, top = max(brute, top - t), max(top, t)
    assert stats.max_disorder_ms == brute > 0


def test_deduper_keeps_the_first_of_exact_repeats_per_partition() -> None:
    d = Deduper()
    a = d(Chunk(0, [1, 2, 3], [0, 0, 0], [b"k", b"k", b"j"], [b"x", b"x", b"x"]))
    b = d(Chunk(0, [4, 5], [0, 0], [b"k", b"k"], [b"x", b"y"]))
    c = d(Chunk(1, [1], [0], [b"k"], [b"x"]))
    assert (a.offsets, b.offsets, c.offsets, d.dropped) == ([1, 3], [5], [1], 2)


# -- windows on the fake ---------------------------------------------------------------------


def brute(fake: FakeConsumer, a: int, b: int) -> set[tuple[int, int]]:
    return {(p, e.offset) for p, log in fake.logs.items() for e in log
            if e.kind == "record" and a <= e.timestamp < b}


def window_keys(win: object) -> set[tuple[int, int]]:
    main = win.main  # type: ignore[attr-defined]
    return set(zip(main["partition"], main["offset"], strict=True))


def test_fifty_random_windows_over_disorder_are_exact() -> None:
    rng = random.Random(20261130)
    fake = topic({p: disordered(rng, 400, 90_000) for p in range(3)}, fetch_records=150)
    for i in range(50):
        a = T0 + rng.randrange(-20_000, 380_000)
        b = a + rng.choice([1000, 30_000, 120_000, 400_000])
        chunks, _ = read_all(fake, plan(fake, a, b, 2 * MIN, timeout=1).ranges)
        got = [(c.partition, o) for c in chunks for o in c.within(a, b).offsets]
        assert len(got) == len(set(got)), f"window {i} has duplicates"
        assert set(got) == brute(fake, a, b), f"window {i}"


def test_windows_through_the_connection_are_exact_over_disorder() -> None:
    rng = random.Random(7)
    fake = topic({p: disordered(rng, 200, 90_000, share=0.05) for p in range(2)})
    c = conn(fake)
    for _ in range(5):
        a = T0 + rng.randrange(0, 150_000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DisorderWarning)
            win = c.window(dt(a), dt(a + 30_000), lateness="2m", progress=False)
        assert window_keys(win) == brute(fake, a, a + 30_000)
        assert 0 < win.spec.max_disorder_ms < 90_000


def test_without_enough_lateness_late_records_are_lost() -> None:
    fake = topic({0: [T0, T0 + 1000, T0 + 2000, T0 + 3000, T0 + 1500, T0 + 4000]})
    c = conn(fake)
    exact = c.window(dt(T0), dt(T0 + 2000), lateness="1m", progress=False)
    assert window_keys(exact) == {(0, 0), (0, 1), (0, 4)}
    short = c.window(dt(T0), dt(T0 + 2000), lateness=timedelta(seconds=1), progress=False)
    assert window_keys(short) == {(0, 0), (0, 1)}  # 1.5 s of disorder, 1 s of lateness
    with pytest.warns(DisorderWarning):  # 1.5 s of disorder seen, within a fifth of 1.8 s
        near = c.window(dt(T0), dt(T0 + 2000), lateness="1.8s", progress=False)
    assert window_keys(near) == window_keys(exact)


def test_disorder_warning_only_near_the_lateness_bound() -> None:
    fake = topic({0: [T0, T0 + 10_000, T0 + 5_000, T0 + 20_000]})
    c = conn(fake)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        win = c.window(dt(T0), dt(T0 + 30_000), lateness="1m", progress=False)
    assert win.spec.max_disorder_ms == 5000
    assert win.spec.lateness_ms == 60_000
    with pytest.warns(DisorderWarning, match="lateness=6 s"):
        c.window(dt(T0), dt(T0 + 30_000), lateness="6s", progress=False)


def test_coverage_of_a_closed_window_is_its_end() -> None:
    fake = topic({0: [T0 + i * 1000 for i in range(1000)]})
    win = conn(fake).window(dt(T0), dt(T0 + 60_000), lateness="1m", progress=False)
    assert win.spec.covered_end == dt(T0 + 60_000)


def test_coverage_stops_short_past_the_high_watermark_and_behind_open_transactions() -> None:
    fake = topic({0: [T0 + i * 1000 for i in range(100)], 1: [T0 + i * 1000 for i in range(1000)]})
    fake.begin_open(1, [T0 + 1_000_000])
    win = conn(fake).window(dt(T0), dt(T0 + 300_000), lateness="1m", progress=False)
    # Partition 0 ends at T0+99 s: later writes may carry times from T0+39 s on.
    assert win.spec.covered_end == dt(T0 + 99_000 - 60_000)
    assert win.spec.dedupe is False


def test_future_end_warns_and_coverage_says_what_was_read() -> None:
    now = int(time.time() * 1000)
    fake = topic({0: [now - 10_000 + i for i in range(10)]})
    with pytest.warns(CoverageWarning):
        win = conn(fake).window(dt(now - 60_000), dt(now + 3_600_000), progress=False)
    assert win.spec.covered_end is not None
    assert win.spec.covered_end < win.spec.end
    assert win.main.height == 10


def test_dedupe_drops_exact_repeats_only_when_asked() -> None:
    fake = FakeConsumer().add_partitions(1)
    for i in range(6):
        fake.append(0, T0 + i, value(i % 3), key=b"M")  # offsets 3..5 repeat 0..2
    fake.append(0, T0 + 6, value(0), key=b"other")  # same value, other key: kept
    c = conn(fake)
    assert c.window(dt(T0), dt(T0 + 10), progress=False).main.height == 7
    win = c.window(dt(T0), dt(T0 + 10), dedupe=True, progress=False)
    assert win.main["offset"].to_list() == [0, 1, 2, 6]
    assert win.spec.dedupe


def test_a_bad_record_goes_to_errors_with_its_offset() -> None:
    fake = topic({0: [T0 + i for i in range(5)]})
    fake.append(0, T0 + 5, b"\x00\x00\x00\x00\x07garbage")
    fake.append(0, T0 + 6, b"not framed")
    with pytest.warns(DecodeWarning, match="2 of 7"):
        win = conn(fake).window(dt(T0), dt(T0 + 10), progress=False)
    assert win.main.height == 5
    assert sorted(win.errors["offset"].to_list()) == [5, 6]


def test_one_unknown_id_among_good_records_goes_to_errors() -> None:
    fake = topic({0: [T0 + i for i in range(5)]})
    fake.append(0, T0 + 5, value(5, sid=99))
    with pytest.warns(DecodeWarning):
        win = conn(fake).window(dt(T0), dt(T0 + 10), progress=False)
    assert (win.main.height, win.errors.height) == (5, 1)


def test_every_id_unknown_raises_instead_of_an_empty_window() -> None:
    fake = topic({0: [T0 + i for i in range(5)]})
    with pytest.raises(UnknownSchemasError) as info:
        conn(fake, FakeRegistry({})).window(dt(T0), dt(T0 + 10), progress=False)
    assert info.value.schema_ids == (7,)
    assert info.value.url == "http://registry.invalid"


def test_registry_down_fails_the_window_promptly_and_closes_the_consumer() -> None:
    fake = topic({0: [T0 + i for i in range(5000)]})
    reg = FakeRegistry({7: SCHEMA})
    c = conn(fake, reg)
    reg.down = RegistryError("registry away", url="http://registry.invalid")
    with pytest.raises(RegistryError):
        c.window(dt(T0), dt(T0 + 100_000), progress=False)
    assert fake.closed


def test_memory_guard_stops_after_one_batch() -> None:
    fake = FakeConsumer(fetch_records=1000).add_partitions(1)
    fake.extend(0, [T0 + i for i in range(30_000)], value=lambda n: b"x" * 1000)
    with pytest.raises(WindowTooLargeError) as info:
        conn(fake).window(dt(T0), dt(T0 + 100_000), max_bytes=1_000_000, progress=False)
    assert info.value.records == 30_000
    assert info.value.limit_bytes == 1_000_000
    # One batch to find the window's first record while planning, one batch read (not 30).
    assert fake.consumed <= 2 * 1000
    assert "machines=" in str(info.value)
    assert "Spark" in str(info.value)


def test_plan_window_and_read_window_are_the_engines_two_steps() -> None:
    from tu_analytics._connection import plan_window, read_window

    rng = random.Random(11)
    fake = topic({p: disordered(rng, 300, 60_000, share=0.05) for p in range(3)})
    a, b = T0 + 50_000, T0 + 150_000
    p = plan_window(settings(), dt(a), dt(b), lateness="2m", consumer=lambda s: fake)
    parts = [read_window(settings(), [r], a, b, registry=FakeRegistry({7: SCHEMA}),
                         consumer=lambda s: fake) for r in p.ranges]  # one task per range
    records = pl.concat([d.records for d in parts], how="diagonal_relaxed")
    assert set(zip(records["partition"], records["offset"], strict=True)) == brute(fake, a, b)


def test_a_backlog_behind_markers_stamped_later_is_still_planned_to_its_end() -> None:
    # A forwarding job catching up writes hours-old records in transactions whose markers the
    # broker stamps "now": the time lookup finds the first marker, yet records stamped inside
    # the window follow it. Planning reads on to the first real record past end + lateness.
    fake = topic({0: []})
    now = T0 + 10 * 60 * MIN
    fake.extend(0, [T0 + i * MIN for i in range(10)], value=value)
    fake.commit(0, now)
    fake.extend(0, [T0 + (10 + i) * MIN for i in range(10)], value=value)
    fake.commit(0, now + 1000)
    win = conn(fake).window(dt(T0), dt(T0 + 15 * MIN), lateness="0", progress=False)
    assert win.main["kafka_timestamp"].dt.epoch("ms").to_list() == [
        T0 + i * MIN for i in range(15)]
    assert win.spec.offsets[0] == (0, 16)  # the record stamped at the end, past the marker


def test_settling_the_end_costs_one_fetch_when_the_lookup_found_a_record() -> None:
    fake = topic({0: [T0 + i * MIN for i in range(100)]})
    p = plan(fake, T0, T0 + 30 * MIN, 0, timeout=5)
    assert (p.ranges[0].start, p.ranges[0].end, p.ranges[0].open) == (0, 30, False)


def test_planning_unassigns_only_what_it_assigned() -> None:
    # An empty partition needs no probe; librdkafka refuses to unassign what it never had.
    fake = topic({0: [T0 + i * MIN for i in range(10)], 1: []})
    p = plan(fake, T0, T0 + 5 * MIN, 0, timeout=5)
    assert [(r.start, r.end) for r in p.ranges] == [(0, 5), (0, 0)]
    assert fake.assigned == {}
