"""The chaos run: load against a hub on private PostgreSQL and Redis while faults are injected."""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import requests

from tests.private_services import PrivatePostgres, PrivateRedis
from tests.processes import BIN, ROOT, free_port

FERNET_KEY = "GAW81VnGy_yUPqjZdtDEvDzEpCDBY2QBOtNJ35o_zHk="


@dataclass
class ChaosReport:
    seconds: float = 0
    events_acked: int = 0
    events_stored: int = 0
    requests_ok: int = 0
    requests_failed: int = 0  # refused, reset or 5xx during a fault; retried with the same ids
    duplicates_answered: int = 0
    faults: collections.Counter = field(default_factory=collections.Counter)

    def lines(self) -> list[str]:
        faults = ", ".join(f"{k} x{v}" for k, v in sorted(self.faults.items())) or "none"
        return [
            f"chaos: {self.seconds:.0f} s, faults survived: {faults}",
            f"chaos: {self.events_acked} events answered 2xx, {self.events_stored} stored "
            f"(each exactly once), {self.duplicates_answered} duplicates answered 2xx",
            f"chaos: {self.requests_ok} requests ok, {self.requests_failed} failed during faults and retried",
        ]


class ChaosHub:
    """gunicorn (2 workers) on a private PostgreSQL and Redis, with fault injection."""

    def __init__(self, base: Path):
        self.base = base
        self.pg = PrivatePostgres(base)
        self.redis = PrivateRedis(base)
        self.port = free_port()
        self.web: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "DEBUG": "0", "SECRET_KEY": "chaos-only-secret-key-0123456789-0123456789-0123456789",
            "HUB_ENCRYPTION_KEYS": FERNET_KEY, "ALLOWED_HOSTS": "*", "DATABASE_URL": self.db_url,
            "CELERY_BROKER_URL": self.redis.url, "SECURE_SSL_REDIRECT": "0", "STATIC_MANIFEST": "0",
            "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT), "DATABASE_CONN_MAX_AGE": "60",
            # Rate limiting stays on (its Redis is restarted too: it must fail open), just high.
            "HUB_RATE_LIMIT": "1000000/60s",
        })  # fmt: skip
        return env

    def start(self) -> ChaosHub:
        self.pg.init()
        self.db_url = self.pg.create_database("hub")
        self.redis.start()
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=self.env(), check=True)
        out = subprocess.run(
            [sys.executable, "manage.py", "hub_apply", "-"], cwd=ROOT, env=self.env(), check=True, text=True,
            capture_output=True,
            input=json.dumps({"workspace": "Chaos", "apps": [{"name": "Chaos app", "api_keys": ["chaos"]}]}),
        ).stdout  # fmt: skip
        app = json.loads(out)["apps"][0]
        self.headers = {"X-Mantle-App-Id": app["id"], "X-Mantle-App-Api-Key": app["api_keys"][0]["secret"]}
        self.web_log = open(self.base / "gunicorn.log", "wb")  # noqa: SIM115 - closed in stop()
        self.web = subprocess.Popen(
            [str(BIN / "gunicorn"), "hub.wsgi", "--bind", f"127.0.0.1:{self.port}", "--workers", "2",
             "--timeout", "30", "--graceful-timeout", "5"],
            cwd=ROOT, env=self.env(), stdout=self.web_log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not become ready")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def web_workers(self) -> list[int]:
        children = Path(f"/proc/{self.web.pid}/task/{self.web.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    # Faults -------------------------------------------------------------------------------------
    def kill_web_worker(self) -> None:
        workers = self.web_workers()
        if workers:
            os.kill(random.choice(workers), signal.SIGKILL)

    def restart_redis(self) -> None:
        self.redis.restart()

    def restart_postgres(self) -> None:
        self.pg.restart(mode="immediate")

    def stop(self) -> None:
        if self.web and self.web.poll() is None:
            os.killpg(self.web.pid, signal.SIGTERM)
            self.web.wait(timeout=30)
        self.redis.stop()
        self.pg.destroy()
        self.web_log.close()


def _ingest_load(
    hub: ChaosHub, report: ChaosReport, stop: threading.Event, name: str, acked: set, lock
) -> None:
    session = requests.Session()
    n = 0
    sent_batches: list[list[dict]] = []
    while not stop.is_set():
        if sent_batches and random.random() < 0.15:
            batch, is_dup = random.choice(sent_batches), True  # a client retrying a delivered batch
        else:
            batch = [{"eventName": "api_call", "eventId": f"{name}-{n + i}", "customerId": f"shop-{(n + i) % 13}",
                      "properties": {"n": n + i}} for i in range(25)]  # fmt: skip
            n += 25
            is_dup = False
        for _attempt in range(200):
            try:
                response = session.post(f"{hub.url}/v1/usage_events", json={"events": batch}, headers=hub.headers,
                                        timeout=15)  # fmt: skip
            except requests.RequestException:
                response = None
            if response is not None and response.status_code == 200:
                body = response.json()
                with lock:
                    report.requests_ok += 1
                    report.duplicates_answered += body["duplicates"]
                    acked.update(e["eventId"] for e in batch)
                if not is_dup:
                    sent_batches.append(batch)
                break
            with lock:
                report.requests_failed += 1
            time.sleep(0.2)
        else:
            raise AssertionError(f"{name}: a batch never got a 2xx in 200 attempts")


def run_chaos(base: Path, *, seconds: float, fault_every: float = 3.0) -> ChaosReport:
    report = ChaosReport()
    hub = ChaosHub(base).start()
    stop, lock, acked = threading.Event(), threading.Lock(), set()
    clients = [threading.Thread(target=_ingest_load, args=(hub, report, stop, f"c{i}", acked, lock), daemon=True)
               for i in range(2)]  # fmt: skip
    faults = [hub.kill_web_worker, hub.restart_redis, hub.kill_web_worker, hub.restart_postgres]
    started = time.monotonic()
    try:
        for t in clients:
            t.start()
        i = 0
        while time.monotonic() - started < seconds:
            time.sleep(fault_every)
            fault = faults[i % len(faults)]
            fault()
            report.faults[fault.__name__] += 1
            i += 1
        stop.set()
        for t in clients:
            t.join(timeout=120)
            assert not t.is_alive(), "a load client hung"
        report.seconds = time.monotonic() - started
        with psycopg.connect(hub.db_url.replace("postgres://", "postgresql://")) as conn:
            rows = conn.execute(
                "SELECT event_id, count(*) FROM events_usageevent GROUP BY event_id"
            ).fetchall()
        stored = dict(rows)
        report.events_acked = len(acked)
        report.events_stored = len(stored)
        missing = acked - stored.keys()
        extra = stored.keys() - acked
        twice = [k for k, v in stored.items() if v != 1]
        assert not missing, f"{len(missing)} events answered 2xx are not stored: {sorted(missing)[:5]}"
        assert not twice, f"stored more than once: {twice[:5]}"
        # Stored but never acknowledged can only be a request whose answer was lost to a fault;
        # its client retried with the same ids, so these must be acknowledged later too.
        assert not extra, f"stored but never acknowledged: {sorted(extra)[:5]}"
    finally:
        stop.set()
        hub.stop()
    return report
