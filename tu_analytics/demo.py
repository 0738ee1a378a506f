"""``tu-analytics demo``: the main job on the local sandbox.

Brings the sandbox up if needed, pulls the last 24 hours for the default customer, prints a
summary and writes a self-contained HTML report (map + utilisation) that opens offline.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_demo(args: argparse.Namespace) -> int:
    from ._connection import connect
    from ._settings import Settings
    from .report import write_report
    from .sandbox import manager

    manager.up(say=_say)
    env = manager.env_vars()
    conn = connect(Settings.resolve(env=env))
    _say(f"pulling the last {args.last} of {env['TU_TOPIC']} as {env['TU_SASL_USERNAME']}")
    win = conn.window(last=args.last)
    s = win.summary()
    print(f"customer: {env['TU_SASL_USERNAME']}")
    print(f"topic:    {s['topic']}")
    print(f"records:  {s['records']:,} from {s['machines']} machines")
    print(f"received: {s['first']} .. {s['last']}")
    print(f"errors:   {s['errors']}")
    faults = win.long.get("fault_codes")
    if faults is not None and faults.height:
        print(f"faults:   {faults['CodeIdentifier'].n_unique()} distinct codes reported")
    out = write_report(
        win.main,
        Path(args.output),
        title=f"Fleet of {env['TU_SASL_USERNAME']}",
        summary=s,
        faults=faults,
        tz=getattr(args, "tz", "site"),
    )
    print(f"report:   {out.resolve()}  (self-contained HTML, opens offline)")
    print(
        'notebooks: eval "$(.venv/bin/tu-analytics sandbox env)" && '
        ".venv/bin/jupyter lab notebooks/"
    )
    print("stop the sandbox with: .venv/bin/tu-analytics sandbox down")
    return 0
