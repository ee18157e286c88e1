"""The chaos run: load against a hub on private PostgreSQL and Redis while faults are injected.

Two kinds of load run at once: usage events posted to `/v1/usage_events`, and lifecycle calls
(`/v1/identify`, `/v1/subscriptions`) whose activities a Celery worker (with its beat) delivers
to a local Segment stand-in. Faults, in turn: SIGKILL of a gunicorn worker, of the Celery worker
(its whole process group, beat included; a new one is started), a Redis restart (empty: queued
tasks are lost) and a PostgreSQL crash (`pg_ctl -m immediate`, recovery from the WAL).
"""

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
from tests.processes import BIN, ROOT, CeleryWorker, free_port
from tests.segment_standin import SegmentStandIn

FERNET_KEY = "GAW81VnGy_yUPqjZdtDEvDzEpCDBY2QBOtNJ35o_zHk="
WRITE_KEY = "wk_chaos_0123456789abcdef"


@dataclass
class ChaosReport:
    seconds: float = 0
    events_acked: int = 0
    events_stored: int = 0
    requests_ok: int = 0
    requests_failed: int = 0  # refused, reset or 5xx during a fault; retried with the same ids
    duplicates_answered: int = 0
    lifecycle_ok: int = 0  # lifecycle calls answered 2xx (their activities must exist)
    lifecycle_failed: int = 0  # refused, reset or 5xx during a fault; retried
    lifecycle_committed_unanswered: int = 0  # a retry found the change made (409): answer lost
    activities_stored: int = 0
    activities_delivered: int = 0
    messages_received: int = 0  # by the stand-in, duplicates included
    delivery_wait: float = 0  # seconds from the end of the load until everything had arrived
    faults: collections.Counter = field(default_factory=collections.Counter)
    # Celery workers that exited on their own and were started again, as a supervisor would
    # (`hub_run` does; systemd's Restart=always in production): {the worker's last error: times}.
    worker_exits: collections.Counter = field(default_factory=collections.Counter)

    def lines(self) -> list[str]:
        faults = ", ".join(f"{k} x{v}" for k, v in sorted(self.faults.items())) or "none"
        return [
            f"chaos: {self.seconds:.0f} s, faults survived: {faults}",
            f"chaos: {self.events_acked} events answered 2xx, {self.events_stored} stored "
            f"(each exactly once), {self.duplicates_answered} duplicates answered 2xx",
            f"chaos: {self.requests_ok} requests ok, {self.requests_failed} failed during faults and retried",
            f"chaos: {self.lifecycle_ok} lifecycle calls answered 2xx, {self.lifecycle_failed} failed during "
            f"faults and retried, {self.lifecycle_committed_unanswered} committed with the answer lost",
            "chaos: Celery workers that exited on their own and were started again: "
            + (", ".join(f"{why} x{n}" for why, n in self.worker_exits.items()) or "none"),
            f"chaos: {self.activities_stored} activities stored, {self.activities_delivered} delivered "
            f"(each at least once) in {self.messages_received} messages "
            f"({self.messages_received - self.activities_delivered} resent under the same messageId), "
            f"all arrived {self.delivery_wait:.1f} s after the load stopped",
        ]


