"""The live tail and its widgets inside a real Jupyter kernel, against the sandbox.

Each test starts an ipykernel with jupyter_client, runs cells in it the way a notebook does
(top-level ``await`` included) and reads JSON the cells print. No frontend is attached: the
widgets' comm messages go out on IOPub unread, which is what a kernel does before a browser
renders them. The browser side is tested in tests/ui.

What the live rate allows: the sandbox's customer topic receives a few records a minute
(machines report every 1-60 min and follow working shifts), too few to assert that new data
arrive within a test's time. So the "records arrive" and "load" tests replay real records of the
customer, with current Kafka timestamps and the MachineId as key, into a fresh topic of their own
(written with the operator account), never into the customer topics other tests compare with the
platform topics.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from jupyter_client.manager import KernelManager
from kafka_helpers import _kafka_conf as kafka_conf
from sim_schedule import busy_window

from tu_analytics.sandbox.fleet import build_fleet

CELL_TIMEOUT = 120.0
RATE_HZ = 2.0


# -- a kernel driven cell by cell ----------------------------------------------------------------


@dataclass
class CellResult:
    code: str
    stdout: str = ""
    stderr: str = ""
    result: str | None = None
    error: str | None = None
    seconds: float = 0.0
    outputs: list[dict] = field(default_factory=list)

    def json(self) -> object:
        """The last line the cell printed, parsed as JSON."""
        lines = [ln for ln in self.stdout.splitlines() if ln.strip()]
        assert lines, f"the cell printed nothing:\n{self.code}"
        return json.loads(lines[-1])


class Kernel:
    """An ipykernel in a subprocess, with the test's environment and working directory."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(env=env, cwd=str(cwd))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code: str, *, timeout: float = CELL_TIMEOUT, check: bool = True) -> CellResult:
        res = CellResult(code)

        def hook(msg: dict) -> None:
            kind, content = msg["msg_type"], msg["content"]
            res.outputs.append(msg)
            if kind == "stream":
                if content["name"] == "stdout":
                    res.stdout += content["text"]
                else:
                    res.stderr += content["text"]
            elif kind == "execute_result":
                res.result = content["data"].get("text/plain")
            elif kind == "error":
                res.error = f"{content['ename']}: {content['evalue']}\n" + "\n".join(
                    content["traceback"]
                )

        t0 = time.monotonic()
        reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=hook)
        res.seconds = time.monotonic() - t0
        if reply["content"]["status"] != "ok" and res.error is None:
            res.error = f"{reply['content'].get('ename')}: {reply['content'].get('evalue')}"
        if check:
            assert res.error is None, f"cell failed:\n{code}\n{res.error}"
            assert not res.stderr, f"cell wrote to stderr:\n{code}\n{res.stderr}"
        return res

    def shutdown(self) -> None:
        try:
            self.kc.stop_channels()
        finally:
            self.km.shutdown_kernel(now=False)


@pytest.fixture
def start_kernel(tmp_path: Path) -> Iterator:
    kernels: list[Kernel] = []

    def start(env: dict[str, str]) -> Kernel:
        base = {k: v for k, v in os.environ.items() if not k.startswith("TU_")}
        kernel = Kernel({**base, **env}, tmp_path)
        kernels.append(kernel)
        return kernel

    yield start
    for kernel in kernels:
        kernel.shutdown()


# -- Kafka helpers (plain confluent-kafka, independent of tu_analytics) -------------------------


def _kafka_conf(env: dict[str, str], **extra: object) -> dict[str, object]:
    # warnings and worse; not librdkafka's informational shutdown notes
    return kafka_conf(env, log_level=4, **extra)


def _read_topic(env: dict[str, str]) -> list[tuple[int, bytes, bytes]]:
    """``(timestamp_ms, key, value)`` of every record of ``env``'s topic, oldest first."""
    topic = env["TU_TOPIC"]
    c = Consumer(_kafka_conf(env, **{"group.id": f"{env['TU_SASL_USERNAME']}.live-kernel-test",
                                     "enable.auto.commit": False,
                                     "isolation.level": "read_committed"}))
    try:
        parts = sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        todo = {p for p in parts if ends[p] > 0}
        c.assign([TopicPartition(topic, p, 0) for p in todo])
        out = []
        while todo:
            for m in c.consume(10_000, timeout=2):
                if m.error() or m.partition() not in todo or m.offset() >= ends[m.partition()]:
                    continue
                out.append((m.timestamp()[1], m.key(), m.value()))
            # Transaction markers take offsets no record is delivered at: a partition is done
            # when the position reached its end, not when offset end - 1 was seen.
            done = c.position([TopicPartition(topic, p) for p in todo])
            todo -= {tp.partition for tp in done if tp.offset >= ends[tp.partition]}
        return sorted(out, key=lambda r: r[0])
    finally:
        c.close()


