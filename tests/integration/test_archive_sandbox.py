"""The Delta Lake archive against the real sandbox: history() == window(), schema
evolution over three writer versions, retention gaps, two archivers, bad input."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fastavro
import polars as pl
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from deltalake import DeltaTable
from kafka_helpers import Children, _kafka_conf, python_as_nobody, read_all, sr_auth
from polars.testing import assert_frame_equal

import tu_analytics as tu
from tu_analytics.archive import Archiver
from tu_analytics.errors import ArchiveError, ArchiveSchemaError

CLI = [sys.executable, "-m", "tu_analytics.cli", "archive"]
# The real CLI with two test hooks. Each of main's commits is held back 0.3 s after the other
# tables are written: two such archivers certainly overlap, and one commits inside the other's
# window. With TU_TEST_GATE set, every process waits at the archive's creation until
# TU_TEST_GATE_N processes are there, so they create one new archive at the same instant.
SLOW_MAIN = """
import os, sys, time
from tu_analytics.archive._store import Store
from tu_analytics.archive.writer import Archiver
init = Archiver.__init__
def patched(self, *a, **k):
    init(self, *a, **k)
    self.before_main = lambda: time.sleep(0.3)
Archiver.__init__ = patched
create = Store.create_or_open.__func__
def gated(cls, *a, **k):
    gate = os.environ.get("TU_TEST_GATE")
    if gate:
        open(os.path.join(gate, str(os.getpid())), "w").close()
        deadline = time.monotonic() + 300
        while len(os.listdir(gate)) < int(os.environ["TU_TEST_GATE_N"]):
            if time.monotonic() > deadline:
                sys.exit("the other archiver never reached the gate")
            time.sleep(0.001)
        print("released at the gate", file=sys.stderr, flush=True)
    return create(cls, *a, **k)
Store.create_or_open = classmethod(gated)
from tu_analytics.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _partial(conn: tu.Connection, uri: str, max_records: int) -> None:
    """Archive one batch of ``max_records`` and stop: watermarks part-way into the topic."""
    arch = Archiver(conn, uri, max_records=max_records)
    arch.say = lambda m: arch.stop() if m.startswith("archived") else None
    arch.run(once=True)


def _pairs(df: pl.DataFrame) -> list[tuple[int, int]]:
    return list(zip(df["partition"].to_list(), df["offset"].to_list(), strict=True))


def _copy_topic(sandbox, records: list, partitions: int = 1) -> str:
    """A new topic (operator credentials) holding ``records`` (p, o, ts, key, value)."""
    env = sandbox.env(admin=True)
    topic = f"archive-{time.monotonic_ns()}"
    admin = AdminClient(_kafka_conf(env))
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[
        topic].result()
    _produce(env, topic, [(i % partitions, ts, k, v) for i, (_, _, ts, k, v) in
                          enumerate(records)])
    _register_subject(sandbox, topic)
    return topic


def _register_subject(sandbox, topic: str) -> None:
    """The topic's value subject, as a producer registers it (windows check it exists)."""
    from tu_analytics.sandbox.provision import operator_registry_config, schema_text

    with SchemaRegistryClient(operator_registry_config(sandbox.state)) as sr:
        sr.register_schema(f"{topic}-value",
                           Schema(schema_text("machine_insights_v1.avsc"), "AVRO"))


def _produce(env: dict[str, str], topic: str, rows: list) -> None:
    producer = Producer(_kafka_conf(env, **{"linger.ms": 20}))
    for p, ts, key, value in rows:
        producer.produce(topic, value, key, partition=p, timestamp=ts)
    assert producer.flush(30) == 0


@pytest.fixture(scope="module")
def settled(sandbox):
    env = sandbox.env()
    cut = int(time.time() * 1000) - 5000
    time.sleep(6)  # let the forwarder pass the cut
    return cut, read_all(env, env["TU_TOPIC"], before_ms=cut)


