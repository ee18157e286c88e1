"""Usage metrics at scale (issue 6, item 4): 10 million stored events, reports, ingest rate.

On a scratch database (`hub_bench_metrics`), prints from one run:
  1. the COPY load of N events (--events, 10,000,000 by default) spread over --days days and
     --customers customers (skewed: a few heavy customers, many light ones), stored as a hub
     that received them at their timestamps holds them: each in the monthly partition of its
     month (the partitions made by the maintenance code), with dedupe keys for the last
     HUB_USAGE_EVENT_DEDUPE_DAYS days only; and the build of four metrics from them with the
     product's `metrics_rebuild` (rows/s);
  2. p50/p95 of --queries random report calls (each metric, daily/weekly/monthly, app-wide and
     per customer) and of the customer usage object of random customers, through HTTP on
     gunicorn when the report API exists, in-process otherwise (the output says which);
  3. bulk ingest (1,000-event requests, gunicorn with 2 workers, a Celery worker draining the
     rollups) of --ingest events, timed until every event is stored and counted (no pending
     rollup batch): first into an app of the same metrics on an empty events table (before the
     COPY), then into the app with the N events stored; the ratio full/empty (the verdict's),
     then each once more (a second ratio, without a verdict), each with what it cost (the
     machine's CPU, PostgreSQL's buffers and WAL per event, checkpoints); and PostgreSQL's
     shared_buffers, max_wal_size and checkpoint_timeout, which decide much of it
     (docs/scaling.md).
  4. fresh counts under load (issue 18, item 2), into the app with the N events stored: bulk
     ingest (1,000-event requests from --clients processes) of --fresh-bulk events, the rate
     counted (until no batch is pending) against the rate stored (until the last answer); then
     a steady --steady-rate events/s for --steady-seconds s (--steady-batch events a request,
     each request with one probe event of a metric grouped by request number), and the
     p50/p99 from each request's answer to its probe being counted in the app-wide rollup rows
     (polled every 10 ms). `--fresh-only` runs this phase alone, after a small preload (--events,
     200,000 by default then).
Targets: report p95 <= 50 ms; ingest ratio >= 0.8; counted/stored >= 0.5; steady p99 <= 2 s.

    .venv/bin/python -m bench.metrics [--events 10000000] [--customers 2000] [--days 365]
                                      [--queries 300] [--ingest 100000] [--clients 4]
                                      [--fresh-bulk 100000] [--steady-rate 2000]
                                      [--steady-seconds 15] [--steady-batch 50] [--fresh-only]
"""

from __future__ import annotations

import argparse
import bisect
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from urllib.parse import urlencode

import psycopg

from bench.harness import (
    BIN,
    ROOT,
    _request,
    client_pool,
    database_url,
    dumps,
    gunicorn,
    http_load,
    hub_env,
    machine_busy_seconds,
    manage,
    recreate_database,
)

SHARED_BUFFERS_SIZED_MB = 4096  # what docs/scaling.md asks of a 24 GB machine
MAX_WAL_SIZE_SIZED_MB = 8192  # and of its WAL (docs/scaling.md)
CHECKPOINT_TIMEOUT_SIZED_MIN = 15
DB = os.environ.get("BENCH_METRICS_DB", "hub_bench_metrics")  # another name for a second run at once
USERS_PER_CUSTOMER = 50
PLANS = ("free", "pro", "enterprise")
# (name, event_name, aggregation, property, group_by, filters)
METRICS = (
    ("API calls", "api_call", "count", "", "", None),
    ("Units", "api_call", "sum", "units", "", [{"property": "units", "op": "gt", "value": 0}]),
    ("Active users", "api_call", "unique_count", "user", "", None),
    ("API calls by plan", "api_call", "count", "", "plan", None),
)
REPORT_P95_TARGET_MS = 50.0
INGEST_RATIO_TARGET = 0.8
FRESH_RATIO_TARGET = 0.5
FRESH_P99_TARGET_S = 2.0
# The fresh-counts phase's probe: one event per steady request, grouped by the request's number.
PROBE = ("Fresh probe", "fresh_probe", "count", "", "req", None)


# --- Generated events ---------------------------------------------------------------------------


def customer_weights(customers: int) -> list[float]:
    """Zipf-like activity (exponent 0.8): customer 0 is the heaviest, the tail is light."""
    return [1 / (rank + 1) ** 0.8 for rank in range(customers)]


def _event_name(r: float) -> str:
    return "api_call" if r < 0.8 else ("report_generated" if r < 0.95 else "export")


def _properties(rng: random.Random, customer: int) -> str:
    return (
        f'{{"units": {rng.randrange(0, 100)}, "user": "c{customer}-u{rng.randrange(USERS_PER_CUSTOMER)}", '
        f'"plan": "{PLANS[customer % len(PLANS)]}", "path": "/api/v1/things"}}'
    )