def _new_topic(admin_env: dict[str, str], name: str) -> str:
    topic = f"{name}-{time.monotonic_ns()}"
    admin = AdminClient(_kafka_conf(admin_env))
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result()
    return topic


def _replay(admin_env: dict[str, str], topic: str, records: list[tuple[int, bytes, bytes]],
            *, per_s: float | None = None) -> int:
    """Write copies of ``records`` to ``topic`` now (key = MachineId, Kafka timestamp = now),
    as fast as possible or paced at ``per_s`` records a second."""
    producer = Producer(_kafka_conf(admin_env, **{"linger.ms": 5, "batch.num.messages": 10_000,
                                                  "queue.buffering.max.messages": 200_000}))
    t0 = time.monotonic()
    for i, (_, key, value) in enumerate(records):
        if per_s is not None and i % 250 == 0:
            time.sleep(max(0.0, t0 + i / per_s - time.monotonic()))
            producer.poll(0)
        while True:
            try:
                producer.produce(topic, value, key, timestamp=int(time.time() * 1000))
                break
            except BufferError:
                producer.poll(0.01)
    assert producer.flush(60) == 0
    return len(records)


@pytest.fixture(scope="module")
def customer_records(sandbox) -> list[tuple[int, bytes, bytes]]:
    """Every record of the first customer's insights topic (about 3 days), oldest first."""
    records = _read_topic(sandbox.env())
    assert len(records) > 5_000
    return records


# -- kernel-side code ----------------------------------------------------------------------------

SETUP = """
import asyncio, json, time, traceback, warnings

# Warnings from anywhere in the kernel (the pump's task, widget comms), not only from a cell,
# with the tu_analytics line that led to them.
warned = []
_show = warnings.showwarning
def _record(message, category, filename, lineno, file=None, line=None):
    ours = [f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_stack()
            if "/tu_analytics/" in f.filename]
    warned.append(f"{category.__name__}: {message} ({filename}:{lineno}; from {ours[-3:]})")
    _show(message, category, filename, lineno, file, line)
warnings.showwarning = _record
# Every message jupyter_client could not serialise, not only the first per line.
warnings.filterwarnings("always", category=UserWarning, module="jupyter_client.session")
from datetime import UTC, datetime, timedelta
import polars as pl
import tu_analytics as tu
from tu_analytics.live import bind
from tu_analytics.widgets import MachineMap, UtilisationView
from tu_analytics.widgets.map import _CUSTOM, prepare_map
from tu_analytics.widgets.utilisation import prepare_utilisation

conn = tu.connect()

def map_points(m):
    '''(MachineId, lat, lon) of every marker the map's figure holds (its exact position, from
    hover: machines of a site are drawn on a ring around it).'''
    pts = []
    mid, pos = _CUSTOM.index("MachineId"), _CUSTOM.index("position_text")
    fig = m.figure_widget if m.figure_widget is not None else m.figure()
    for tr in fig.data:
        if tr.mode != "markers" or tr.visible is False or tr.customdata is None:
            continue
        pts += [[row[mid], *(float(v) for v in row[pos].split(", "))] for row in tr.customdata]
    return sorted(pts)

def prepared_points(frame):
    '''The same triples from the map's own data preparation.'''
    ms = prepare_map(frame).machines
    return sorted([[i, *(float(v) for v in text.split(", "))]
                   for i, text in ms.select("MachineId", "position_text").iter_rows()])

async def wait_for(cond, what, limit=60.0, step=0.1):
    t0 = time.monotonic()
    while not cond():
        if tail.error is not None:
            raise tail.error
        if time.monotonic() - t0 > limit:
            raise TimeoutError(f"{what} not reached in {limit} s: {tail!r} {pump!r}")
        await asyncio.sleep(step)

def drawn(n):
    '''Both views were last drawn from a frame of n rows.'''
    return m.data.frame.height == n and u.data.frame is not None and u.data.frame.height == n

from polars.testing import assert_frame_equal

def same_frame(x, y):
    '''Equal up to row order and float rounding (Polars sums groups in parallel, so the last
    bits of a float sum can differ between two runs on the same frame).'''
    keys = [c for c in ("MachineId", "date", "bucket_start", "hour") if c in x.columns]
    try:
        assert_frame_equal(x.sort(keys), y.sort(keys), check_exact=False, rel_tol=1e-9,
                           abs_tol=1e-9)
    except AssertionError:
        return False
    return True

def same_utilisation(a, b):
    return all(same_frame(getattr(a, n), getattr(b, n)) for n in ("daily", "fleet", "hour_of_day"))

def problems():
    return {"tail_error": repr(tail.error) if tail.error else None, "pump_errors": len(pump.errors),
            "map_errors": m.errors.messages, "utilisation_errors": u.errors.messages,
            "warnings": warned}
"""