class ChaosHub:
    """gunicorn (2 workers) and a Celery worker with beat on a private PostgreSQL and Redis,
    delivering to a Segment stand-in, with fault injection."""

    def __init__(self, base: Path):
        self.base = base
        self.pg = PrivatePostgres(base)
        self.redis = PrivateRedis(base)
        self.standin = SegmentStandIn(write_key=WRITE_KEY)
        self.port = free_port()
        self.web: subprocess.Popen | None = None
        self.worker: CeleryWorker | None = None
        self.workers_started = 0
        self.worker_lock = threading.Lock()  # the supervisor and the worker fault take turns

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "DEBUG": "0", "SECRET_KEY": "chaos-only-secret-key-0123456789-0123456789-0123456789",
            "HUB_ENCRYPTION_KEYS": FERNET_KEY, "ALLOWED_HOSTS": "*", "DATABASE_URL": self.db_url,
            "CELERY_BROKER_URL": self.redis.url, "CELERY_RESULT_BACKEND": self.redis.url,
            "SECURE_SSL_REDIRECT": "0", "STATIC_MANIFEST": "0",
            "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT), "DATABASE_CONN_MAX_AGE": "60",
            # Rate limiting stays on (its Redis is restarted too: it must fail open), just high.
            "HUB_RATE_LIMIT": "1000000/60s",
            # The stand-in is on loopback; retries and sweeps fast enough for a short run.
            "HUB_OUTBOUND_ALLOW_NETWORKS": "127.0.0.0/8",
            "HUB_DELIVERY_SWEEP_SECONDS": "0.5", "HUB_DELIVERY_BACKOFF_BASE": "0.3",
            "HUB_DELIVERY_BACKOFF_MAX": "1.5", "HUB_DELIVERY_TIMEOUT": "2", "HUB_DELIVERY_SEND_BUDGET": "5",
        })  # fmt: skip
        return env

    def start(self) -> ChaosHub:
        self.pg.init()
        self.db_url = self.pg.create_database("hub")
        self.redis.start()
        self.standin.start()
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=self.env(), check=True)
        config = {
            "workspace": "Chaos",
            "apps": [{"name": "Chaos app", "api_keys": ["chaos"],
                      "plans": [{"name": "Basic", "price": 10}, {"name": "Pro", "price": 30}]}],
            "integrations": [{"name": "Segment stand-in", "write_key": WRITE_KEY, "region": "custom",
                              "custom_host": self.standin.url, "apps": ["Chaos app"]}],
        }  # fmt: skip
        out = subprocess.run(
            [sys.executable, "manage.py", "hub_apply", "-"], cwd=ROOT, env=self.env(), check=True, text=True,
            capture_output=True, input=json.dumps(config),
        ).stdout  # fmt: skip
        app = json.loads(out)["apps"][0]
        self.headers = {"X-Mantle-App-Id": app["id"], "X-Mantle-App-Api-Key": app["api_keys"][0]["secret"]}
        self.web_log = open(self.base / "gunicorn.log", "wb")  # noqa: SIM115 - closed in stop()
        self.web = subprocess.Popen(
            [str(BIN / "gunicorn"), "hub.wsgi", "--bind", f"127.0.0.1:{self.port}", "--workers", "2",
             "--timeout", "30", "--graceful-timeout", "5"],
            cwd=ROOT, env=self.env(), stdout=self.web_log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.start_celery_worker()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not become ready")

    def start_celery_worker(self) -> None:
        """A Celery worker (2 pool processes) with an embedded beat, on the private servers."""
        self.workers_started += 1
        n = self.workers_started
        worker = CeleryWorker(name=f"chaos{n}", concurrency=2)
        worker.env = {**self.env(), "LOG_LEVEL": "INFO"}  # its "ready." line is logged at INFO
        # Each incarnation its own schedule file: a SIGKILLed beat may leave its file half-written.
        worker.args += ["--beat", "--schedule", str(self.base / f"beat-{n}")]
        worker.log_path = self.base / f"celery-{n}.log"
        self.worker = worker.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def web_workers(self) -> list[int]:
        children = Path(f"/proc/{self.web.pid}/task/{self.web.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def db(self) -> psycopg.Connection:
        return psycopg.connect(self.db_url.replace("postgres://", "postgresql://"))

    # Faults -------------------------------------------------------------------------------------
    def kill_web_worker(self) -> None:
        workers = self.web_workers()
        if workers:
            os.kill(random.choice(workers), signal.SIGKILL)

    def kill_celery_worker(self) -> None:
        """SIGKILL the worker's whole process group (main, pool and beat), then start a new one."""
        with self.worker_lock:
            self.worker.kill(signal.SIGKILL)
            self.worker.stop()  # closes its log
            self.start_celery_worker()

    def supervise(self, report: ChaosReport, stop: threading.Event) -> threading.Thread:
        """Start again a worker that exits on its own, as a process supervisor would: Celery's
        worker exits ("Unrecoverable error") on some broker connection losses, such as a Redis
        restart that races its reconnection (kombu's Redis transport). The report counts them."""

        def run():
            while not stop.wait(0.5):
                with self.worker_lock:
                    proc = self.worker.proc
                    if proc is None or proc.poll() is None:
                        continue
                    errors = [
                        line for line in self.worker.output().splitlines() if "Unrecoverable error" in line
                    ]
                    why = (
                        errors[-1].split("Unrecoverable error: ", 1)[-1][:120]
                        if errors
                        else f"exit {proc.returncode}"
                    )
                    report.worker_exits[why] += 1
                    self.worker.stop()
                    self.start_celery_worker()

        thread = threading.Thread(target=run, name="supervisor", daemon=True)
        thread.start()
        return thread

    def restart_redis(self) -> None:
        self.redis.restart()

    def restart_postgres(self) -> None:
        self.pg.restart(mode="immediate")

    def stop(self) -> None:
        with self.worker_lock:
            if self.worker:
                self.worker.stop()
        if self.web and self.web.poll() is None:
            os.killpg(self.web.pid, signal.SIGTERM)
            self.web.wait(timeout=30)
        self.standin.stop()
        self.redis.stop()
        self.pg.destroy()
        if getattr(self, "web_log", None):
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


# One customer's life: (method, path, body without customerId, the activity it records).
_LIFE = [
    ("POST", "/v1/identify", {}, "installed"),  # a first identify is an install
    ("POST", "/v1/subscriptions", {"planId": "Basic"}, "subscribed"),
    ("POST", "/v1/subscriptions", {"planId": "Pro"}, "upgraded"),
    ("POST", "/v1/subscriptions", {"planId": "Basic"}, "downgraded"),
    ("DELETE", "/v1/subscriptions", {}, "unsubscribed"),
]


def _lifecycle_load(
    hub: ChaosHub, report: ChaosReport, stop: threading.Event, name: str, acked: collections.Counter, lock
) -> None:
    """Customers through installs and plan changes; `acked[(customer, kind)]` counts 2xx answers.

    A call that failed (refused, reset, 5xx) is sent again. A 409 on such a retry means the
    earlier attempt committed and only its answer was lost: not counted as acknowledged, and the
    customer moves on. A 409 on a first attempt is a bug.
    """
    session = requests.Session()
    n = 0
    while not stop.is_set():
        ref = f"{name}-{n}"
        n += 1
        for method, path, body, kind in _LIFE:
            payload = (
                {"platformId": ref, "name": ref} if path == "/v1/identify" else {**body, "customerId": ref}
            )
            for attempt in range(200):
                try:
                    response = session.request(method, f"{hub.url}{path}", json=payload, headers=hub.headers,
                                                timeout=15)  # fmt: skip
                except requests.RequestException:
                    response = None
                if response is not None and response.status_code == 200:
                    with lock:
                        report.lifecycle_ok += 1
                        acked[(ref, kind)] += 1
                    break
                if response is not None and response.status_code == 409 and attempt > 0:
                    with lock:
                        report.lifecycle_committed_unanswered += 1
                    break
                if response is not None and response.status_code < 500:
                    raise AssertionError(f"{method} {path} {payload}: {response.status_code} {response.text}")
                with lock:
                    report.lifecycle_failed += 1
                time.sleep(0.2)
            else:
                raise AssertionError(f"{name}: {method} {path} never got an answer in 200 attempts")


def _wait_all_delivered(hub: ChaosHub, ids: set[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ids <= set(hub.standin.message_ids()):
            return
        time.sleep(0.2)
    with hub.db() as conn:
        statuses = conn.execute(
            "SELECT status, count(*), max(last_error) FROM integrations_delivery GROUP BY status"
        ).fetchall()
    missing = ids - set(hub.standin.message_ids())
    with hub.db() as conn:
        # Where the missing ones are stuck: not fanned out (dispatched or not), or fanned out
        # without reaching the stand-in; and what the database is doing (a transaction holding
        # claimed rows, a lock).
        stuck = conn.execute(
            "SELECT NOT EXISTS (SELECT 1 FROM hub_activityoutbox o WHERE o.activity_id = a.id), d.status, "
            "count(*) FROM hub_activity a "
            "LEFT JOIN integrations_delivery d ON d.activity_id = a.id "
            "WHERE a.id = ANY(%s::uuid[]) GROUP BY 1, 2",
            [sorted(missing)],
        ).fetchall()
        busy = conn.execute(
            "SELECT pid, state, now() - xact_start, wait_event_type, wait_event, left(query, 200) "
            "FROM pg_stat_activity WHERE state <> 'idle' AND pid <> pg_backend_pid()"
        ).fetchall()
    raise AssertionError(
        f"{len(missing)} of {len(ids)} activities never reached the stand-in in {timeout:.0f} s; "
        f"deliveries by status: {statuses}; the missing ones by (dispatched, delivery status): {stuck}; "
        f"busy sessions: {busy}; worker log tail: {hub.worker.output()[-4000:]}"
    )


def _client(
    target, hub, report, stop: threading.Event, name: str, acked, lock, errors: list
) -> threading.Thread:
    """A load client thread whose exception (an unexpected answer) stops the load and fails the run."""

    def run():
        try:
            target(hub, report, stop, name, acked, lock)
        except BaseException as exc:
            errors.append(f"{name}: {exc!r}")
            stop.set()

    return threading.Thread(target=run, name=name, daemon=True)


def run_chaos(base: Path, *, seconds: float, fault_every: float = 3.0) -> ChaosReport:
    report = ChaosReport()
    hub = ChaosHub(base)
    stop, lock = threading.Event(), threading.Lock()
    supervising = threading.Event()  # set: the supervisor stops (after the delivery wait)
    acked_events: set = set()
    acked_changes: collections.Counter = collections.Counter()
    errors: list[str] = []
    clients = [
        *[_client(_ingest_load, hub, report, stop, f"c{i}", acked_events, lock, errors) for i in range(2)],
        *[_client(_lifecycle_load, hub, report, stop, f"l{i}", acked_changes, lock, errors) for i in range(2)],
    ]  # fmt: skip
    faults = [
        hub.kill_web_worker, hub.restart_redis, hub.kill_celery_worker, hub.kill_web_worker, hub.restart_postgres,
    ]  # fmt: skip
    try:
        hub.start()
        hub.supervise(report, supervising)
        started = time.monotonic()
        for t in clients:
            t.start()
        i = 0
        while time.monotonic() - started < seconds and not stop.is_set():
            time.sleep(fault_every)
            fault = faults[i % len(faults)]
            fault()
            report.faults[fault.__name__] += 1
            i += 1
        stop.set()
        for t in clients:
            t.join(timeout=120)
            assert not t.is_alive(), "a load client hung"
        assert not errors, f"load clients failed: {errors}"
        report.seconds = time.monotonic() - started

        # Every event answered 2xx is stored exactly once.
        with hub.db() as conn:
            stored = dict(conn.execute("SELECT event_id, count(*) FROM events_usageevent GROUP BY event_id"))
        report.events_acked = len(acked_events)
        report.events_stored = len(stored)
        missing = acked_events - stored.keys()
        extra = stored.keys() - acked_events
        twice = [k for k, v in stored.items() if v != 1]
        assert not missing, f"{len(missing)} events answered 2xx are not stored: {sorted(missing)[:5]}"
        assert not twice, f"stored more than once: {twice[:5]}"
        # Stored but never acknowledged can only be a request whose answer was lost to a fault;
        # its client retried with the same ids, so these must be acknowledged later too.
        assert not extra, f"stored but never acknowledged: {sorted(extra)[:5]}"

        # Every lifecycle change answered 2xx recorded its activity...
        with hub.db() as conn:
            recorded = collections.Counter(
                {
                    (ref, kind): count
                    for ref, kind, count in conn.execute(
                        "SELECT c.platform_id, a.kind, count(*) FROM hub_activity a "
                        "JOIN hub_customer c ON c.id = a.customer_id GROUP BY 1, 2"
                    )
                }
            )
            activity_ids = {str(pk) for (pk,) in conn.execute("SELECT id FROM hub_activity")}
        lost = {change: n for change, n in acked_changes.items() if recorded[change] < n}
        assert not lost, f"lifecycle changes answered 2xx without their activity: {list(lost.items())[:5]}"
        report.activities_stored = len(activity_ids)
        assert report.activities_stored >= report.lifecycle_ok > 0

        # ...and every activity reached Segment at least once, duplicates only under its messageId.
        waited = time.monotonic()
        _wait_all_delivered(hub, activity_ids, timeout=60 + seconds / 5)
        report.delivery_wait = time.monotonic() - waited
        hub.standin.assert_each_once_by_id(activity_ids)
        report.activities_delivered = len(hub.standin.message_ids())
        report.messages_received = sum(hub.standin.message_ids().values())
    finally:
        stop.set()
        supervising.set()
        hub.stop()
    return report