def test_history_equals_window_on_random_ranges_across_the_watermark(
        sandbox, settled, tmp_path: Path) -> None:
    cut, records = settled
    conn = sandbox.connect()
    uri = str(tmp_path / "arch")
    _partial(conn, uri, max_records=len(records) // 2)
    wm = {p["partition"]: p["watermark"] for p in tu.archive_status(uri, conn)["partitions"]}
    assert all(w > 0 for w in wm.values())
    rng = random.Random(20261130)
    lo = min(r[2] for r in records)
    # Each partition's last record below its watermark and first at or above it: a range
    # holding both receipt times spans both sides (offsets between them may be markers).
    stamps = {(p, o): ts for p, o, ts, _, _ in records}
    seams = []
    for p, w in wm.items():
        below = max((o for q, o in stamps if q == p and o < w), default=None)
        above = min((o for q, o in stamps if q == p and o >= w), default=None)
        if below is not None and above is not None:
            seams.append(sorted((stamps[p, below], stamps[p, above])))
    assert seams
    both = 0
    for i in range(24):
        first, last = rng.choice(seams)
        a = max(lo - 600_000, first - rng.randrange(0, rng.choice([60_000, 3_600_000, 86_400_000])))
        b = min(cut, last + rng.randrange(1, rng.choice([60_000, 3_600_000, 86_400_000])))
        x, y = (datetime.fromtimestamp(t / 1000, UTC) for t in (a, b))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hist = conn.history(x, y, archive=uri)
            win = conn.window(x, y, progress=False)
        assert_frame_equal(hist.main, win.main)
        assert_frame_equal(hist.errors, win.errors)
        assert hist.long.keys() == win.long.keys()
        for name in win.long:
            assert_frame_equal(hist.long[name], win.long[name])
        keys = _pairs(win.main)
        both += any(o < wm[p] for p, o in keys) and any(o >= wm[p] for p, o in keys)
        assert hist.spec.schema_ids == win.spec.schema_ids, i
    assert both == 24


def _v3(sandbox, topic: str) -> tuple[int, int, str]:
    """Register v2 + a new insight ``TestGauge`` (v3) and a v4 whose ``TestGauge`` holds a
    boolean instead of a double; returns their ids and v3's text."""
    env = sandbox.env(admin=True)
    with SchemaRegistryClient({"url": env["TU_SCHEMA_REGISTRY_URL"],
                               "basic.auth.user.info": sr_auth(env)}) as client:
        v2 = json.loads(client.get_schema(sandbox.state.schema_ids["insights.2"]).schema_str)
        v3 = {**v2, "fields": [*v2["fields"], _gauge("double")]}
        v4 = {**v2, "fields": [*v2["fields"], _gauge("boolean")]}
        ids = []
        for s in (v3, v4):
            # A subject of its own: v4 is incompatible on purpose.
            ids.append(client.register_schema(f"{topic}-{len(ids)}-value",
                                              Schema(json.dumps(s), "AVRO")))
    return ids[0], ids[1], json.dumps(v3)


def _gauge(kind: str) -> dict:
    """A new optional insight ``TestGauge`` in the published layout (value, unit, datetime)."""
    record = {"type": "record", "name": "TestGaugeInsight", "namespace": "com.trackunit.test",
              "fields": [{"name": "value", "type": ["null", kind], "default": None},
                         {"name": "unit", "type": ["null", "string"], "default": None},
                         {"name": "datetime", "type": ["null", "long"], "default": None}]}
    return {"name": "TestGauge", "type": ["null", record], "default": None}


def _reencode(value: bytes, reader: dict, writer: dict, sid: int, extra: dict) -> bytes:
    rec = fastavro.schemaless_reader(io.BytesIO(value[5:]), writer, None)
    rec.update(extra)
    out = io.BytesIO()
    fastavro.schemaless_writer(out, reader, rec)
    return b"\x00" + sid.to_bytes(4, "big") + out.getvalue()


def test_three_schema_versions_in_one_table_equal_the_window(sandbox, settled,
                                                             tmp_path: Path) -> None:
    _, records = settled
    ids = sandbox.state.schema_ids
    v1 = [r for r in records if int.from_bytes(r[4][1:5], "big") == ids["insights.1"]][:400]
    v2 = [r for r in records if int.from_bytes(r[4][1:5], "big") == ids["insights.2"]][:400]
    topic = _copy_topic(sandbox, v1 + v2)
    id3, id4, text3 = _v3(sandbox, topic)
    env = sandbox.env(admin=True)
    with SchemaRegistryClient({"url": env["TU_SCHEMA_REGISTRY_URL"],
                               "basic.auth.user.info": sr_auth(env)}) as client:
        w2 = fastavro.parse_schema(json.loads(client.get_schema(ids["insights.2"]).schema_str))
        w4 = json.loads(client.get_schema(id4).schema_str)
    r3 = fastavro.parse_schema(json.loads(text3))
    now = int(time.time() * 1000)
    gauge = {"TestGauge": {"value": 42.5, "unit": "bar", "datetime": now}}
    _produce(env, topic, [(0, now, r[3], _reencode(r[4], r3, w2, id3, gauge)) for r in v2[:300]])
    conn = sandbox.connect(admin=True, topic=topic)
    uri = str(tmp_path / "evolve")
    _partial(conn, uri, max_records=400)  # v1 only: TestGauge does not exist yet
    conn.archive(uri, once=True)  # v2 and v3 add their columns (schema merge)
    main = tu.scan_archive(uri).collect()
    assert sorted(main["schema_id"].unique().to_list()) == sorted([ids["insights.1"],
                                                                   ids["insights.2"], id3])
    start, end = datetime.fromtimestamp(0, UTC), datetime.fromtimestamp(now / 1000 + 5, UTC)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        win = conn.window(start, end, progress=False)
    got = main.drop("kafka_date", "source").select(win.main.columns).sort("partition", "offset")
    assert_frame_equal(got, win.main)
    assert got.filter(pl.col("schema_id") == ids["insights.1"])["TestGauge"].null_count() == 400
    assert got.filter(pl.col("schema_id") == id3)["TestGauge"].to_list() == [42.5] * 300
    # v4 turns the Float64 column TestGauge into a Boolean: the run stops, nothing written.
    r4 = fastavro.parse_schema(w4)
    flag = {"TestGauge": {"value": True, "unit": None, "datetime": now}}
    _produce(env, topic, [(0, now + 1, r[3], _reencode(r[4], r4, w2, id4, flag))
                          for r in v2[:5]])
    version = DeltaTable(f"{uri}/main").version()
    with pytest.raises(ArchiveSchemaError, match="TestGauge: Float64 in the archive, Boolean"):
        conn.archive(uri, once=True)
    assert DeltaTable(f"{uri}/main").version() == version
    assert tu.scan_archive(uri).collect().height == main.height


def test_retention_gap_is_recorded_with_exact_offsets(sandbox, settled, tmp_path: Path) -> None:
    from confluent_kafka import TopicPartition

    _, records = settled
    topic = _copy_topic(sandbox, records[:1000])
    conn = sandbox.connect(admin=True, topic=topic)
    uri = str(tmp_path / "gap")
    _partial(conn, uri, max_records=300)
    admin = AdminClient(_kafka_conf(sandbox.env(admin=True)))
    done = admin.delete_records([TopicPartition(topic, 0, 650)])
    for fut in done.values():
        fut.result()
    res = conn.archive(uri, once=True)
    assert res.gaps == [(0, 300, 650)]
    st = tu.archive_status(uri, conn)
    assert st["gaps"] == [{"partition": 0, "start": 300, "end": 650}]
    assert st["partitions"] == [{"partition": 0, "watermark": 1000, "low": 650, "high": 1000,
                                 "lag": 0}]
    offsets = tu.scan_archive(uri, columns=["offset"]).collect()["offset"].sort().to_list()
    assert offsets == [*range(300), *range(650, 1000)]  # nothing invented


def _run_cli(children: Children, args: list[str], env: dict[str, str], *,
             slow: bool = False) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-c", SLOW_MAIN, "archive", *args] if slow else [*CLI, *args]
    return children.start(cmd, env)


def test_two_archivers_started_at_once_end_with_one_exact_table(
        sandbox, settled, tmp_path: Path, children: Children) -> None:
    env = sandbox.env()
    conn = sandbox.connect()
    stopped = 0
    uris = []
    for rep in range(3):
        # Both create one new archive at the same instant (a gate in each process), then
        # slowed commits keep both busy for many seconds, so one of them meets the other.
        uri, gate = str(tmp_path / f"two{rep}"), tmp_path / f"gate{rep}"
        gate.mkdir()
        uris.append(uri)
        gated = {**env, "TU_TEST_GATE": str(gate), "TU_TEST_GATE_N": "2"}
        procs = [_run_cli(children, ["run", uri, "--once", "--max-records", "500"], gated,
                          slow=True) for _ in range(2)]
        outs = [(p.wait(timeout=300), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
        for rc, err in outs:
            assert "released at the gate" in err, err
            assert rc in (0, 2), err
            if rc == 2:
                assert "another archiver" in err, err
                stopped += 1
        if stopped:
            break
    assert stopped >= 1
    for uri in uris:
        conn.archive(uri, once=True)  # whoever stopped: its work is done by a rerun
    topic = read_all(env, env["TU_TOPIC"])  # read after the reruns: it covers their ends
    for uri in uris:
        _assert_exact(conn, uri, topic)


def _assert_exact(conn: tu.Connection, uri: str, topic: list) -> None:
    """``uri``'s main holds every offset of ``topic`` below its watermarks once, its long
    frames no row outside main, and every table the one archive id of main."""
    main = tu.scan_archive(uri).collect()
    keys = _pairs(main)
    assert len(keys) == len(set(keys))
    st = tu.archive_status(uri, conn)
    wm = {p["partition"]: p["watermark"] for p in st["partitions"]}
    assert set(keys) == {(p, o) for p, o, *_ in topic if o < wm[p]}
    for name in ("fault_codes", "can_messages"):
        long = tu.scan_archive(uri, table=name).collect()
        dups = long.group_by("partition", "offset").len().join(
            main.select("partition", "offset"), on=["partition", "offset"], how="anti")
        assert dups.height == 0
    for table in Path(uri).iterdir():
        ident = json.loads(DeltaTable(str(table)).metadata().description)
        assert ident["archive_id"] == st["archive_id"], table


def test_bad_input_is_refused_clearly_with_nothing_half_written(
        sandbox, tmp_path: Path, children: Children) -> None:
    env = sandbox.env()
    junk = tmp_path / "junk"
    (junk / "main").mkdir(parents=True)
    (junk / "main" / "part-0.parquet").write_bytes(b"not parquet")
    p = _run_cli(children, ["run", str(junk), "--once"], env)
    assert p.wait(timeout=120) == 2
    assert "not a tu-analytics archive" in p.stderr.read()  # type: ignore[union-attr]
    assert sorted(x.name for x in (junk / "main").iterdir()) == ["part-0.parquet"]
    with pytest.raises(ArchiveError, match="not a tu-analytics archive"):
        tu.scan_archive(str(junk))
    # A table of another topic.
    uri = str(tmp_path / "insights")
    _partial(sandbox.connect(), uri, max_records=300)
    raw = sandbox.connect(fmt="raw")
    with pytest.raises(ArchiveError, match=r"belongs to topic .*insights"):
        raw.archive(uri, once=True)
    with pytest.raises(ArchiveError, match=r"belongs to topic .*insights"):
        raw.history(datetime.now(UTC) - timedelta(hours=1), archive=uri)


def _versions(uri: str) -> dict[str, int]:
    return {t.name: DeltaTable(str(t)).version() for t in sorted(Path(uri).iterdir())}


def _watermarks(uri: str) -> dict[int, int | None]:
    st = tu.archive_status(uri, kafka=False)
    return {p["partition"]: p["watermark"] for p in st["partitions"]}


def test_no_write_permission_stops_the_real_cli_as_another_user_with_nothing_written(
        sandbox) -> None:
    """`tu-analytics archive run` as ``nobody`` (setpriv) on an archive of root's and in a
    directory nobody may not write: a clear error, and the archive as it was."""
    shared = Path(tempfile.mkdtemp(prefix="tu-archive-"))
    shared.chmod(0o755)  # others may enter and read, not write
    try:
        uri = str(shared / "insights")
        _partial(sandbox.connect(), uri, max_records=300)
        before = (_versions(uri), _watermarks(uri), tu.scan_archive(uri).collect())
        python, extra = python_as_nobody()
        for target in (uri, str(shared / "new")):
            out = subprocess.run([*python, "-m", "tu_analytics.cli", "archive", "run", target,
                                  "--once"], env={**os.environ, **sandbox.env(), **extra},
                                 capture_output=True, text=True, timeout=300, check=False)
            assert out.returncode == 2, out.stderr
            assert "no write permission" in out.stderr, out.stderr
            assert "nothing half-written is visible" in out.stderr
        assert (_versions(uri), _watermarks(uri)) == before[:2]
        assert_frame_equal(tu.scan_archive(uri).collect(), before[2])
        assert not (shared / "new").exists()
    finally:
        shutil.rmtree(shared)


def test_full_disk_stops_with_a_clear_error_and_a_consistent_archive(sandbox, settled,
                                                                      tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mnt)], check=True)
    try:
        conn = sandbox.connect()
        uri = str(mnt / "arch")
        with pytest.raises(ArchiveError, match="disk is full"):
            conn.archive(uri, once=True, max_records=2000)
        main = tu.scan_archive(uri).collect()  # readable, and exactly once so far
        keys = _pairs(main)
        assert len(keys) == len(set(keys))
        wm = {p["partition"]: p["watermark"]
              for p in tu.archive_status(uri, kafka=False)["partitions"]}
        assert all(o < wm[p] for p, o in keys)
        long = tu.scan_archive(uri, table="fault_codes").collect()
        assert all(o < wm[p] for p, o in _pairs(long))
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_backfill_writes_older_days_once_and_history_spans_them(sandbox, tmp_path: Path) -> None:
    from tu_analytics.archive import backfill
    from tu_analytics.sandbox.streamer import schema_id_map, simulator_for

    state = sandbox.state
    conn = sandbox.connect()
    customer = sandbox.customers[0]
    epoch = datetime.fromtimestamp(state.epoch_ms / 1000, UTC)
    start = epoch - timedelta(days=1)
    uri = str(tmp_path / "backfilled")
    sim = simulator_for(state)
    n = backfill(conn, sim, uri, start=start, end=epoch, customer=customer,
                 schema_ids=schema_id_map(state))
    assert n > 0
    assert backfill(conn, sim, uri, start=start, end=epoch, customer=customer,
                    schema_ids=schema_id_map(state)) == 0  # done days are skipped
    conn.archive(uri, once=True)
    main = tu.scan_archive(uri).collect()
    old = main.filter(pl.col("source") == "backfill")
    assert old.height == n
    assert old["partition"].null_count() == n
    assert old["offset"].null_count() == n
    assert old["kafka_timestamp"].max() < epoch <= old["kafka_timestamp"].min() + timedelta(days=1)
    expected = sum(1 for r in sim.records(start, epoch, formats=["insights"])
                   if r.customer == customer)
    assert n == expected
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hist = conn.history(start, epoch + timedelta(hours=6), archive=uri)
        win = conn.window(start, epoch + timedelta(hours=6), progress=False)
    assert hist.main.height == n + win.main.height
    assert_frame_equal(hist.main.filter(pl.col("partition").is_not_null()), win.main)
    assert hist.fault_codes.filter(pl.col("partition").is_null()).height == (
        tu.scan_archive(uri, table="fault_codes").filter(pl.col("partition").is_null())
        .collect().height)


def test_follow_mode_commits_and_stops_on_sigterm_after_a_commit(
        sandbox, tmp_path: Path, children: Children) -> None:
    import signal

    env = sandbox.env()
    uri = str(tmp_path / "follow")
    p = _run_cli(children, ["run", uri, "--every", "1", "--max-records", "3000"], env)
    deadline = time.monotonic() + 120
    while not (Path(uri) / "main" / "_delta_log").is_dir() or not tu.scan_archive(
            uri).select(pl.len()).collect().item():
        assert p.poll() is None, p.stderr.read()  # type: ignore[union-attr]
        assert time.monotonic() < deadline
        time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=120) == 0
    err = p.stderr.read()  # type: ignore[union-attr]
    assert "stopping after the current commit" in err
    assert "archived" in err
    out = subprocess.run([*CLI, "status", uri, "--json"], env={**os.environ, **env},
                         capture_output=True, text=True, check=True)
    st = json.loads(out.stdout)
    assert set(st) >= {"partitions", "gaps", "rows", "first", "last", "schema_ids", "topic",
                       "archive_id"}
    assert {tuple(sorted(x)) for x in st["partitions"]} == {
        ("high", "lag", "low", "partition", "watermark")}
    assert st["rows"] == tu.scan_archive(uri).select(pl.len()).collect().item()
    assert st["first"].endswith("Z")
    aid = st["archive_id"]
    dt = DeltaTable(f"{uri}/main")
    for part in st["partitions"]:
        app = f"tu-archive/{aid}/{env['TU_TOPIC']}/{part['partition']}"
        assert dt.transaction_version(app) == part["watermark"]