def _close_points(a: list[list], b: list[list], tol: float = 1e-5) -> bool:
    """Same machines at the same positions, up to the 5 decimals (~1 m) hover shows."""
    return len(a) == len(b) and all(
        p[0] == q[0] and abs(p[1] - q[1]) <= tol and abs(p[2] - q[2]) <= tol
        for p, q in zip(a, b, strict=True)
    )


def _no_problems(kernel: Kernel) -> None:
    got = kernel.run("print(json.dumps(problems()))").json()
    warned = got.pop("warnings")
    assert got == {"tail_error": None, "pump_errors": 0, "map_errors": [],
                   "utilisation_errors": []}
    distinct = sorted(set(warned))
    assert not warned, f"{len(warned)} warning(s) in the kernel:\n" + "\n".join(distinct)


# -- the tests -----------------------------------------------------------------------------------


def test_live_map_equals_the_window_of_the_same_period(sandbox, start_kernel) -> None:
    """Tail the customer topic from an hour ago into a bound MachineMap and UtilisationView; once
    caught up, the map's figure holds exactly the latest valid position per machine that the
    map's own preparation gives on ``conn.window()`` of the same records, and the utilisation
    view holds the utilisation of that window."""
    env = sandbox.env()
    k = start_kernel(env)
    k.run(SETUP)
    k.run(f"""
start = datetime.now(UTC) - timedelta(hours=1)
m, u = MachineMap(live=True), UtilisationView(live=True)
tail = conn.tail(start=start)
pump = bind(tail, m, u, rate_hz={RATE_HZ})
""")
    # Caught up: at least as many records as a window up to now holds.
    k.run("""
upto = conn.window(start, datetime.now(UTC), progress=False).main.height
await wait_for(lambda: tail.stats.records >= upto, f"{upto} records")
print(json.dumps({"upto": upto}))
""")
    # Freeze the tail, let the pump draw its last batch, then read a window of exactly the same
    # records (a live record may land in another partition just before the freeze: retry).
    res = k.run("""
for attempt in range(8):
    tail.pause()
    await asyncio.sleep(0.6)          # a poll in flight lands
    frame = tail.frame()
    await wait_for(lambda: drawn(frame.height), "the pump's redraw")
    end = frame["kafka_timestamp"].max() + timedelta(milliseconds=1)
    win = conn.window(start, end, progress=False)
    keys = lambda f: set(zip(f["partition"].to_list(), f["offset"].to_list(), strict=True))
    if keys(win.main) | keys(win.errors) == keys(frame):
        break
    tail.resume()
    await asyncio.sleep(1.0)
else:
    raise AssertionError("the tail never matched a window")

valid = win.main.filter(pl.col("Latitude").is_not_null() & pl.col("Longitude").is_not_null()
                        & ~((pl.col("Latitude") == 0) & (pl.col("Longitude") == 0)))
independent = (valid.sort("Location_datetime", "kafka_timestamp", "offset")
               .group_by("MachineId").last()
               .select("MachineId", pl.col("Latitude").cast(pl.Float64),
                       pl.col("Longitude").cast(pl.Float64)))
print(json.dumps({
    "attempts": attempt + 1,
    "records": frame.height,
    "window_records": win.main.height,
    "window_machines": win.main["MachineId"].n_unique(),
    "map": map_points(m),
    "prepared": prepared_points(win.main),
    "independent": sorted([list(r) for r in independent.iter_rows()]),
    "utilisation_equal": same_utilisation(u.data, prepare_utilisation(win.main)),
    "fleet_rows": u.data.fleet.height,
    "redraws": pump.redraws,
    "last_10_min": frame.filter(pl.col("kafka_timestamp") >= end - timedelta(minutes=10)).height,
}))
""")
    got = res.json()
    print(f"{got['records']} records in the last hour from {got['window_machines']} machines, "
          f"{len(got['map'])} on the map; {got['last_10_min']} arrived in the last 10 min; "
          f"matched a window after {got['attempts']} attempt(s)")
    assert got["records"] == got["window_records"] > 0
    assert got["map"], "the map shows no machine"
    # The map shows exactly what its own preparation gives on the window of the same records ...
    assert got["map"] == got["prepared"]
    # ... which is the latest valid position by measurement time, computed independently here.
    assert _close_points(got["map"], got["independent"])
    fleet = build_fleet(sandbox.state.seed)
    customer = sandbox.customers[0]
    owned = {m.machine_id for m in fleet.machines if m.customer == customer}
    shown = {p[0] for p in got["map"]}
    assert shown <= owned, "a machine of another customer is on the map"
    assert len(shown) == len(got["map"]), "a machine is drawn twice"
    assert got["utilisation_equal"] is True
    assert got["fleet_rows"] > 0
    assert got["redraws"] >= 1
    _no_problems(k)
    k.run("pump.stop(); tail.stop()")


