"""The ``tu-analytics`` command. Thin: parses arguments and calls the rooms that do the work."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import traceback
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
    p.add_argument(
        "--debug", action="store_true",
        help="on failure, print the full traceback as well as the one-line error",
    )
    sub = p.add_subparsers(dest="command", required=True)

    sb = sub.add_parser("sandbox", help="the local Streaming API sandbox")
    sbs = sb.add_subparsers(dest="action", required=True)
    upp = sbs.add_parser("up", help="start (or reuse) the sandbox; returns when data can be read")
    upp.add_argument("--kafka-port", type=int)
    upp.add_argument("--registry-port", type=int)
    upp.add_argument("--backfill-days", type=float, default=3.0)
    upp.add_argument("--seed", type=int, default=7)
    upp.set_defaults(func=_sandbox_up)
    sbs.add_parser("down", help="stop every sandbox process").set_defaults(func=_sandbox_down)
    sbs.add_parser(
        "fetch", help="only resolve and cache the broker/registry jars (needs mvn)"
    ).set_defaults(func=_sandbox_fetch)
    stp = sbs.add_parser("status", help="is it running, and what is in it")
    stp.add_argument("--json", action="store_true")
    stp.set_defaults(func=_sandbox_status)
    envp = sbs.add_parser("env", help="print TU_* export lines for a customer")
    envp.add_argument("--customer")
    envp.add_argument("--format", choices=["insights", "raw"], default="insights")
    envp.add_argument("--admin", action="store_true", help="the operator's credentials")
    envp.set_defaults(func=_sandbox_env)

    from .cli_window import add_window_arguments

    w = sub.add_parser("window", help="pull a bounded window of the topic into Parquet")
    add_window_arguments(w)
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
