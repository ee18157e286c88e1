"""Run every benchmark of this folder (`make bench`); each prints its ratios to its baseline."""

import importlib
import pkgutil
import sys
from pathlib import Path

SKIP = {"harness", "__main__"}


def main() -> int:
    failed = []
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
        if info.name in SKIP or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{info.name}")
        if not hasattr(module, "main"):
            continue
        print(f"\n=== bench.{info.name} ===", flush=True)
        if module.main([]) != 0:
            failed.append(info.name)
    if failed:
        print(f"\nbelow target: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