def test_new_records_reach_the_views(sandbox, start_kernel, customer_records) -> None:
    """Records arriving while the tail runs grow ``tail.version`` and the row counts, and the
    bound UtilisationView recomputes: its data equal utilisation of the new frame and differ
    from before."""
    admin = sandbox.env(admin=True)
    topic = _new_topic(admin, "live-kernel-arrivals")
    # Six hours of the customer's stream whose last three have machines working (by the
    # sandbox's schedule), so the replay adds operating hours at any hour of the day.
    _, end = busy_window(sandbox, hours=3)
    end_ms = int(end.timestamp() * 1000)
    recent = [r for r in customer_records if end_ms - 6 * 3_600_000 <= r[0] < end_ms]
    older = [r for r in recent if r[0] < end_ms - 3 * 3_600_000]
    newer = [r for r in recent if r[0] >= end_ms - 3 * 3_600_000]
    assert older
    assert newer
    k = start_kernel({**admin, "TU_TOPIC": topic})
    k.run(SETUP)
    k.run(f"""
m, u = MachineMap(), UtilisationView()
tail = conn.tail(start=datetime.now(UTC) - timedelta(seconds=5))
pump = bind(tail, m, u, rate_hz={RATE_HZ})
await asyncio.sleep(1.0)   # the consumer is assigned before anything is written
""")
    first = _replay(admin, topic, older)
    before = k.run(f"""
await wait_for(lambda: tail.stats.records == {first} and drawn({first}), "the first records drawn")
v0, frame0, util0, map0 = tail.version, tail.frame(), u.data, map_points(m)
print(json.dumps({{"version": v0, "records": tail.stats.records, "rows": frame0.height,
                   "fleet": util0.fleet.height}}))
""").json()
    assert before["records"] == before["rows"] == first
    assert before["version"] >= 1
    assert before["fleet"] > 0

    second = _replay(admin, topic, newer)
    after = k.run(f"""
await wait_for(lambda: tail.stats.records == {first + second} and drawn({first + second}),
               "the new records drawn")
frame1 = tail.frame()
print(json.dumps({{
    "version": tail.version, "records": tail.stats.records, "rows": frame1.height,
    "view_is_recomputed": same_utilisation(u.data, prepare_utilisation(frame1)),
    "fleet_changed": not same_frame(u.data.fleet, util0.fleet),
    "daily_changed": not same_frame(u.data.daily, util0.daily),
    "operating_before": util0.fleet["operating_hours"].sum(),
    "operating_after": u.data.fleet["operating_hours"].sum(),
    "util_fn_changed": not same_frame(tu.utilisation.fleet_utilisation(frame1),
                                      tu.utilisation.fleet_utilisation(frame0)),
    "map_is_recomputed": map_points(m) == prepared_points(frame1),
    "map_changed": map_points(m) != map0,
}}))
""").json()
    assert after["version"] > before["version"]
    assert after["records"] == after["rows"] == first + second
    assert after["view_is_recomputed"] is True
    assert after["fleet_changed"] is True
    assert after["daily_changed"] is True
    assert after["util_fn_changed"] is True
    # Three more hours of counter readings add operating hours.
    assert after["operating_after"] > after["operating_before"]
    assert after["map_is_recomputed"] is True
    _no_problems(k)
    k.run("pump.stop(); tail.stop()")


