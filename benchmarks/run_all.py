"""Run every benchmark in turn and collect their JSON under benchmarks/results/ (git-ignored).

.venv/bin/python benchmarks/run_all.py            # what `make bench` runs
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
BENCHES = ["bench_decode.py", "bench_simulator.py", "bench_features.py", "bench_window.py"]


def main() -> int:
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    failed = 0
    for name in BENCHES:
        print(f"\n## {name}", flush=True)
        rc = subprocess.run(
            [sys.executable, str(HERE / name), "--json", str(out / name.replace(".py", ".json"))],
            check=False,
        ).returncode
        failed += rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
