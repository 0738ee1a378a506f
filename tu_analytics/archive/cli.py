"""``tu-analytics archive run|status|compact``: thin, calls the archive package."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ..errors import ConfigurationError

_FORMAT_TOPIC_ENV = {"insights": "TU_TOPIC_INSIGHTS", "raw": "TU_TOPIC_RAW"}


def add_parser(subparsers: Any) -> None:
    """Register ``archive`` and its three commands on the ``tu-analytics`` parser."""
    a = subparsers.add_parser("archive", help="an exactly-once Delta Lake archive of the topic")
    acts = a.add_subparsers(dest="action", required=True)
    run = acts.add_parser("run", help="archive the topic into Delta tables under URI")
    run.add_argument("uri")
    run.add_argument("--once", action="store_true",
                     help="archive up to the end offsets taken at start, then exit")
    run.add_argument("--every", type=float, default=60.0, help="seconds between commits")
    run.add_argument("--max-records", type=int, default=200_000,
                     help="records per commit at most")
    _connection_args(run)
    run.set_defaults(func=_run)
    st = acts.add_parser("status", help="watermarks, lag, gaps and rows of an archive")
    st.add_argument("uri")
    st.add_argument("--json", action="store_true")
    st.add_argument("--offline", action="store_true", help="do not ask the topic for lag")
    _connection_args(st)
    st.set_defaults(func=_status)
    c = acts.add_parser("compact", help="optimize (fewer, larger files) and vacuum")
    c.add_argument("uri")
    c.add_argument("--retention-hours", type=float, default=168.0,
                   help="keep files unreferenced for less than this (default 7 days)")
    c.add_argument("--keep-days", type=float, default=None,
                   help="retention policy: delete archived rows older than this many days")
    c.set_defaults(func=_compact)


def _connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", help="a profile of profiles.toml (else the TU_* environment)")
    p.add_argument("--format", choices=["insights", "raw"], help="which customer topic (sandbox)")


def _connect(args: argparse.Namespace) -> Any:
    from .._connection import connect

    overrides: dict[str, Any] = {}
    if args.format:
        topic = os.environ.get(_FORMAT_TOPIC_ENV[args.format])
        if not topic:
            raise ConfigurationError(f"--format {args.format} needs "
                                     f"{_FORMAT_TOPIC_ENV[args.format]}, or set TU_TOPIC")
        overrides["topic"] = topic
    return connect(profile=args.profile, **overrides)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _run(args: argparse.Namespace) -> int:
    from .writer import Archiver

    arch = Archiver(_connect(args), args.uri, max_records=args.max_records, say=_say)
    with arch.signals():
        res = arch.run(once=args.once, every=args.every)
    _say(f"done: {res.records:,} records in {res.batches} commits, {res.errors} errors, "
         f"{len(res.gaps)} gaps")
    return 0


def _status(args: argparse.Namespace) -> int:
    from .reader import archive_status

    conn = None if args.offline else _connect(args)
    st = archive_status(args.uri, conn, kafka=not args.offline)
    if args.json:
        print(json.dumps(st, indent=1))
        return 0
    print(f"archive {st['archive_id']} of {st['topic']}: {st['rows']:,} rows, "
          f"{st['first']} .. {st['last']}, schema ids {st['schema_ids']}")
    for p in st["partitions"]:
        print(f"  partition {p['partition']}: watermark {p['watermark']}, topic "
              f"[{p['low']}, {p['high']}), lag {p['lag']}")
    for g in st["gaps"]:
        print(f"  GAP partition {g['partition']}: offsets [{g['start']}, {g['end']}) lost to "
              "retention")
    return 0


def _compact(args: argparse.Namespace) -> int:
    from .upkeep import compact

    for line in compact(args.uri, retention_hours=args.retention_hours,
                        keep_days=args.keep_days):
        _say(line)
    return 0
