"""Run the whole hub for development: migrate, bootstrap, then web + worker + scheduler."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

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
        procs = {name: subprocess.Popen(cmd, start_new_session=True) for name, cmd in commands.items()}
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

        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        exit_code = 0
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    self.stderr.write(f"{name} exited with code {proc.returncode}; stopping the rest.")
                    exit_code = 1
                    stopping = True
                    break
            time.sleep(0.5)
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.stdout.write("Stopped.")
        if exit_code:
            sys.exit(exit_code)
