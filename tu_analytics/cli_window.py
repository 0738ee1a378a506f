"""``tu-analytics window``: one window to Parquet, and a short summary on stdout.

Kept light at import: the parser is built for every ``tu-analytics`` command, so the
Kafka client and Polars load only when a window is actually read.
"""

from __future__ import annotations

import argparse
import os
import re
import warnings
from pathlib import Path
from typing import Any

from .errors import ConfigurationError, TuAnalyticsWarning

FORMAT_TOPIC_ENV = {"insights": "TU_TOPIC_INSIGHTS", "raw": "TU_TOPIC_RAW"}

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?", re.I)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_size(text: str) -> int:
    """Bytes from ``"4G"``, ``"512M"``, ``"1.5GiB"`` or ``"1000000"`` (K/M/G/T are 1024-based,
    as in ``ulimit``, ``sort -S`` and ``docker --memory``)."""
    m = _SIZE.fullmatch(text.strip())
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(
            f"cannot read size {text!r}: use e.g. 4G, 512M, 1.5GiB or a number of bytes"
        )
    return int(float(m.group(1)) * 1024 ** _POWERS[m.group(2).lower()])


def positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def add_window_arguments(w: argparse.ArgumentParser) -> None:
    """The ``window`` subcommand's options, each with its help."""
    g = w.add_mutually_exclusive_group(required=True)
    g.add_argument("--last", metavar="DURATION",
                   help="the span up to now: 2h, 30m, 1d, '1h30m', '2 days', '1 hour'")
    g.add_argument("--start", metavar="TIME",
                   help="ISO 8601 start (with --end); without an offset it is local time")
    w.add_argument("--end", metavar="TIME",
                   help="ISO 8601 end, exclusive (with --start); without an offset, local time")
    w.add_argument("--machine", action="append", default=[], metavar="ID_OR_NAME",
                   help="keep only this machine: a Trackunit machine id or the customer's "
                        "EquipmentID (repeatable)")
    w.add_argument("--format", choices=["insights", "raw"],
                   help="which customer topic to read in the sandbox (uses TU_TOPIC_INSIGHTS "
                        "or TU_TOPIC_RAW); default: TU_TOPIC")
    w.add_argument("-o", "--output", required=True, type=Path,
                   help="a .parquet file (main frame) or a directory (whole snapshot)")
    w.add_argument("--lateness", metavar="DURATION",
                   help="how far Kafka timestamps may go backwards; the read runs to end + "
                        "lateness and filters by time (default: TU_LATENESS, else 5m)")
    w.add_argument("--max-records", type=positive_int, metavar="N",
                   help="refuse a window of more than N records before reading it")
    w.add_argument("--max-bytes", type=parse_size, metavar="SIZE",
                   help="refuse a window whose frames would exceed SIZE (e.g. 4G, 512M)")
    w.add_argument("--dedupe", action="store_true",
                   help="drop exact repeats (same key and value bytes), keeping the first")
    w.add_argument("--no-progress", action="store_true",
                   help="no progress bar on stderr")


def run_window(args: argparse.Namespace) -> int:
    from ._connection import connect

    overrides: dict[str, Any] = {}
    if args.format:
        topic = os.environ.get(FORMAT_TOPIC_ENV[args.format])
        if not topic:
            raise ConfigurationError(
                f"--format {args.format} needs {FORMAT_TOPIC_ENV[args.format]} (printed by "
                "`tu-analytics sandbox env`), or set TU_TOPIC and leave out --format"
            )
        overrides["topic"] = topic
    if args.start and not args.end:
        raise ConfigurationError("--start needs --end (or use --last)")
    if args.lateness is not None:
        overrides["lateness"] = args.lateness
    conn = connect(**overrides)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TuAnalyticsWarning)
        win = conn.window(
            start=args.start,
            end=args.end,
            last=args.last,
            machines=args.machine or None,
            progress=not args.no_progress,
            **_guards(args),
        )
    for w in caught:
        print(f"warning: {w.message}")
    _write(win, args.output)
    return 0


def _guards(args: argparse.Namespace) -> dict[str, Any]:
    # Only what was asked for, so the library's own defaults apply otherwise.
    out: dict[str, Any] = {}
    if args.max_records is not None:
        out["max_records"] = args.max_records
    if args.max_bytes is not None:
        out["max_bytes"] = args.max_bytes
    if args.dedupe:
        out["dedupe"] = True
    return out


def _write(win: Any, out: Path) -> None:
    if out.suffix == ".parquet":
        out.parent.mkdir(parents=True, exist_ok=True)
        win.main.write_parquet(out)
        what = "main frame"
    else:
        win.save(out)
        what = "snapshot"
    s = win.summary()
    print(f"topic:    {s['topic']} ({s['format']})")
    print(f"range:    [{win.spec.start.isoformat()} .. {win.spec.end.isoformat()})")
    print(f"records:  {s['records']:,}")
    print(f"machines: {s['machines']}")
    print(f"span:     {s['first']} .. {s['last']}")
    print(f"errors:   {s['errors']}")
    print(f"wrote {what} to {out}")