def test_kernel_stays_responsive_while_the_tail_ingests_thousands_per_second(
    sandbox, start_kernel, customer_records
) -> None:
    """While 30,000 records stream in for about 6 s (written at 5,000/s; the tail must keep
    up with at least 2,000/s), trivial cells answer in < 1 s, and the pump coalesces: at most
    ``rate_hz`` redraws a second (plus one) although a new batch arrives before every tick."""
    admin = sandbox.env(admin=True)
    topic = _new_topic(admin, "live-kernel-load")
    total = 30_000
    records = (customer_records * (total // len(customer_records) + 1))[:total]
    k = start_kernel({**admin, "TU_TOPIC": topic})
    k.run(SETUP)
    k.run(f"""
m, u = MachineMap(live=True), UtilisationView(live=True)
# Small batches: many more batches arrive than the pump may redraw.
tail = conn.tail(start=datetime.now(UTC) - timedelta(seconds=5), poll_records=500)
pump = bind(tail, m, u, rate_hz={RATE_HZ})
t_bind = time.monotonic()
await asyncio.sleep(1.0)
""")
    done: queue.Queue[BaseException | float] = queue.Queue()

    def produce() -> None:
        try:
            t0 = time.monotonic()
            _replay(admin, topic, records, per_s=5_000)
            done.put(time.monotonic() - t0)
        except BaseException as exc:
            done.put(exc)

    writer = threading.Thread(target=produce, daemon=True)
    t_write = time.monotonic()
    writer.start()
    samples: list[tuple[float, float, int]] = []  # (sent at, round trip s, records seen)
    deadline = t_write + 90
    while time.monotonic() < deadline:
        sent = time.monotonic()
        cell = k.run("tail.stats.records")
        samples.append((sent, cell.seconds, int(cell.result or 0)))
        if samples[-1][2] >= total:
            break
        time.sleep(0.2)
    writer.join(60)
    produced = done.get_nowait()
    if isinstance(produced, BaseException):
        raise produced
    assert samples[-1][2] == total, f"the tail saw {samples[-1][2]} of {total} records"

    # A lower bound of the ingest rate: from the last cell that saw no record (or the first
    # write) to the answer of the first cell that saw them all.
    began = max([t_write] + [s[0] for s in samples if s[2] == 0])
    ingest_s = samples[-1][0] + samples[-1][1] - began
    rate = total / ingest_s
    during = [s for s in samples if 0 < s[2] < total]
    slowest = max(s[1] for s in samples)
    stats = k.run(f"""
await wait_for(lambda: drawn({total}), "the last redraw", limit=60)
elapsed = time.monotonic() - t_bind
print(json.dumps({{"elapsed": elapsed, "redraws": pump.redraws, "ticks": pump.ticks,
                   "batches": tail.stats.batches}}))
""").json()
    print(f"produced {total} in {produced:.1f} s; tail ingest ≈ {rate:,.0f} rec/s over "
          f"{ingest_s:.1f} s; {len(during)} cells during ingest, slowest {slowest * 1000:.0f} ms; "
          f"{stats['redraws']} redraws of {stats['batches']} batches in {stats['elapsed']:.1f} s")
    assert rate >= 2_000, f"the tail ingested only {rate:,.0f} records/s"
    assert len(during) >= 10, "too few cells ran during the ingest to judge responsiveness"
    assert slowest < 1.0, (
        f"a trivial cell took {slowest:.2f} s: {[round(s[1], 3) for s in samples]}")
    assert 1 <= stats["redraws"] <= RATE_HZ * stats["elapsed"] + 1
    assert stats["batches"] > 2 * stats["redraws"], "the pump did not coalesce batches"
    assert stats["ticks"] <= RATE_HZ * stats["elapsed"] + 1
    _no_problems(k)
    k.run("pump.stop(); tail.stop()")
