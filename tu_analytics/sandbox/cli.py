"""``tu-analytics sandbox …``: the sandbox's subcommands (``add_parser`` hooks them in)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 0.125:
        raise argparse.ArgumentTypeError(f"must be between 0 and 0.125, not {text}")
    return value


def _up(args: argparse.Namespace) -> int:
    from . import manager

    ports = {k: v for k, v in (("kafka", args.kafka_port), ("registry", args.registry_port)) if v}
    if args.kafka_tls_port:
        ports["kafka_tls"] = args.kafka_tls_port
    res = manager.up(
        ports=ports or None,
        backfill_days=args.backfill_days,
        seed=args.seed,
        late_share=args.late_share,
        say=_say,
    )
    st = res.state
    _say(f"broker   {st.bootstrap} (SASL_PLAINTEXT/PLAIN), {st.tls_bootstrap} (SASL_SSL/PLAIN)")
    _say(f"registry {st.registry_url}, {st.registry_tls_url}")
    _say(f"customers: {', '.join(st.customers)}")
    if args.archive_backfill_days:
        _archive_backfill(args.archive_backfill_days, args.archive, args.customer)
    _say('next: eval "$(tu-analytics sandbox env)"   # then tu_analytics.connect() in Python')
    return 0


def _archive_backfill(days: float, uri: str, customer: str | None) -> None:
    """The ``days`` before the sandbox's first record, simulated as the streamer would and
    written into the archive at ``uri`` (rows with null partition/offset, source=backfill):
    retention keeps such days off any topic."""
    from datetime import UTC, datetime, timedelta

    from .. import connect
    from .._settings import Settings
    from ..archive import backfill
    from . import manager
    from ._state import load_state
    from .streamer import schema_id_map, sim_config_for, simulator_for

    env = manager.env_vars(customer=customer)  # raises when no sandbox is up
    root = manager._root(None)
    state = load_state(root)
    assert state is not None
    end = datetime.fromtimestamp(state.epoch_ms / 1000, UTC)
    # The streamer's own config (its clock offset and shares): the days before the topic's
    # first record continue the very simulation the topic holds, so none is on both sides.
    sim = simulator_for(state, sim_config_for(root))
    written = backfill(connect(Settings.resolve(env=env)), sim, uri,
                       start=end - timedelta(days=days), end=end,
                       customer=env["TU_SASL_USERNAME"], schema_ids=schema_id_map(state),
                       say=_say)
    _say(f"archive {uri}: {written:,} backfilled records before {end.isoformat()}")


def _fetch(args: argparse.Namespace) -> int:
    from . import _jars
    from ._state import cache_dir

    cache = cache_dir()
    got = _jars.ensure_jars(cache, _say)
    _say(f"jars {'resolved into' if got else 'already cached in'} {cache}")
    return 0


def _down(args: argparse.Namespace) -> int:
    from . import manager

    manager.down(say=_say)
    return 0


def _print_status(st: dict[str, Any]) -> None:
    print(f"running:  {st['running']}  ({st['directory']})")
    if st.get("error"):
        print(f"state:    {st['error']}")
    for name, ok in st.get("processes", {}).items():
        print(f"  {name:<10} {'up' if ok else 'down'}")
    fw = st.get("forwarder")
    if fw:
        lag = "unknown" if fw["lag"] is None else f"{fw['lag']:,} records"
        health = "healthy" if fw["healthy"] else f"NOT healthy ({fw['state']})"
        print(f"forwarder: {health}, lag {lag}")
        if fw.get("last_error") and not fw["healthy"]:
            print(f"  last error: {fw['last_error']}")
    sup = st.get("supervisor")
    if sup and sup.get("restarts"):
        print("restarts: " + ", ".join(f"{k} {v}" for k, v in sup["restarts"].items()))
    if st["broker"]:
        print(f"broker:   {st['broker']}  (TLS {st['broker_tls']}, CA {st['ca']})")
        print(f"registry: {st['registry']}  and {st['registry_tls']}")
    for c in st["customers"]:
        print(
            f"customer {c['name']}: {c['machines']} machines, topics "
            f"{c['topics']['insights']}, {c['topics']['raw']}"
        )


def _status(args: argparse.Namespace) -> int:
    from . import manager

    st = manager.status()
    if args.json:
        print(json.dumps(st, indent=1))
    else:
        _print_status(st)
    return 0 if st["running"] else 3


def _env(args: argparse.Namespace) -> int:
    from . import manager

    values = manager.env_vars(
        customer=args.customer, fmt=args.format, admin=args.admin, tls=args.tls
    )
    for k, v in values.items():
        print(f"export {k}={shlex.quote(v)}")
    return 0


def _add_up(sbs: Any) -> None:
    upp = sbs.add_parser(
        "up",
        help="start (or reuse) the sandbox; returns when data can be read",
        description="Start the sandbox in TU_SANDBOX_DIR (Kafka, Schema Registry, forwarder, "
        "streamer, under one supervisor), or return at once if it is already up. Ports "
        "default to the TU_SANDBOX_*_PORT variables, then to 19092 (Kafka), 19094 (Kafka TLS), "
        "19093 (controller), 18081/18083 (registry http/https), 18082 (registry management).",
    )
    upp.add_argument(
        "--kafka-port", type=int, metavar="PORT", help="SASL_PLAINTEXT client port (first up)"
    )
    upp.add_argument(
        "--kafka-tls-port", type=int, metavar="PORT", help="SASL_SSL client port (first up)"
    )
    upp.add_argument(
        "--registry-port", type=int, metavar="PORT", help="Schema Registry HTTP port (first up)"
    )
    upp.add_argument(
        "--backfill-days",
        type=float,
        default=3.0,
        metavar="DAYS",
        help="history to simulate before now on the first up (default: 3)",
    )
    upp.add_argument(
        "--seed", type=int, default=7, help="fleet and simulation seed, first up (default: 7)"
    )
    upp.add_argument(
        "--late-share",
        type=_share,
        metavar="FLOAT",
        help="share (0-0.125) of records held back by coverage outages: machines go out of "
        "coverage for 1-5 h and upload their backlog late (default 0.03; 0 turns it off); "
        "kept for later ups",
    )
    upp.add_argument(
        "--archive-backfill-days",
        type=float,
        metavar="N",
        help="also write the N days before the topic's first record straight into a Delta "
        "archive (--archive), through the archiver's own writer: history older than the topic",
    )
    upp.add_argument(
        "--archive",
        metavar="URI",
        default="archive",
        help="the archive --archive-backfill-days writes to (default: ./archive)",
    )
    upp.add_argument(
        "--customer",
        help="whose insights topic --archive-backfill-days archives (default: the first)",
    )
    upp.set_defaults(func=_up)


def add_parser(subparsers: Any) -> None:
    """Add ``sandbox`` and its subcommands to the ``tu-analytics`` parser's subparsers."""
    sb = subparsers.add_parser("sandbox", help="the local Streaming API sandbox")
    sbs = sb.add_subparsers(dest="action", required=True)
    _add_up(sbs)
    sbs.add_parser("down", help="stop every sandbox process").set_defaults(func=_down)
    sbs.add_parser(
        "fetch", help="only resolve and cache the broker/registry jars (needs mvn)"
    ).set_defaults(func=_fetch)
    stp = sbs.add_parser("status", help="is it running (processes, forwarder lag and health)")
    stp.add_argument("--json", action="store_true", help="machine-readable output")
    stp.set_defaults(func=_status)
    envp = sbs.add_parser("env", help="print TU_* export lines for a customer")
    envp.add_argument("--customer", help="whose credentials (default: the first customer)")
    envp.add_argument(
        "--format", choices=["insights", "raw"], default="insights", help="which topic"
    )
    envp.add_argument("--admin", action="store_true", help="the operator's credentials")
    envp.add_argument(
        "--tls",
        action="store_true",
        help="the SASL_SSL listener and the registry's https URL, with TU_SSL_CA_LOCATION",
    )
    envp.set_defaults(func=_env)