def _copy_slice(args: tuple) -> int:
    """COPY events `first`..`last` (time-ordered across the span) into the events table, each with
    the id and `received_at` ingest would have given it when it arrived, at its timestamp."""
    dsn, app_pk, customer_pks, first, last, total, start_ts, span_s, months, seq_base = args
    rng = random.Random(first)
    cum = []
    acc = 0.0
    for w in customer_weights(len(customer_pks)):
        acc += w
        cum.append(acc)
    month_starts = [start for start, _ in months]
    sql = (
        "COPY events_usageevent (id, app_id, customer_id, event_id, event_name, timestamp, properties,"
        " received_at) FROM STDIN"
    )
    with psycopg.connect(dsn) as conn, conn.cursor() as cur, cur.copy(sql) as copy:
        step = 20_000
        for lo in range(first, last, step):
            hi = min(last, lo + step)
            picks = rng.choices(range(len(customer_pks)), cum_weights=cum, k=hi - lo)
            lines = []
            for i, c in zip(range(lo, hi), picks, strict=True):
                ts = start_ts + span_s * (i + rng.random()) / total
                at = datetime.fromtimestamp(ts, UTC).isoformat()
                # Its month's id base plus the sequence value it would have drawn (events arrive
                # in time order, so the values grow across the months as a real hub's do).
                pk = months[bisect.bisect_right(month_starts, ts) - 1][1] + seq_base + i
                lines.append(
                    f"{pk}\t{app_pk}\t{customer_pks[c]}\tcopy-{i}\t{_event_name(rng.random())}\t{at}\t"
                    f"{_properties(rng, c)}\t{at}\n"
                )
            copy.write("".join(lines))
    return last - first


def history_partitions_make(now: datetime, days: int) -> None:
    """The partitions of a hub that has stored events by month for the last `days` days: the
    migration's partition of the events stored before it, empty in a fresh database, dropped (a
    year on, the scheduler has long retired it, with the same DROP TABLE); each month of the span's
    partition made by the maintenance code."""
    from django.db import connection

    from events.partitions import month_start, usage_event_partitions, usage_event_partitions_ensure

    with connection.cursor() as cursor:
        for partition in usage_event_partitions():
            if partition.low_id is None:
                cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {partition.name})")
                assert not cursor.fetchone()[0], f"{partition.name} is not empty"
                cursor.execute(f"DROP TABLE {partition.name}")
    first = month_start(now - timedelta(days=days))
    months = (now.year - first.year) * 12 + now.month - first.month
    made = usage_event_partitions_ensure(now=first, ahead=months)
    assert len(made) == months, made  # every month of the span but this one (the migration made it)


