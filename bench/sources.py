"""Segment source benchmark (issue 4: events from Segment).

Starts the hub under gunicorn (2 sync workers) on a scratch PostgreSQL database, with a source
made by hub_apply (default presets: track → usage event), and drives `/segment/v1/batch` with
100-message batches (Segment's libraries' batch size) from separate client processes:
  (a) receipt messages/s: every message committed to the inbox, no worker running;
  (b) end-to-end messages/s: from the first request to the last usage event stored, with Celery
      workers processing while the clients send; receipt-to-stored p50/p99;
each with its ratio to a raw psycopg executemany of INSERT ... ON CONFLICT DO NOTHING of the same
rows into a same-shaped events table, measured in the same run (bench.ingest's baseline);
  (c) steady load: batches sent at a fixed rate (`--steady-fraction`, default 50%, of the lesser of
      (a)'s and (b)'s rates) for `--steady-seconds` with the Celery workers processing;
      receipt-to-stored latency of every message, from its inbox row's `received_at` to its usage
      event's `received_at` (the time it was stored), both read from the database.
Targets: receipt >= 0.5, end-to-end >= 0.25, steady-load receipt-to-stored p99 <= 1 s (issue 4).

    python -m bench.sources [--messages 50000] [--clients 4] [--celery 2] [--steady-seconds 25]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg

from bench.harness import (
    BIN,
    ROOT,
    database_url,
    dumps,
    gunicorn,
    http_load,
    hub_env,
    manage,
    paced_load,
    raw_insert_rate,
    recreate_database,
)

DB = "hub_bench_sources"
STEADY_P99_TARGET_SECONDS = 1.0


def make_messages(n: int, prefix: str) -> list[dict]:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        {
            "type": "track",
            "event": ("api_call", "report_generated", "export")[i % 3],
            "messageId": f"{prefix}-{i}",
            "userId": f"user-{i % 50}",
            "timestamp": (t0 + timedelta(seconds=i)).isoformat(),
            "properties": {"shop": f"shop-{i % 200}", "rows": i % 97, "plan": "pro"},
            "context": {"library": {"name": "analytics-python", "version": "2.3.4"}},
        }
        for i in range(n)
    ]


def raw_baseline(messages: list[dict], app_pk: int, customer_pks: dict[str, int]) -> float:
    """Rows/s of psycopg executemany INSERT ... ON CONFLICT DO NOTHING, 1,000 rows a transaction."""
    now = datetime.now(UTC)
    rows = [
        (app_pk, customer_pks[m["properties"]["shop"]], m["messageId"], m["event"],
         datetime.fromisoformat(m["timestamp"]), json.dumps(m["properties"]), now)
        for m in messages
    ]  # fmt: skip
    return raw_insert_rate(DB, rows)


def _count(sql: str, *params) -> int:
    with psycopg.connect(database_url(DB)) as conn:
        return conn.execute(sql, params).fetchone()[0]


def _wait_stored(expected: int, deadline: float) -> None:
    """Wait until `expected` usage events are stored. Polls whether a batch still waits (a tiny
    table: its rows go in the transaction that stores their events), then counts the events once;
    counting them every few milliseconds would itself cost the database a scan of every event."""
    with psycopg.connect(database_url(DB), autocommit=True) as conn:
        while time.monotonic() < deadline:
            if not conn.execute("SELECT EXISTS (SELECT 1 FROM sources_inboxbatch)").fetchone()[0]:
                if conn.execute("SELECT count(*) FROM events_usageevent").fetchone()[0] >= expected:
                    return
                time.sleep(0.05)
            time.sleep(0.005)


def steady_latency(prefix: str) -> tuple[int, float, float, float, float]:
    """Messages, and p50/p95/p99/max seconds from inbox receipt to the usage event being stored."""
    with psycopg.connect(database_url(DB)) as conn:
        return conn.execute(
            "SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), "
            "percentile_cont(0.95) WITHIN GROUP (ORDER BY lag), "
            "percentile_cont(0.99) WITHIN GROUP (ORDER BY lag), max(lag) FROM ("
            " SELECT extract(epoch FROM e.received_at - m.received_at) AS lag"
            " FROM sources_inboxmessage m JOIN sources_source s ON s.id = m.source_id"
            " JOIN events_usageevent e ON e.app_id = s.app_id AND e.event_id = m.message_id"
            " WHERE m.message_id LIKE %s) AS lags",
            (f"{prefix}-%",),
        ).fetchone()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=50_000, help="messages for each phase")
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--celery", type=int, default=2, help="Celery worker processes (concurrency)")
    parser.add_argument("--steady-seconds", type=float, default=25.0, help="length of the steady phase")
    parser.add_argument(
        "--steady-fraction", type=float, default=0.5, help="steady rate as a fraction of receipt's"
    )
    args = parser.parse_args(argv)

    recreate_database(DB)
    env = hub_env(
        DB, CELERY_BROKER_URL=os.environ.get("BENCH_SOURCES_BROKER_URL", "redis://127.0.0.1:6379/9")
    )
    manage(env, "migrate", "--verbosity", "0")
    document = {"workspace": "Bench", "apps": [{"name": "Bench app", "sources": [{"name": "Segment"}]}]}
    created = json.loads(manage(env, "hub_apply", "-", stdin=json.dumps(document)))
    app = created["apps"][0]
    write_key = app["sources"][0]["write_key"]
    headers = {"Content-Type": "application/json",
               "Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}  # fmt: skip
    subprocess.run([str(BIN / "celery"), "-A", "hub", "purge", "-f"], cwd=ROOT, env=env, capture_output=True)

    run = uuid.uuid4().hex[:6]
    receipt_msgs = make_messages(args.messages, f"r-{run}")
    e2e_msgs = make_messages(args.messages, f"e-{run}")
    batches = lambda msgs: [dumps({"batch": msgs[i : i + 100]}) for i in range(0, len(msgs), 100)]  # noqa: E731

    with gunicorn(env, workers=args.workers) as port:
        warm = http_load(port, "POST", "/segment/v1/batch", headers, batches(make_messages(400, f"w-{run}")),
                         clients=2)  # fmt: skip
        assert warm.statuses == {200: 4}, warm.statuses
        # (a) Receipt only: no worker consumes, every message must be in the inbox.
        receipt = http_load(
            port, "POST", "/segment/v1/batch", headers, batches(receipt_msgs), clients=args.clients
        )
        assert receipt.statuses == {200: len(receipt_msgs) // 100}, receipt.statuses
        pending = _count("SELECT count(*) FROM sources_inboxmessage WHERE status = 'pending'")
        assert pending == len(receipt_msgs) + 400, pending

        # Drain the backlog (and make the customers) before the end-to-end run.
        worker = subprocess.Popen(
            [str(BIN / "celery"), "-A", "hub", "worker", "--concurrency", str(args.celery),
             "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
             "--hostname", f"bench-{os.getpid()}@%h"],
            cwd=ROOT, env=env, start_new_session=True,
        )  # fmt: skip
        try:
            celery_call = [str(BIN / "celery"), "-A", "hub", "call", "sources.inbox_drain"]
            subprocess.run(celery_call, cwd=ROOT, env=env, capture_output=True, check=True)
            deadline = time.monotonic() + 600
            while _count("SELECT count(*) FROM sources_inboxmessage WHERE status = 'pending'") and (
                time.monotonic() < deadline
            ):
                time.sleep(0.5)
            # (b) End to end: clients send while the workers process; the clock stops at the last event.
            expected = _count("SELECT count(*) FROM events_usageevent") + len(e2e_msgs)
            start = time.perf_counter()
            e2e = http_load(
                port, "POST", "/segment/v1/batch", headers, batches(e2e_msgs), clients=args.clients
            )
            _wait_stored(expected, deadline)
            e2e_seconds = time.perf_counter() - start
            assert e2e.statuses == {200: len(e2e_msgs) // 100}, e2e.statuses

            # (c) Steady load: a fixed rate well below the maximum, workers processing as it comes.
            time.sleep(2)
            # Below the lesser of the two maxima: receipt alone, and receipt with the workers busy.
            steady_rate = args.steady_fraction * min(
                len(receipt_msgs) / receipt.seconds, len(e2e_msgs) / e2e_seconds
            )
            steady_msgs = make_messages(int(steady_rate * args.steady_seconds) // 100 * 100, f"s-{run}")
            expected = _count("SELECT count(*) FROM events_usageevent") + len(steady_msgs)
            steady, send_lag = paced_load(
                port, "POST", "/segment/v1/batch", headers, batches(steady_msgs),
                requests_per_second=steady_rate / 100, clients=args.clients,
            )  # fmt: skip
            _wait_stored(expected, time.monotonic() + 120)
            assert steady.statuses == {200: len(steady_msgs) // 100}, steady.statuses
        finally:
            worker.send_signal(signal.SIGTERM)  # the main process: a warm shutdown of its pool
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=10)

    with psycopg.connect(database_url(DB)) as conn:
        app_pk = conn.execute("SELECT id FROM hub_app WHERE public_id = %s", (app["id"],)).fetchone()[0]
        customers = dict(
            conn.execute("SELECT platform_id, id FROM hub_customer WHERE app_id = %s", (app_pk,))
        )
        stored = conn.execute(
            "SELECT count(*) FROM events_usageevent WHERE event_id LIKE %s", (f"e-{run}-%",)
        )
        assert stored.fetchone()[0] == len(e2e_msgs)
        lag = conn.execute(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - received_at"
            ")), percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - received_at))"
            " FROM sources_inboxmessage WHERE message_id LIKE %s",
            (f"e-{run}-%",),
        ).fetchone()
    baseline = raw_baseline(e2e_msgs, app_pk, customers)
    count, s50, s95, s99, smax = steady_latency(f"s-{run}")
    assert count == len(steady_msgs), (count, len(steady_msgs))

    receipt_rate = len(receipt_msgs) / receipt.seconds
    e2e_rate = len(e2e_msgs) / e2e_seconds
    print(
        f"receipt: {receipt_rate:,.0f} messages/s "
        f"({len(receipt_msgs) // 100} batches of 100; {receipt.summary()}; "
        f"the clients used {receipt.client_cpu:.1f} s of CPU)"
    )
    print(
        f"end to end: {e2e_rate:,.0f} messages/s "
        f"(received → usage event stored; {args.celery} Celery processes; "
        f"the clients used {e2e.client_cpu:.1f} s of CPU)"
    )
    print(f"  receipt-to-stored p50 {lag[0] * 1000:.0f} ms, p99 {lag[1] * 1000:.0f} ms")
    print(f"  raw psycopg executemany baseline: {baseline:,.0f} rows/s")
    print(f"  RATIO receipt/raw = {receipt_rate / baseline:.2f}  (target >= 0.5)")
    print(f"  RATIO end-to-end/raw = {e2e_rate / baseline:.2f}  (target >= 0.25)")
    steady_pass = s99 <= STEADY_P99_TARGET_SECONDS
    print(
        f"steady load: {len(steady_msgs) / steady.seconds:,.0f} messages/s for {steady.seconds:.0f} s "
        f"({args.steady_fraction:.0%} of min(receipt, end to end); {len(steady_msgs) // 100} batches of 100; "
        f"{steady.summary()}; latest send {send_lag * 1000:.0f} ms behind schedule)"
    )
    print(
        f"  receipt-to-stored p50 {s50 * 1000:.0f} ms, p95 {s95 * 1000:.0f} ms, p99 {s99 * 1000:.0f} ms, "
        f"max {smax * 1000:.0f} ms  (target p99 <= {STEADY_P99_TARGET_SECONDS * 1000:.0f} ms): "
        f"{'PASS' if steady_pass else 'FAIL'}"
    )
    return 0 if receipt_rate / baseline >= 0.5 and e2e_rate / baseline >= 0.25 and steady_pass else 1


if __name__ == "__main__":
    sys.exit(main())
