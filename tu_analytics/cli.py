"""The ``tu-analytics`` command. Thin: parses arguments and calls the rooms that do the work."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import TuAnalyticsError


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _sandbox_up(args: argparse.Namespace) -> int:
    from .sandbox import manager

    ports = {k: v for k, v in (("kafka", args.kafka_port), ("registry", args.registry_port)) if v}
    res = manager.up(
        ports=ports or None, backfill_days=args.backfill_days, seed=args.seed, say=_say
    )
    st = res.state
    _say(f"broker   {st.bootstrap} (SASL_PLAINTEXT/PLAIN)")
    _say(f"registry {st.registry_url}")
    _say(f"customers: {', '.join(st.customers)}")
    _say('next: eval "$(tu-analytics sandbox env)"   # then tu_analytics.connect() in Python')
    return 0


def _sandbox_fetch(args: argparse.Namespace) -> int:
    from .sandbox import _jars
    from .sandbox._state import cache_dir

    cache = cache_dir()
    got = _jars.ensure_jars(cache, _say)
    _say(f"jars {'resolved into' if got else 'already cached in'} {cache}")
    return 0


def _sandbox_down(args: argparse.Namespace) -> int:
    from .sandbox import manager

    manager.down(say=_say)
    return 0


def _sandbox_status(args: argparse.Namespace) -> int:
    from .sandbox import manager

    st = manager.status()
    if args.json:
        print(json.dumps(st, indent=1))
    else:
        print(f"running:  {st['running']}  ({st['directory']})")
        for name, ok in st.get("processes", {}).items():
            print(f"  {name:<10} {'up' if ok else 'down'}")
        if st["broker"]:
            print(f"broker:   {st['broker']}\nregistry: {st['registry']}")
        for c in st["customers"]:
            print(
                f"customer {c['name']}: {c['machines']} machines, topics "
                f"{c['topics']['insights']}, {c['topics']['raw']}"
            )
    return 0 if st["running"] else 3


def _sandbox_env(args: argparse.Namespace) -> int:
    from .sandbox import manager

    values = manager.env_vars(customer=args.customer, fmt=args.format, admin=args.admin)
    for k, v in values.items():
        print(f"export {k}={shlex.quote(v)}")
    return 0


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
