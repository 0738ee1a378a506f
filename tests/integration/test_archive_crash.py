"""Exactly once under SIGKILL: `tu-analytics archive run` killed at random moments and
between its data writes and main's commit, restarted each time."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from kafka_helpers import Children, read_all
from polars.testing import assert_frame_equal

import tu_analytics as tu
from tu_analytics.errors import ArchiveError

# The real CLI, with main's commit replaced by a SIGKILL after the other tables are written.
KILL_BEFORE_MAIN = """
import os, signal, sys
from tu_analytics.archive.writer import Archiver
init = Archiver.__init__
def patched(self, *a, **k):
    init(self, *a, **k)
    self.before_main = lambda: os.kill(os.getpid(), signal.SIGKILL)
Archiver.__init__ = patched
from tu_analytics.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _start(children: Children, env: dict[str, str], uri: str, *,
           kill_before_main: bool = False, max_records: int = 200) -> subprocess.Popen[str]:
    args = ["archive", "run", uri, "--once", "--max-records", str(max_records)]
    cmd = ([sys.executable, "-c", KILL_BEFORE_MAIN, *args] if kill_before_main
           else [sys.executable, "-m", "tu_analytics.cli", *args])
    return children.start(cmd, env, stdout=subprocess.DEVNULL)


def _wait_for_news(sandbox, uri: str, timeout: float = 60.0) -> None:
    """Until a partition holds a committed record past the archive's watermark: a committed
    transaction of n records moves the stable offset by n + 1 (its marker)."""
    conn = sandbox.connect()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            parts = tu.archive_status(uri, conn)["partitions"]
        except ArchiveError:
            return  # killed before its first commit: the whole topic is news
        if any(p["lag"] >= 2 for p in parts):
            return
        time.sleep(0.5)
    raise AssertionError(f"no new record reached the topic in {timeout:.0f} s")


def test_sigkill_at_random_moments_and_before_commit_keeps_exactly_once(
        sandbox, tmp_path: Path, children: Children) -> None:
    env = sandbox.env()
    uri = str(tmp_path / "crash")
    rng = random.Random(20261130)
    killed = before_main = 0
    while killed < 20 or before_main < 3:
        if before_main < 3 and killed % 7 == 3:
            _wait_for_news(sandbox, uri)  # a run with nothing to archive never reaches main
            p = _start(children, env, uri, kill_before_main=True)
            p.wait(timeout=120)
            assert p.returncode == -signal.SIGKILL, p.stderr.read()  # type: ignore[union-attr]
            before_main += 1
            killed += 1
            continue
        p = _start(children, env, uri)
        time.sleep(rng.uniform(0.8, 2.5))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            killed += 1
        p.wait(timeout=60)
        assert p.returncode in (0, -signal.SIGKILL), p.stderr.read()  # type: ignore[union-attr]
    done = _start(children, env, uri, max_records=20_000)
    assert done.wait(timeout=300) == 0, done.stderr.read()  # type: ignore[union-attr]

    conn = sandbox.connect()
    wm = {p["partition"]: p["watermark"] for p in tu.archive_status(uri, conn)["partitions"]}
    main = tu.scan_archive(uri).collect()
    keys = list(zip(main["partition"], main["offset"], strict=True))
    assert len(keys) == len(set(keys)), "a record was archived twice"
    topic = {(p, o) for p, o, *_ in read_all(env, env["TU_TOPIC"]) if o < wm[p]}
    assert set(keys) == topic, "a record is missing"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        win = conn.window(datetime(2000, 1, 1, tzinfo=UTC),
                          datetime.now(UTC) + timedelta(hours=1), progress=False)
    below = pl.col("offset") < pl.col("partition").replace_strict(wm, return_dtype=pl.Int64)
    for name, expected in [("main", win.main), *win.long.items()]:
        expected = expected.filter(below)
        got = (tu.scan_archive(uri, table=name).collect().select(expected.columns)
               .sort("partition", "offset", maintain_order=True))
        assert_frame_equal(got, expected, check_row_order=name == "main")
