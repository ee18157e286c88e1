"""Stopping `make run` / `hub_run`: SIGINT or SIGTERM stops web, worker and scheduler, cleanly.

Each case starts the hub on its embedded defaults (SQLite, filesystem broker) in a folder of its
own, with HOME pointing there too, sends one signal to one process, then checks by process listing
that nothing started by it survives, that its output has no ERROR line, and that gunicorn left no
control socket behind.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.hub.test_quickstart import _embedded_env, _get, _processes_with_env
from tests.processes import ROOT, free_port

pytestmark = pytest.mark.worker


def _start(command: list[str], tmp_path: Path) -> tuple[subprocess.Popen, dict[str, str]]:
    port = free_port()
    env = _embedded_env(tmp_path, port)
    env.pop("XDG_RUNTIME_DIR", None)
    env["HOME"] = str(tmp_path / "home")
    (tmp_path / "home").mkdir()
    log = open(tmp_path / "out.log", "wb")  # noqa: SIM115 - the child holds it; closed below
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp_path / "out.log").read_text()
        if b"The hub is running at" in (tmp_path / "out.log").read_bytes():
            try:
                if _get(f"http://127.0.0.1:{port}/readyz")[0] == 200:
                    break
            except OSError:
                pass
        time.sleep(0.5)
    else:
        pytest.fail("the hub did not become ready:\n" + (tmp_path / "out.log").read_text())
    # The worker and beat log their start after the web is ready; wait for both to be up.
    while time.monotonic() < deadline and not all(
        marker in (tmp_path / "out.log").read_text() for marker in ("ready.", "beat: Starting")
    ):
        time.sleep(0.5)
    return proc, env


def _stop_and_check(proc: subprocess.Popen, tmp_path: Path, signum: int, target_pid: int) -> None:
    marker = f"HUB_VAR_DIR={tmp_path}"
    assert len(_processes_with_env(marker)) >= 4  # hub_run, gunicorn master + worker, celery, beat
    os.kill(target_pid, signum)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=60)
    survivors = _processes_with_env(marker)
    for pid in survivors:  # leave nothing behind for the next test, then fail
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    output = (tmp_path / "out.log").read_text()
    assert survivors == [], output
    assert "Stopped." in output
    assert [line for line in output.splitlines() if "ERROR" in line] == [], output
    assert not (tmp_path / "home" / ".gunicorn").exists()
    assert list((tmp_path / "home").iterdir()) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_hub_run_stops_everything_without_errors(tmp_path, signum):
    proc, _ = _start([sys.executable, "manage.py", "hub_run"], tmp_path)
    _stop_and_check(proc, tmp_path, signum, proc.pid)
    assert proc.returncode == 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_make_run_stops_everything_without_errors(tmp_path, signum):
    venv = Path(sys.executable).parent.parent
    # -o: use the installed virtualenv as it is (never reinstall from a test).
    command = ["make", "--no-print-directory", f"VENV={venv}", "-o", f"{venv}/.installed", "run"]
    proc, _ = _start(command, tmp_path)
    _stop_and_check(proc, tmp_path, signum, proc.pid)


def test_children_stop_when_hub_run_is_killed(tmp_path):
    """SIGKILL leaves hub_run no chance to stop anything: the kernel tells its children
    (PR_SET_PDEATHSIG), which stop as on SIGTERM."""
    proc, _ = _start([sys.executable, "manage.py", "hub_run"], tmp_path)
    marker = f"HUB_VAR_DIR={tmp_path}"
    children = [pid for pid in _processes_with_env(marker) if pid != proc.pid]
    assert len(children) >= 3
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _processes_with_env(marker):
        time.sleep(0.5)
    survivors = _processes_with_env(marker)
    for pid in survivors:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert survivors == [], (tmp_path / "out.log").read_text()
    assert list((tmp_path / "home").iterdir()) == []


def _child(parent_pid: int, marker: str, word: str) -> int | None:
    """The child of hub_run whose command line has `word` (worker, beat, gunicorn)."""
    for pid in _processes_with_env(marker):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent_pid and word.encode() in cmdline:
                return pid
    return None


def test_a_child_that_dies_is_started_again(tmp_path):
    """The Celery worker killed outside hub_run's control (as when it exits on a broker connection
    loss) is started again, and the hub still stops cleanly afterwards."""
    proc, _ = _start([sys.executable, "manage.py", "hub_run"], tmp_path)
    marker = f"HUB_VAR_DIR={tmp_path}"
    worker = _child(proc.pid, marker, "worker")
    assert worker is not None
    os.kill(worker, signal.SIGKILL)
    deadline = time.monotonic() + 60
    again = None
    while time.monotonic() < deadline:
        again = _child(proc.pid, marker, "worker")
        if again not in (None, worker) and "worker started again" in (tmp_path / "out.log").read_text():
            break
        time.sleep(0.5)
    output = (tmp_path / "out.log").read_text()
    assert again not in (None, worker), output
    assert "worker exited with code -9; starting it again in 1 s." in output
    # The new worker is up before the hub is stopped (a worker stopped while starting logs errors).
    while time.monotonic() < deadline and output.count("ready.") < 2:
        time.sleep(0.5)
        output = (tmp_path / "out.log").read_text()
    assert proc.poll() is None, output
    _stop_and_check(proc, tmp_path, signal.SIGTERM, proc.pid)
    assert proc.returncode == 0
