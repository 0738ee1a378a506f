"""The ``tu-analytics`` command. Thin: parses arguments and calls the rooms that do the work."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
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
    p.add_argument(
        "--debug", action="store_true",
        help="on failure, print the full traceback as well as the one-line error",
    )
    sub = p.add_subparsers(dest="command", required=True)

    from .sandbox.cli import add_parser as add_sandbox_parser

    add_sandbox_parser(sub)

    from .cli_window import add_window_arguments

    w = sub.add_parser("window", help="pull a bounded window of the topic into Parquet")
    add_window_arguments(w)
    w.set_defaults(func=_window)

    d = sub.add_parser("demo", help="sandbox up, the last 24 h, a summary and an HTML report")
    d.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("tu-analytics-report.html"),
        help="where to write the report (default: %(default)s)",
    )
    d.add_argument("--last", default="24h", help="how far back to read (default: %(default)s)")
    d.add_argument(
        "--tz",
        default="site",
        help="local time of the report: an IANA zone, or 'site' for each machine's own"
        " (default: %(default)s)",
    )
    d.set_defaults(func=_demo)

    from .archive.cli import add_parser as add_archive_parser

    add_archive_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every failure is one line and rc 2; a traceback with --debug
        if args.debug:
            traceback.print_exc()
        print(f"error: {_describe(exc)}", file=sys.stderr)
        return 2


def _describe(exc: BaseException) -> str:
    """The error's text; a driver's or Python's own error also names its type."""
    from ._settings import ENV_VARS, scrub

    text = str(exc) or type(exc).__name__
    if not isinstance(exc, TuAnalyticsError):
        text = f"{type(exc).__name__}: {text}"
    # Our own messages never hold secrets; a driver's might echo its configuration.
    secrets = [os.environ.get(ENV_VARS[n], "") for n in ("sasl_password",
                                                         "schema_registry_password")]
    return scrub(text, secrets)


if __name__ == "__main__":
    raise SystemExit(main())
