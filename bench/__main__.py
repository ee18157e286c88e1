"""Run every benchmark of this folder (`make bench`); each prints its ratios to its baseline.

Each runs in a process of its own: several set Django up, each on its own scratch database, and
Django is set up once a process.
"""

import pkgutil
import subprocess
import sys
from pathlib import Path

# Not benchmarks: the shared helpers, and the server module bench.ingest runs under gunicorn.
SKIP = {"harness", "ingest_floor", "__main__"}


def main() -> int:
    failed = []
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
        if info.name in SKIP or info.name.startswith("_"):
            continue
        print(f"\n=== bench.{info.name} ===", flush=True)
        if subprocess.run([sys.executable, "-m", f"bench.{info.name}"], check=False).returncode != 0:
            failed.append(info.name)
    if failed:
        print(f"\nbelow target: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
