"""``tu-analytics window``: one window to Parquet, and a short summary on stdout."""

from __future__ import annotations

import argparse
import os
import warnings
from typing import Any

from ._connection import connect
from .errors import ConfigurationError, DecodeWarning, RetentionWarning

FORMAT_TOPIC_ENV = {"insights": "TU_TOPIC_INSIGHTS", "raw": "TU_TOPIC_RAW"}


def run_window(args: argparse.Namespace) -> int:
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
    conn = connect(**overrides)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DecodeWarning)
        warnings.simplefilter("always", RetentionWarning)
        win = conn.window(
            start=args.start,
            end=args.end,
            last=args.last,
            machines=args.machine or None,
            progress=not args.no_progress,
        )
    for w in caught:
        print(f"warning: {w.message}")
    out = args.output
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
    return 0
