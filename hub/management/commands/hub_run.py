"""Run the whole hub for development: migrate, bootstrap, then web + worker + scheduler.

Stopping: SIGINT (Ctrl-C) or SIGTERM to this process, or to `make run` (see `_Parent`),
sends SIGTERM to the main process of web, worker and scheduler, each of which stops its own
children as it does in production (a signal to a whole group would reach Celery's pool processes
directly, which the worker reports as errors). Each child runs in a session of its own, so a
terminal's Ctrl-C reaches only this process, and is told by the kernel to stop should this process
die without stopping it (PR_SET_PDEATHSIG). A child that exits on its own is started again (see
`_Restarts`), as a process supervisor would in production.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from hub.bootstrap import demo_curl, hub_bootstrap


class Command(BaseCommand):
    help = "Migrate, create the admin and demo app, and run web, Celery worker and beat until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HUB_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("HUB_PORT", "8000")))
        parser.add_argument("--no-migrate", action="store_true")

    def handle(self, *args, host: str, port: int, no_migrate: bool, **options):
        if not no_migrate:
            call_command("migrate", interactive=False, verbosity=0)
        email = os.environ.get("HUB_ADMIN_EMAIL", "admin@example.com")
        result = hub_bootstrap(email=email, password=os.environ.get("HUB_ADMIN_PASSWORD") or None)
        creds_file = settings.VAR_DIR / "admin-credentials.txt"
        if result.password:
            creds_file.write_text(f"username: {result.username}\npassword: {result.password}\n")
            creds_file.chmod(0o600)

        bin_dir = os.path.dirname(sys.executable)
        commands = {
            "web": [
                os.path.join(bin_dir, "gunicorn"),
                "hub.wsgi",
                "--config",
                str(settings.BASE_DIR / "gunicorn.conf.py"),
                "--bind",
                f"{host}:{port}",
                "--workers",
                os.environ.get("WEB_CONCURRENCY", "2"),
                "--access-logfile",
                "-",
            ],
            "worker": [
                os.path.join(bin_dir, "celery"),
                "-A",
                "hub",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                os.environ.get("CELERY_CONCURRENCY", "2"),
            ],
            "beat": [
                os.path.join(bin_dir, "celery"),
                "-A",
                "hub",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                settings.CELERY_BEAT_SCHEDULE_FILENAME,
            ],
        }
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        parent = _Parent()
        procs = {name: _spawn(cmd) for name, cmd in commands.items()}
        supervisor = _Restarts()
        for name, proc in procs.items():
            supervisor.started(name, proc)
        url = f"http://{host}:{port}/"
        self.stdout.write(self.style.SUCCESS(f"\nThe hub is running at {url}"))
        self.stdout.write(f"  Admin console:  {url}admin/   API docs: {url}api/docs/")
        if result.password:
            self.stdout.write(f"  Log in as {result.username!r} with password {result.password!r}")
            self.stdout.write(f"  (also saved in {creds_file})")
        else:
            self.stdout.write(
                f"  Log in as {result.username!r} (password in {creds_file} or HUB_ADMIN_PASSWORD)"
            )
        demo_app = result.demo["apps"][0]
        self.stdout.write(f"  Demo app id: {demo_app['id']}")
        key_file = settings.VAR_DIR / "demo-api-key.txt"
        self.stdout.write(f"  Demo app API key: {result.demo_api_key}  (kept in {key_file})")
        curl = demo_curl(url=url, app_id=demo_app["id"], api_key=result.demo_api_key)
        self.stdout.write(f"  Send a usage event:\n\n    {curl}\n")
        self.stdout.write("  Press Ctrl-C to stop web, worker and scheduler.\n")

        while not stopping:
            if parent.stopping():
                break
            for name, proc in list(procs.items()):
                if proc.poll() is None:
                    continue
                # A child that dies is started again, as a process supervisor would (systemd's
                # Restart=always): Celery's worker, for one, exits on some broker connection losses
                # (a Redis restart). One that keeps dying waits longer each time, up to 30 s.
                delay = supervisor.delay(name, proc)
                if delay is None:
                    continue  # already waiting to be started again
                with contextlib.suppress(ProcessLookupError):  # what is left of its group
                    os.killpg(proc.pid, signal.SIGKILL)
                self.stderr.write(
                    f"{name} exited with code {proc.returncode}; starting it again in {delay:.0f} s."
                )
            for name in supervisor.due():
                procs[name] = _spawn(commands[name])
                supervisor.started(name, procs[name])
                self.stderr.write(f"{name} started again (pid {procs[name].pid}).")
            time.sleep(0.5)
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{proc.args[0]} did not stop in time; killing it.")
            with contextlib.suppress(ProcessLookupError):  # what is left of its group, if anything
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self.stdout.write("Stopped.")


def _stop_with_parent() -> None:
    """In a child, before exec: SIGTERM it when hub_run dies (Linux; elsewhere nothing)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return
    pr_set_pdeathsig = 1
    if hasattr(libc, "prctl"):
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


