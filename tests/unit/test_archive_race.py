"""Archivers started at the same instant on a new URI, without Kafka (the in-memory consumer
behind ``archive._source``): creation is fenced like a commit, so each ends in success or
the clear "another archiver" error, and the archive has one identity and every offset once."""

from __future__ import annotations

import functools
import io
import json
import shutil
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import fastavro
import polars as pl
import pytest
from deltalake import DeltaTable

from tu_analytics import _pipeline
from tu_analytics._connection import Connection
from tu_analytics._decode import ERRORS_SCHEMA
from tu_analytics._fake import FakeConsumer, FakeRegistry
from tu_analytics._settings import Secret, Settings
from tu_analytics.archive import _layout as L
from tu_analytics.archive._store import Store
from tu_analytics.archive.reader import scan_archive
from tu_analytics.archive.writer import Archiver
from tu_analytics.errors import ArchiveConflictError, ArchiveError

SCHEMA = (Path(_pipeline.__file__).parent / "sandbox" / "schemas"
          / "machine_insights_v1.avsc").read_text()
SID = 7
#: Records per partition of the in-memory topic.
PER_PARTITION = 300
T0 = 1_764_000_000_000


@functools.cache
def _value(i: int) -> bytes:
    buf = io.BytesIO()
    buf.write(b"\x00" + struct.pack(">i", SID))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(json.loads(SCHEMA)),
                               {"Metadata": {"MachineId": f"M{i % 5}", "UnitId": i}})
    return buf.getvalue()


def _topic(settings: Settings) -> FakeConsumer:
    """A fresh consumer of the same two-partition topic (one per reader: not thread-safe)."""
    fake = FakeConsumer(topic=settings.topic)
    fake.add_partitions(2)
    for p in (0, 1):
        fake.extend(p, [T0 + i * 1000 for i in range(PER_PARTITION)],
                    value=lambda i: _value(i % 50))
    return fake


def _conn() -> Connection:
    settings = Settings(bootstrap_servers="fake:9092", topic="fake",
                        schema_registry_url="http://registry.invalid",
                        security_protocol="SASL_PLAINTEXT", sasl_username="u",
                        sasl_password=Secret("pw"))
    return Connection(settings, consumer=_topic, registry=FakeRegistry({SID: SCHEMA}))


def _at_once(fns: list[Callable[[], object]]) -> list[object]:
    """Run ``fns`` on threads released together; each one's result or exception."""
    gate = threading.Barrier(len(fns))
    out: list[object] = [None] * len(fns)

    def go(i: int) -> None:
        gate.wait()
        try:
            out[i] = fns[i]()
        except Exception as exc:  # collected and asserted on by the caller
            out[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return out


def _frames() -> dict[str, pl.DataFrame]:
    main = pl.DataFrame(schema={"partition": pl.Int32, "offset": pl.Int64,
                                "kafka_timestamp": pl.Datetime("ms", "UTC"),
                                "schema_id": pl.Int32, "MachineId": pl.String})
    long = main.with_columns(pl.lit("F1", dtype=pl.String).alias("CodeIdentifier"))
    return {L.MAIN: main, "fault_codes": long, "can_messages": long,
            L.ERRORS: pl.DataFrame(schema=ERRORS_SCHEMA)}


def _ids_and_versions(uri: Path) -> tuple[set[str], set[int]]:
    """The archive ids in every table's description and every table's versions."""
    ids: set[str] = set()
    versions: set[int] = set()
    for table in sorted(p for p in uri.iterdir() if p.is_dir()):
        dt = DeltaTable(str(table))
        ids.add(json.loads(dt.metadata().description)["archive_id"])
        versions.add(dt.version())
    return ids, versions


def test_simultaneous_creation_makes_one_archive(tmp_path: Path) -> None:
    frames = _frames()
    for rep in range(25):
        uri = tmp_path / f"a{rep}"
        create = functools.partial(Store.create_or_open, str(uri), "t1", "insights", frames)
        got = _at_once([create] * 4)
        stores = [s for s in got if isinstance(s, Store)]
        assert len(stores) == 4, got
        assert len({s.identity.archive_id for s in stores}) == 1
        # Nobody's create was retried onto the winner's table as version 1.
        assert _ids_and_versions(uri) == ({stores[0].identity.archive_id}, {0})
        assert sorted(p.name for p in uri.iterdir()) == sorted([*frames, L.GAPS])


def _archiver(uri: str) -> Callable[[], object]:
    arch = Archiver(_conn(), uri, max_records=150, say=lambda m: None)
    # Commits held back a little: both archivers are surely still running when one commits.
    arch.before_main = lambda: time.sleep(0.05)
    return lambda: arch.run(once=True)


def test_two_archivers_started_at_once_on_a_new_uri_end_in_one_exact_table(
        tmp_path: Path) -> None:
    stopped = 0
    for rep in range(6):
        uri = str(tmp_path / f"two{rep}")
        outcomes = _at_once([_archiver(uri), _archiver(uri)])
        for out in outcomes:
            if isinstance(out, BaseException):
                assert isinstance(out, ArchiveConflictError), repr(out)
                assert "another archiver" in str(out)
                stopped += 1
        _archiver(uri)()  # whoever stopped: a rerun finishes its work
        main = scan_archive(uri).collect()
        keys = list(zip(main["partition"], main["offset"], strict=True))
        assert len(keys) == len(set(keys)) == 2 * PER_PARTITION
        ids, _ = _ids_and_versions(Path(uri))
        assert len(ids) == 1
    assert stopped >= 1


def test_readers_of_a_half_created_archive_say_another_archiver_is_creating_it(
        tmp_path: Path) -> None:
    uri = tmp_path / "half"
    (uri / L.MAIN / "_delta_log").mkdir(parents=True)  # a creator between mkdir and commit
    with pytest.raises(ArchiveError, match="another archiver is creating the archive"):
        scan_archive(str(uri))
    store = Store.create_or_open(str(uri), "t1", "insights", _frames())  # it completes
    assert _ids_and_versions(uri) == ({store.identity.archive_id}, {0})
    assert scan_archive(str(uri)).collect().height == 0
    # A table main lists that does not exist yet (its creator is still at it).
    shutil.rmtree(uri / "can_messages")
    with pytest.raises(ArchiveError, match="has no table 'can_messages' yet: another archiver"):
        scan_archive(str(uri), table="can_messages")