def copy_events(app_pk: int, customer_pks: list[int], n: int, days: int, now: datetime, procs: int) -> None:
    """Load `n` events with COPY from `procs` processes, each a contiguous stretch of time: each
    event in the partition of its month, as received at its timestamp, with ids from a stretch of
    the id sequence taken for them (so ingest's ids never meet them)."""
    from events.partitions import ID_SEQUENCE, id_base, month_after, month_start

    start = now - timedelta(days=days)
    months = []
    month = month_start(start)
    while month <= now:
        months.append((month.timestamp(), id_base(month)))
        month = month_after(month)
    with psycopg.connect(database_url(DB), autocommit=True) as conn:
        seq_base = conn.execute(
            f"SELECT setval('{ID_SEQUENCE}', nextval('{ID_SEQUENCE}') + %s) - %s", (n, n)
        ).fetchone()[0]
    bounds = [n * k // procs for k in range(procs + 1)]
    jobs = [
        (database_url(DB), app_pk, customer_pks, bounds[k], bounds[k + 1], n, start.timestamp(), days * 86400,
         months, seq_base)
        for k in range(procs)
    ]  # fmt: skip
    with get_context("spawn").Pool(procs) as pool:
        pool.map(_copy_slice, jobs)


def dedupe_keys_load(app_pk: int, now: datetime) -> int:
    """The dedupe keys of the app's events received within the window, in time order, as ingest
    stored them (older ones the maintenance task has pruned); the number stored."""
    from django.conf import settings

    days = settings.HUB_USAGE_EVENT_DEDUPE_DAYS
    cutoff = now - timedelta(days=days) if days else datetime(1970, 1, 1, tzinfo=UTC)
    with psycopg.connect(database_url(DB), autocommit=True) as conn:
        return conn.execute(
            "INSERT INTO events_usageeventkey (app_id, event_id, received_at) "
            "SELECT app_id, event_id, received_at FROM events_usageevent "
            "WHERE app_id = %s AND received_at >= %s ORDER BY received_at",
            (app_pk, cutoff),
        ).rowcount


def ingest_bodies(n: int, prefix: str, customers: int, now: datetime, seed: int) -> list[bytes]:
    """`n` Mantle events in 1,000-event bodies: last 30 days (late ones too), same mix as the COPY."""
    rng = random.Random(seed)
    weights = customer_weights(customers)
    picks = rng.choices(range(customers), weights=weights, k=n)
    base = int(now.timestamp() * 1000)
    events = [
        {
            "eventName": _event_name(rng.random()),
            "eventId": f"{prefix}-{i}",
            "customerId": f"shop-{c}",
            "timestamp": base - rng.randrange(30 * 86400 * 1000),
            "properties": json.loads(_properties(rng, c)),
        }
        for i, c in enumerate(picks)
    ]
    return [dumps({"events": events[i : i + 1000]}) for i in range(0, n, 1000)]


# --- Processes ----------------------------------------------------------------------------------


@contextmanager
def celery_worker(env: dict[str, str], *, concurrency: int = 2) -> Iterator[subprocess.Popen]:
    """A Celery worker with beat (the rollup sweep), stopped on exit; yields its main process."""
    log_path = f"/tmp/{DB}-worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(BIN / "celery"), "-A", "hub", "worker", "--beat", "--schedule", f"/tmp/{DB}-beat",
             "--concurrency", str(concurrency), "--loglevel", "WARNING", "--without-gossip",
             "--without-mingle", "--hostname", f"bench-metrics-{os.getpid()}@%h"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        time.sleep(3)
        if proc.poll() is not None:
            with open(log_path) as f:
                raise RuntimeError(f.read()[-3000:])
        yield proc
    finally:
        # Warm shutdown of the main process (its pool finishes what it runs), then the group.
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "hub.settings"
    import django

    django.setup()


# --- Measuring ----------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def _ms(values: list[float]) -> str:
    p50, p95, top = pct(values, 50) * 1000, pct(values, 95) * 1000, max(values) * 1000
    return f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {top:.1f} ms"


def _pending_batches(conn, app_pk: int) -> int:
    return conn.execute("SELECT count(*) FROM events_rollupbatch WHERE app_id = %s", (app_pk,)).fetchone()[0]


def _wait_drained(conn, app_pk: int, timeout: float) -> float:
    """Wait until the app has no rollup batch pending (every stored event counted); the time then."""
    deadline = time.monotonic() + timeout
    while _pending_batches(conn, app_pk):
        if time.monotonic() > deadline:
            pending = _pending_batches(conn, app_pk)
            raise RuntimeError(f"{pending} rollup batches still pending after {timeout:.0f} s")
        time.sleep(0.02)
    return time.perf_counter()


def server_settings_line(dsn: str) -> str:
    """PostgreSQL's settings that the counting of an ingest into a large hub depends on, each with a
    note when below what docs/scaling.md asks: `shared_buffers` (the rollup and distinct-value
    indexes of 10 M events are some 2.5 GB), and `max_wal_size` and `checkpoint_timeout` (at
    PostgreSQL's defaults, 1 GB and 5 min, the COPY, the build and the ingest runs themselves
    start checkpoints seconds apart, and after each the first change of any page logs an image of
    the whole page)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        buffers, wal, timeout = conn.execute(
            "SELECT pg_size_bytes(current_setting('shared_buffers')), "
            "pg_size_bytes(current_setting('max_wal_size')), "
            "(SELECT setting::int FROM pg_settings WHERE name = 'checkpoint_timeout')"  # seconds
        ).fetchone()
    buffers_mb, wal_mb = buffers // 2**20, wal // 2**20
    notes = []
    if buffers_mb < SHARED_BUFFERS_SIZED_MB:
        notes.append(f"shared_buffers below {SHARED_BUFFERS_SIZED_MB:,} MB: at 10 M events the counting is "
                     "bound by buffer reads, the ingest ratio about 0.7")  # fmt: skip
    if wal_mb < MAX_WAL_SIZE_SIZED_MB or timeout < CHECKPOINT_TIMEOUT_SIZED_MIN * 60:
        notes.append(f"max_wal_size below {MAX_WAL_SIZE_SIZED_MB:,} MB or checkpoint_timeout below "
                     f"{CHECKPOINT_TIMEOUT_SIZED_MIN} min: checkpoints during the ingest runs")  # fmt: skip
    note = f" ({'; '.join(notes)}; docs/scaling.md)" if notes else ""
    timeout_text = f"{timeout // 60} min" if timeout % 60 == 0 else f"{timeout} s"
    return (f"PostgreSQL shared_buffers: {buffers_mb:,} MB, max_wal_size: {wal_mb:,} MB, "
            f"checkpoint_timeout: {timeout_text}{note}")  # fmt: skip


def _database_counts(dsn: str, sessions: frozenset[int] = frozenset()) -> tuple[tuple, frozenset[int]]:
    """The database's blocks read from outside shared_buffers (the OS's cache or the disk) and
    found in them so far, and the server's WAL bytes, full-page images in it and checkpoints so far
    (the whole server's: every database, autovacuum included), once no session of the database but
    `sessions` is left (a session reports its counts when it ends, or after it has idled a while:
    those of a run's gunicorn and Celery processes are complete once they have exited); and the
    sessions then."""
    others = (
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        deadline = time.monotonic() + 30
        while True:
            pids = frozenset(pid for (pid,) in conn.execute(others))
            if pids <= sessions:
                break
            if time.monotonic() > deadline:
                print(f"  (sessions {sorted(pids - sessions)} still open: their counts may be missing)")
                break
            time.sleep(0.1)
        blocks = conn.execute(
            "SELECT blks_read, blks_hit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        # PostgreSQL 17 moved the checkpoint counts to pg_stat_checkpointer.
        if conn.execute("SELECT to_regclass('pg_catalog.pg_stat_checkpointer')").fetchone()[0]:
            checkpoints = "SELECT num_timed + num_requested FROM pg_stat_checkpointer"
        else:
            checkpoints = "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"
        wal = conn.execute(f"SELECT wal_bytes, wal_fpi, ({checkpoints}) FROM pg_stat_wal").fetchone()
        return (*blocks, *wal), pids


def ingest_run(env: dict[str, str], *, app: dict, bodies: list[bytes], clients: int, dsn: str) -> dict:
    """Bulk-ingest `bodies` through gunicorn; time until stored and until no rollup batch is pending.

    Also what the run cost: the whole machine's busy CPU per event while the timed requests were
    sent and until every event was counted (not the clients' start-up), and the share of its cores
    kept busy; per event sent (the warm-up's too), the database's blocks PostgreSQL found in
    shared_buffers and those it read from outside them, and the server's WAL (bytes, full-page
    images); and the checkpoints meanwhile (after each, the first change of any page logs an image
    of the whole page)."""
    headers = {"Content-Type": "application/json", "X-Mantle-App-Id": app["id"],
               "X-Mantle-App-Api-Key": app["secret"]}  # fmt: skip
    counts0, sessions = _database_counts(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:

        def wait_drained(timeout: float) -> float:
            return _wait_drained(conn, app["pk"], timeout)

        with gunicorn(env, workers=2) as port, celery_worker(env):
            # Warm up: connections open, customer ids cached, code paths hot; then nothing pending.
            warm = http_load(port, "POST", "/v1/usage_events", headers, bodies[:2], clients=2)
            assert warm.statuses == {200: 2}, warm.statuses
            wait_drained(300)
            timed = bodies[2:]
            start = time.perf_counter()
            load = http_load(port, "POST", "/v1/usage_events", headers, timed, clients=clients)
            stored = time.perf_counter()
            busy_waiting = machine_busy_seconds()
            assert load.statuses == {200: len(timed)}, load.statuses
            drained = wait_drained(max(600, len(timed) * 2))
            # The requests' window (`http_load`'s, after the clients started) and the wait after it.
            busy = load.machine_cpu + machine_busy_seconds() - busy_waiting
            busy_window = load.seconds + time.perf_counter() - stored
    counts1, _ = _database_counts(dsn, sessions)
    read, hit, wal_bytes, fpi, checkpoints = (
        after - before for after, before in zip(counts1, counts0, strict=True)
    )
    events, sent = 1000 * len(timed), 1000 * len(bodies)
    return {"events": events, "stored_s": stored - start, "total_s": drained - start,
            "rate": events / (drained - start), "latency": load.summary(),
            "cost": f"the machine's CPU {busy / events * 1e6:.0f} µs an event "
                    f"({busy / (busy_window * (os.cpu_count() or 1)):.0%} of its cores busy); "
                    f"PostgreSQL's blocks an event: {hit / sent:.1f} in shared_buffers, "
                    f"{read / sent:.2f} read from outside; WAL an event {wal_bytes / sent / 1024:.1f} kB, "
                    f"{fpi / sent:.2f} full-page images; {checkpoints} checkpoints"}  # fmt: skip


def rollup_total(metric_pk: int) -> int:
    """The metric's app-wide all-time count from its day rows."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(count), 0) FROM events_metricrollup WHERE metric_id = %s"
            " AND customer_id IS NULL AND group_key = '' AND granularity = 'd'",
            [metric_pk],
        )
        return int(cursor.fetchone()[0])


class InProcessReader:
    """Report and usage through the selectors, as a view would call them (lookups and JSON included)."""

    mode = "in-process (selectors; the report API has not landed)"

    def __init__(self, app_pk: int):
        self.app_pk = app_pk

    def report(self, metric_id: str, period: str, customer_ref: str | None) -> None:
        from events.metrics.selectors import metric_report
        from events.models import Metric
        from hub.models import Customer

        metric = Metric.objects.get(app_id=self.app_pk, public_id=metric_id)
        customer = (
            Customer.objects.get(app_id=self.app_pk, platform_id=customer_ref) if customer_ref else None
        )
        json.dumps(metric_report(metric=metric, period=period, customer=customer).as_json())

    def usage(self, customer_ref: str) -> None:
        from events.metrics.selectors import customer_usage
        from hub.models import Customer

        customer = Customer.objects.get(app_id=self.app_pk, platform_id=customer_ref)
        json.dumps(customer_usage(customer=customer))


class HttpReader:
    """Report and usage through the API on gunicorn (one client, one keep-alive connection)."""

    mode = "HTTP (gunicorn, 2 workers)"

    def __init__(self, port: int, app: dict):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"X-Mantle-App-Id": app["id"], "X-Mantle-App-Api-Key": app["secret"]}

    def _get(self, path: str) -> None:
        self.conn.request("GET", path, headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {body[:300]!r}")

    def report(self, metric_id: str, period: str, customer_ref: str | None) -> None:
        query = {"period": period} | ({"customerId": customer_ref} if customer_ref else {})
        self._get(f"/v1/usage_events/{metric_id}/report?{urlencode(query)}")

    def usage(self, customer_ref: str) -> None:
        self._get(f"/v1/customer?{urlencode({'id': customer_ref})}")


def report_api_exists() -> bool:
    from django.urls import Resolver404, resolve

    try:
        resolve(f"/v1/usage_events/{uuid.uuid4()}/report")
    except Resolver404:
        return False
    return True


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def read_run(reader, *, metrics: list[tuple[str, str]], customers: int, queries: int, seed: int) -> tuple:
    """Random report calls and customer usage objects; latencies overall and per metric and scope."""
    rng = random.Random(seed)
    for _name, metric_id in metrics:  # warm up: code paths and connections
        reader.report(metric_id, "daily", None)
        reader.usage("shop-0")
    reports: list[float] = []
    by_kind: dict[str, list[float]] = defaultdict(list)
    for _ in range(queries):
        name, metric_id = rng.choice(metrics)
        period = rng.choice(("daily", "weekly", "monthly"))
        customer = f"shop-{rng.randrange(customers)}" if rng.random() < 0.75 else None
        seconds = timed(lambda: reader.report(metric_id, period, customer))  # noqa: B023
        reports.append(seconds)
        by_kind[f"{name}, {'per customer' if customer else 'app-wide'}"].append(seconds)
    usage = [timed(lambda: reader.usage(f"shop-{rng.randrange(customers)}")) for _ in range(queries)]
    return reports, by_kind, usage


# --- Fresh counts under load (issue 18, item 2) ------------------------------------------------


def session_cpu(sid: int) -> float:
    """CPU seconds (user + system) of the live processes of session `sid` (a worker and its pool)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # fields[3]: the session id (after the state, ppid, pgrp)
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def steady_bodies(*, requests: int, batch: int, customers: int, now: datetime, seed: int) -> list[bytes]:
    """`requests` bodies of `batch` events: one probe (its request number as `req`), the rest the
    usual mix."""
    rng = random.Random(seed)
    weights = customer_weights(customers)
    base = int(now.timestamp() * 1000)
    bodies = []
    for k in range(requests):
        picks = rng.choices(range(customers), weights=weights, k=batch - 1)
        events = [{"eventName": PROBE[1], "eventId": f"probe-{k}", "customerId": "shop-0",
                   "timestamp": base, "properties": {"req": k}}]  # fmt: skip
        events += [
            {"eventName": _event_name(rng.random()), "eventId": f"steady-{k}-{i}", "customerId": f"shop-{c}",
             "timestamp": base - rng.randrange(3600 * 1000), "properties": json.loads(_properties(rng, c))}
            for i, c in enumerate(picks)
        ]  # fmt: skip
        bodies.append(dumps({"events": events}))
    return bodies


def _steady_sender(args) -> tuple[list[tuple[int, float, int]], float]:
    """Send each body at its time (open loop); (request number, answered at, status) and the
    worst lateness of a send."""
    port, headers, schedule = args
    answers, worst = [], 0.0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for at, k, body in schedule:
        wait = at - time.time()
        if wait > 0:
            time.sleep(wait)
        worst = max(worst, -wait)
        conn, response = _request(conn, port, "POST", "/v1/usage_events", body, headers)
        answers.append((k, time.time(), response.status))
    return answers, worst


def _probes_counted(dsn: str, metric_pk: int, seen: dict[int, float], stop: threading.Event) -> None:
    """Poll the probe metric's app-wide day rows every 10 ms: when each request's group appears."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.is_set():
            (keys,) = conn.execute(
                "SELECT array_agg(group_key) FROM events_metricrollup WHERE metric_id = %s "
                "AND customer_id IS NULL AND granularity = 'd' AND group_key <> ''",
                (metric_pk,),
            ).fetchone()
            at = time.time()
            for key in keys or ():
                seen.setdefault(int(key), at)
            time.sleep(0.01)


def fresh_counts_run(env: dict[str, str], *, app: dict, dsn: str, bulk: list[bytes], clients: int,
                     steady_rate: int, steady_seconds: float, steady_batch: int, probe_pk: int,
                     customers: int, now: datetime) -> dict:  # fmt: skip
    """Bulk ingest, counted against stored; then a steady rate, answer-to-counted latencies."""
    headers = {"Content-Type": "application/json", "X-Mantle-App-Id": app["id"],
               "X-Mantle-App-Api-Key": app["secret"]}  # fmt: skip
    requests_per_second = steady_rate / steady_batch
    steady = steady_bodies(requests=int(requests_per_second * steady_seconds), batch=steady_batch,
                           customers=customers, now=now, seed=5)  # fmt: skip
    with psycopg.connect(dsn, autocommit=True) as conn:

        def wait_drained(timeout: float) -> float:
            return _wait_drained(conn, app["pk"], timeout)

        with gunicorn(env, workers=2) as port, celery_worker(env) as worker:
            warm = http_load(port, "POST", "/v1/usage_events", headers, bulk[:2], clients=2)
            assert warm.statuses == {200: 2}, warm.statuses
            wait_drained(300)
            timed = bulk[2:]
            cpu = session_cpu(worker.pid)
            start = time.perf_counter()
            load = http_load(port, "POST", "/v1/usage_events", headers, timed, clients=clients)
            stored = time.perf_counter()
            assert load.statuses == {200: len(timed)}, load.statuses
            counted = wait_drained(max(600, len(timed) * 2))
            worker_cpu = session_cpu(worker.pid) - cpu

            seen: dict[int, float] = {}
            stop = threading.Event()
            poller = threading.Thread(target=_probes_counted, args=(dsn, probe_pk, seen, stop), daemon=True)
            poller.start()
            senders = min(clients, max(1, int(requests_per_second // 10)))
            try:
                with client_pool(senders) as pool:
                    t0 = time.time() + 0.5
                    schedule = [(t0 + k / requests_per_second, k, body) for k, body in enumerate(steady)]
                    results = pool.map(
                        _steady_sender, [(port, headers, schedule[i::senders]) for i in range(senders)]
                    )
                deadline = time.monotonic() + 120
                while len(seen) < len(steady) and time.monotonic() < deadline:
                    time.sleep(0.05)
            finally:
                stop.set()
                poller.join(10)
    answers = {k: at for answered, _ in results for k, at, status in answered if status == 200}
    assert len(answers) == len(steady), f"{len(steady) - len(answers)} steady requests failed"
    missing = len(steady) - len(seen)
    latencies = [max(0.0, seen[k] - answers[k]) for k in answers if k in seen]
    bulk_events = 1000 * len(timed)
    return {
        "bulk_events": bulk_events, "stored_s": stored - start, "counted_s": counted - start,
        "stored_rate": bulk_events / (stored - start), "counted_rate": bulk_events / (counted - start),
        "worker_cpu_per_event_us": worker_cpu / bulk_events * 1e6, "requests": load.summary(),
        "steady_requests": len(steady), "steady_missing": missing, "steady_latencies": latencies,
        "steady_lag_s": max(lag for _, lag in results), "steady_bodies": steady,
    }  # fmt: skip


def fresh_counts_print(result: dict, *, steady_rate: int, steady_seconds: float,
                       steady_batch: int) -> tuple[bool, list[str]]:  # fmt: skip
    """Print the phase's figures; whether both targets are met, and the summary's PASS/FAIL lines."""
    ratio = result["counted_rate"] / result["stored_rate"]
    print(f"fresh counts, bulk: {result['bulk_events']:,} events stored in {result['stored_s']:.1f} s "
          f"({result['stored_rate']:,.0f}/s), counted by {result['counted_s']:.1f} s "
          f"({result['counted_rate']:,.0f}/s); worker CPU {result['worker_cpu_per_event_us']:.1f} us per "
          f"counted event (the Celery processes only, not PostgreSQL); requests {result['requests']}",
          flush=True)  # fmt: skip
    latencies = result["steady_latencies"]
    if latencies:
        p50, p99, top = pct(latencies, 50), pct(latencies, 99), max(latencies)
    else:
        p50 = p99 = top = float("inf")
    if result["steady_missing"]:
        p99 = float("inf")  # a probe never counted within 120 s
    missing = f", {result['steady_missing']} never counted" if result["steady_missing"] else ""
    lag_ms = result["steady_lag_s"] * 1000
    print(f"fresh counts, steady {steady_rate:,} events/s for {steady_seconds:.0f} s ({steady_batch} a "
          f"request, {result['steady_requests']} requests, sends late by at most {lag_ms:.0f} ms): answer "
          f"to counted p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {top * 1000:.0f} ms{missing}",
          flush=True)  # fmt: skip
    ratio_ok = ratio >= FRESH_RATIO_TARGET
    p99_ok = p99 <= FRESH_P99_TARGET_S
    lines = [
        f"  RATIO counted / stored under bulk ingest = {result['counted_rate']:,.0f} / "
        f"{result['stored_rate']:,.0f} = {ratio:.2f} (target >= {FRESH_RATIO_TARGET}): "
        f"{'PASS' if ratio_ok else 'FAIL'}",
        f"  steady {steady_rate:,}/s answer-to-counted p99 {p99 * 1000:.0f} ms "
        f"(target <= {FRESH_P99_TARGET_S * 1000:.0f} ms): {'PASS' if p99_ok else 'FAIL'}",
    ]
    return ratio_ok and p99_ok, lines


# --- The run ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=None,
                        help="events loaded with COPY (10,000,000; 200,000 with --fresh-only)")  # fmt: skip
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--days", type=int, default=365, help="the span of the loaded events")
    parser.add_argument("--queries", type=int, default=300, help="report calls, and usage objects")
    parser.add_argument("--ingest", type=int, default=100_000, help="events of each ingest run")
    parser.add_argument("--clients", type=int, default=4, help="ingest client processes")
    parser.add_argument("--copy-procs", type=int, default=2, help="COPY processes")
    parser.add_argument("--fresh-bulk", type=int, default=100_000, help="events of the fresh-counts bulk run")
    parser.add_argument("--steady-rate", type=int, default=2_000, help="events/s of the steady run")
    parser.add_argument("--steady-seconds", type=float, default=15.0)
    parser.add_argument("--steady-batch", type=int, default=50, help="events per steady request")
    parser.add_argument("--fresh-only", action="store_true",
                        help="only the fresh-counts phase, after the COPY and build of --events")  # fmt: skip
    args = parser.parse_args(argv)
    if args.events is None:
        args.events = 200_000 if args.fresh_only else 10_000_000
    if args.ingest < 3000 or args.fresh_bulk < 3000:
        parser.error("--ingest and --fresh-bulk must be at least 3000 (2 warm-ups, then the timed ones)")
    if args.steady_batch < 2:
        parser.error("--steady-batch must be at least 2 (a probe and an event)")

    recreate_database(DB)
    broker = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9")
    env = hub_env(DB, CELERY_BROKER_URL=broker, CELERY_RESULT_BACKEND=broker, DATABASE_CONN_MAX_AGE="600")
    dsn = database_url(DB)
    manage(env, "migrate", "--verbosity", "0")
    created = json.loads(manage(env, "hub_apply", "-", stdin=json.dumps(
        {"workspace": "Bench", "apps": [{"name": "Empty table", "api_keys": ["bench"]},
                                        {"name": "Stored events", "api_keys": ["bench"]}]})))  # fmt: skip
    _setup_django(env)
    from django.conf import settings
    from django.db import connection

    from events.metrics.definitions import definition_validate
    from events.metrics.rollups import metrics_rebuild
    from events.metrics.services import metric_create
    from events.models import Metric
    from events.partitions import id_base
    from hub.models import App, Customer

    apps = {}
    for item in created["apps"]:
        app = App.objects.get(public_id=item["id"])
        customers = Customer.objects.bulk_create(
            [Customer(app=app, platform_id=f"shop-{i}", name=f"Shop {i}") for i in range(args.customers)]
        )
        apps[item["name"]] = {"id": item["id"], "secret": item["api_keys"][0]["secret"], "pk": app.pk,
                              "model": app, "customer_pks": [c.pk for c in customers]}  # fmt: skip

    def metrics_create(app) -> list[Metric]:
        return [
            metric_create(app=app, definition=definition_validate(
                name=name, event_name=event, aggregation=agg, property=prop, group_by=group, filters=filters))
            for name, event, agg, prop, group, filters in METRICS
        ]  # fmt: skip

    now = datetime.now(UTC)
    print(f"sizes: {args.events:,} events over {args.days} days, {args.customers:,} customers "
          f"(Zipf 0.8), {len(METRICS)} metrics, {args.ingest:,} events per ingest run",
          flush=True)  # fmt: skip
    print(server_settings_line(dsn), flush=True)
    # Before either ingest run, so that both meet the same partitions.
    history_partitions_make(now, args.days)

    # 1. Ingest on an empty events table (another app with the same metrics, built: ready).
    if not args.fresh_only:
        empty = apps["Empty table"]
        empty_metrics = metrics_create(empty["model"])
        metrics_rebuild(app_pk=empty["pk"])
        connection.close()
        bodies = ingest_bodies(args.ingest, "empty", args.customers, now, seed=1)
        on_empty = ingest_run(env, app=empty, bodies=bodies, clients=args.clients, dsn=dsn)
        print(f"ingest, empty events table: {on_empty['rate']:,.0f} events/s stored and rolled up "
              f"({on_empty['events']:,} events: stored in {on_empty['stored_s']:.1f} s, counted by "
              f"{on_empty['total_s']:.1f} s; requests {on_empty['latency']})", flush=True)  # fmt: skip
        print(f"  {on_empty['cost']}", flush=True)
        again = ingest_bodies(args.ingest, "empty-again", args.customers, now, seed=11)
        on_empty_again = ingest_run(env, app=empty, bodies=again, clients=args.clients, dsn=dsn)
        print(f"  again: {on_empty_again['rate']:,.0f} events/s; {on_empty_again['cost']}", flush=True)

    # 2. COPY the events into the second app, then build its metrics the way the product does.
    full = apps["Stored events"]
    start = time.perf_counter()
    copy_events(full["pk"], full["customer_pks"], args.events, args.days, now, args.copy_procs)
    copy_s = time.perf_counter() - start
    start = time.perf_counter()
    keys = dedupe_keys_load(full["pk"], now)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE events_usageevent")
        conn.execute("VACUUM ANALYZE events_usageeventkey")
        current = conn.execute(
            "SELECT count(*) FROM events_usageevent WHERE app_id = %s AND id >= %s",
            (full["pk"], id_base(now)),
        ).fetchone()[0]
    vacuum_s = time.perf_counter() - start
    print(f"load: {args.events:,} events by COPY in {copy_s:.1f} s = {args.events / copy_s:,.0f} rows/s "
          f"({current:,} in this month's partition; then the {keys:,} dedupe keys of the last "
          f"{settings.HUB_USAGE_EVENT_DEDUPE_DAYS} days and VACUUM ANALYZE {vacuum_s:.1f} s)",
          flush=True)  # fmt: skip
    full_metrics = metrics_create(full["model"])
    start = time.perf_counter()
    built = metrics_rebuild(app_pk=full["pk"])
    build_s = time.perf_counter() - start
    assert len(built) == len(METRICS), built
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE events_metricrollup")
        conn.execute("VACUUM ANALYZE events_metricuniquevalue")
        rollups = conn.execute("SELECT count(*) FROM events_metricrollup").fetchone()[0]
        uniques = conn.execute("SELECT count(*) FROM events_metricuniquevalue").fetchone()[0]
    print(f"build: {len(built)} metrics from {args.events:,} stored events in {build_s:.1f} s = "
          f"{args.events / build_s:,.0f} events/s ({rollups:,} rollup rows, {uniques:,} distinct-value rows)",
          flush=True)  # fmt: skip
    calls = rollup_total(full_metrics[0].pk)

    def fresh_counts() -> tuple[bool, list[str]]:
        """The fresh-counts phase on the app with the events stored; every event counted once."""
        probe = metric_create(app=full["model"], definition=definition_validate(
            name=PROBE[0], event_name=PROBE[1], aggregation=PROBE[2], property=PROBE[3], group_by=PROBE[4],
            filters=PROBE[5]))  # fmt: skip
        assert metrics_rebuild(app_pk=full["pk"]) == [probe.pk]
        before = rollup_total(full_metrics[0].pk)
        connection.close()
        bulk = ingest_bodies(args.fresh_bulk, "fresh", args.customers, now, seed=4)
        result = fresh_counts_run(
            env, app=full, dsn=dsn, bulk=bulk, clients=args.clients, steady_rate=args.steady_rate,
            steady_seconds=args.steady_seconds, steady_batch=args.steady_batch, probe_pk=probe.pk,
            customers=args.customers, now=now,
        )  # fmt: skip
        verdict = fresh_counts_print(result, steady_rate=args.steady_rate, steady_seconds=args.steady_seconds,
                                     steady_batch=args.steady_batch)  # fmt: skip
        sent = [e for body in bulk + result["steady_bodies"] for e in json.loads(body)["events"]]
        expected = before + sum(1 for e in sent if e["eventName"] == "api_call")
        assert rollup_total(full_metrics[0].pk) == expected, "rollups disagree with the events"
        return verdict

    if args.fresh_only:
        fresh_ok, lines = fresh_counts()
        print("summary:\n" + "\n".join(lines), flush=True)
        return 0 if fresh_ok else 1

    # 3. Reports and customer usage.
    metric_ids = [(m.name, str(m.public_id)) for m in full_metrics]
    if report_api_exists():
        connection.close()
        with gunicorn(env, workers=2) as port:
            reader = HttpReader(port, full)
            reports, by_kind, usage = read_run(reader, metrics=metric_ids, customers=args.customers,
                                               queries=args.queries, seed=2)  # fmt: skip
    else:
        reader = InProcessReader(full["pk"])
        reports, by_kind, usage = read_run(reader, metrics=metric_ids, customers=args.customers,
                                           queries=args.queries, seed=2)  # fmt: skip
    print(f"reads measured {reader.mode}")
    print(f"report calls ({len(reports)}): {_ms(reports)}")
    for kind in sorted(by_kind):
        print(f"  {kind} ({len(by_kind[kind])}): {_ms(by_kind[kind])}")
    print(f"customer usage objects ({len(usage)}): {_ms(usage)}", flush=True)

    # 4. Ingest with the events stored.
    connection.close()
    bodies = ingest_bodies(args.ingest, "full", args.customers, now, seed=3)
    on_full = ingest_run(env, app=full, bodies=bodies, clients=args.clients, dsn=dsn)
    print(f"ingest, {args.events:,} events stored: {on_full['rate']:,.0f} events/s stored and rolled up "
          f"({on_full['events']:,} events: stored in {on_full['stored_s']:.1f} s, counted by "
          f"{on_full['total_s']:.1f} s; requests {on_full['latency']})", flush=True)  # fmt: skip
    print(f"  {on_full['cost']}", flush=True)
    # The same again, without a verdict: the first run meets the buffers the build and the reads
    # left, this one those of a hub that has been taking events; the two show the figure's spread.
    again = ingest_bodies(args.ingest, "full-again", args.customers, now, seed=13)
    on_full_again = ingest_run(env, app=full, bodies=again, clients=args.clients, dsn=dsn)
    print(f"  again: {on_full_again['rate']:,.0f} events/s; {on_full_again['cost']}", flush=True)

    # Every event counted once: the count metric grew by exactly the api_call events ingested.
    ingested_calls = sum(
        1 for body in bodies + again for e in json.loads(body)["events"] if e["eventName"] == "api_call"
    )
    assert rollup_total(full_metrics[0].pk) == calls + ingested_calls, "rollups disagree with the events"
    assert rollup_total(empty_metrics[0].pk) > 0

    fresh_ok, fresh_lines = fresh_counts()
    report_p95 = pct(reports, 95) * 1000
    ratio = on_full["rate"] / on_empty["rate"]
    report_ok = report_p95 <= REPORT_P95_TARGET_MS
    ratio_ok = ratio >= INGEST_RATIO_TARGET
    print("summary:")
    print(f"  load {args.events / copy_s:,.0f} rows/s; "
          f"build {build_s:.1f} s ({args.events / build_s:,.0f} events/s)")  # fmt: skip
    print(f"  report p95 {report_p95:.1f} ms (target <= {REPORT_P95_TARGET_MS:.0f} ms): "
          f"{'PASS' if report_ok else 'FAIL'}")  # fmt: skip
    print(f"  usage p50 {pct(usage, 50) * 1000:.1f} ms, p95 {pct(usage, 95) * 1000:.1f} ms (no target)")
    print(f"  RATIO ingest with {args.events:,} stored / empty = {on_full['rate']:,.0f} / "
          f"{on_empty['rate']:,.0f} = {ratio:.2f} (target >= {INGEST_RATIO_TARGET}): "
          f"{'PASS' if ratio_ok else 'FAIL'}")  # fmt: skip
    again_ratio = on_full_again["rate"] / on_empty_again["rate"]
    print(f"    the same again (no verdict): {on_full_again['rate']:,.0f} / "
          f"{on_empty_again['rate']:,.0f} = {again_ratio:.2f}")  # fmt: skip
    print("\n".join(fresh_lines), flush=True)
    return 0 if report_ok and ratio_ok and fresh_ok else 1


if __name__ == "__main__":
    sys.exit(main())
