"""Run the official npm clients (installed under tests/node by `make test`) against a live hub."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parent / "node"


def run_node_script(script: str, env: dict[str, str], timeout: float = 120) -> dict:
    """Run tests/node/<script> with node; return the JSON it prints last."""
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules").is_dir():
        pytest.fail("Node.js and tests/node/node_modules are required: run `make node-deps`.")
    proc = subprocess.run(
        [node, str(NODE_DIR / script)], cwd=NODE_DIR, env={**os.environ, **env},
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
