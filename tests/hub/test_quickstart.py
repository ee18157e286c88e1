"""`make run`'s embedded defaults: SQLite and the filesystem broker, web + worker + beat, Ctrl-C stops all."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.processes import ROOT

pytestmark = pytest.mark.worker


def _embedded_env(var_dir: Path, port: int) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "CELERY_", "SECRET_KEY", "HUB_"))
    }
    env.update(
        {
            "DEBUG": "1",
            "HUB_VAR_DIR": str(var_dir),
            "HUB_PORT": str(port),
            "HUB_ADMIN_PASSWORD": "quick-start-pw",
            "WEB_CONCURRENCY": "1",
            "CELERY_CONCURRENCY": "1",
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def _processes_with_env(marker: str) -> list[int]:
    """Pids of live processes whose environment contains `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        if marker.encode() in environ and state != "Z":
            found.append(int(entry.name))
    return found


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_hub_run_on_embedded_defaults(tmp_path):
    from tests.processes import free_port

    port = free_port()
    env = _embedded_env(tmp_path, port)
    log = open(tmp_path / "hub_run.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "hub_run"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if b"The hub is running at" in (tmp_path / "hub_run.log").read_bytes():
                try:
                    if _get(f"http://127.0.0.1:{port}/readyz")[0] == 200:
                        break
                except OSError:
                    pass
            assert proc.poll() is None, (tmp_path / "hub_run.log").read_text()
            time.sleep(0.5)
        else:
            pytest.fail("hub_run did not become ready:\n" + (tmp_path / "hub_run.log").read_text())
        output = (tmp_path / "hub_run.log").read_text()
        assert f"http://127.0.0.1:{port}/" in output and "quick-start-pw" in output
        assert (tmp_path / "hub.sqlite3").exists()

        # A task goes through the filesystem broker to the real worker process and back.
        shell = subprocess.run(
            [
                sys.executable,
                "manage.py",
                "shell",
                "-c",
                "from hub.tasks import ping; print(ping.delay('fs').get(timeout=60))",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert "pong:fs" in shell.stdout, shell.stderr
        # kombu's exchange tables live under var/, not in ./control of the checkout.
        assert (tmp_path / "broker" / "control" / "celery.exchange").exists()

        # The demo app has an API key, and the one curl printed sends a usage event (on SQLite).
        curl = next(line.strip() for line in output.splitlines() if line.strip().startswith("curl "))
        sent = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=30)
        assert json.loads(sent.stdout) == {"success": True, "accepted": 1, "duplicates": 0}, sent.stderr
        assert (tmp_path / "demo-api-key.txt").read_text().strip() in curl
        children = _processes_with_env(f"HUB_VAR_DIR={tmp_path}")
        assert len(children) >= 4  # hub_run, gunicorn master + worker, celery worker, beat
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=40)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            log.close()
    assert proc.returncode == 0, (tmp_path / "hub_run.log").read_text()
    # Web, worker and beat are gone with it.
    assert _processes_with_env(f"HUB_VAR_DIR={tmp_path}") == []