class _Parent:
    """The process that started hub_run, watched for signs that it is going away.

    Two cases where a signal meant for the whole hub never reaches hub_run: the parent died (a
    shell between `make` and hub_run that a SIGTERM killed), and GNU make handling SIGINT. make
    assumes a SIGINT came from the terminal, to the whole process group, so it does not pass it
    on: it waits for its recipe to end, then dies. It resets the signal to its default first,
    which /proc/<pid>/status shows (SigCgt), so a make that stops catching SIGINT or SIGTERM is
    stopping. Only make's handlers are read this way; other parents are only watched for dying.
    """

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.pid = os.getppid()
        self.status = Path(f"/proc/{self.pid}/status")
        self.watch_handlers = self._name() in ("make", "gmake")
        self.caught = self._caught() if self.watch_handlers else 0

    def _name(self) -> str:
        try:
            return Path(f"/proc/{self.pid}/comm").read_text().strip()
        except OSError:
            return ""

    def _caught(self) -> int:
        try:
            for line in self.status.read_text().splitlines():
                if line.startswith("SigCgt:"):
                    mask = int(line.split()[1], 16)
                    return sum(1 << (s - 1) for s in self._SIGNALS if mask & (1 << (s - 1)))
        except (OSError, ValueError):
            pass
        return 0

    def stopping(self) -> bool:
        """Whether the parent has died, or is a make that has begun handling SIGINT or SIGTERM."""
        if os.getppid() != self.pid:
            return True
        return self.watch_handlers and bool(self.caught & ~self._caught())


def _spawn(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(command, start_new_session=True, preexec_fn=_stop_with_parent)


class _Restarts:
    """When to start a dead child again: after 1 s, then twice as long each time it dies again
    within a minute of its start, up to 30 s; a child that ran for a minute starts over at 1 s."""

    STEADY_SECONDS = 60.0
    MAX_DELAY = 30.0

    def __init__(self) -> None:
        self.started_at: dict[str, float] = {}
        self.failures: dict[str, int] = {}
        self.waiting: dict[str, float] = {}  # name: when to start it again
        self.noted: set[int] = set()  # pids whose exit was handled

    def delay(self, name: str, proc: subprocess.Popen) -> float | None:
        if proc.pid in self.noted:
            return None
        self.noted.add(proc.pid)
        now = time.monotonic()
        ran = now - self.started_at.get(name, 0.0)
        failures = 0 if ran >= self.STEADY_SECONDS else self.failures.get(name, 0)
        self.failures[name] = failures + 1
        delay = min(self.MAX_DELAY, 2.0**failures)
        self.waiting[name] = now + delay
        return delay

    def due(self) -> list[str]:
        now = time.monotonic()
        return [name for name, at in self.waiting.items() if at <= now]

    def started(self, name: str, proc: subprocess.Popen) -> None:
        self.waiting.pop(name, None)
        self.started_at[name] = time.monotonic()
