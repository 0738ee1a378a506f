"""The ``tu-analytics`` command. Thin: parses arguments and calls the rooms that do the work."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import TuAnalyticsError


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _window(args: argparse.Namespace) -> int:
    from .cli_window import run_window

    return run_window(args)


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tu-analytics", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    from .sandbox.cli import add_parser as add_sandbox_parser

    add_sandbox_parser(sub)

    w = sub.add_parser("window", help="pull a bounded window of the topic into Parquet")
    g = w.add_mutually_exclusive_group(required=True)
    g.add_argument("--last", help="a duration such as 2h, 30m, 1d")
    g.add_argument("--start", help="ISO time (with --end)")
    w.add_argument("--end", help="ISO time (with --start)")
    w.add_argument("--machine", action="append", default=[], help="a MachineId (repeatable)")
    w.add_argument("--format", choices=["insights", "raw"], help="which customer topic (sandbox)")
    w.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        help="a .parquet file (main frame) or a directory (whole snapshot)",
    )
    w.add_argument("--no-progress", action="store_true")
    w.set_defaults(func=_window)

    d = sub.add_parser("demo", help="sandbox up, last hour, summary and an HTML report")
    d.add_argument("-o", "--output", type=Path, default=Path("tu-analytics-report.html"))
    d.add_argument("--last", default="1h")
    d.set_defaults(func=_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except TuAnalyticsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
