"""Destinations: usage events ingested in bulk through the Mantle API and forwarded at once to
local stand-ins of Metronome (`/v1/ingest`), Kable (`/api/v1/events/create`) and a signed webhook
(JSON-array batches), all on loopback.

1. Throughput: N usage events (100,000 by default) posted in requests of 1,000 by 4 client
   processes to gunicorn (2 workers) while a Celery worker (4 processes, with beat) forwards them;
   each destination's rate is N over the time from the first request to the last event's receipt
   at its stand-in, against segment-analytics-python sending N track calls to a stand-in in the
   same run (in-memory queue, nothing durable). Target: ratio at least 2 for each destination.
   Then the CPU budget that target implies on this machine (every process of the run sharing its
   cores) next to the CPU measured per ingested event and per delivery, and a floor no design can
   go under: PostgreSQL's CPU to store the same events by COPY plus the stand-ins' CPU per event,
   then also the delivery rows by COPY (one per event and destination, its message stored).
2. Latency: events posted at a steady rate (1,000/s by default, in requests of 10); p99 from the
   ingest answer to receipt at each stand-in. Target: at most 1 s.
3. Backfill: M usage events (50,000 by default) stored in bulk in a second app before any
   destination of it exists, then a Metronome, a Kable and a webhook destination of that app
   connected and backfilled at once through the real path (`backfill_start`, as the screen and
   `manage.py hub_backfill` do: the worker's `integrations.backfill_run` tasks and their senders);
   each destination's rate is M over the time from the start to the last receipt at its stand-in,
   against segment-analytics-python in the same run.

Each phase prints the CPU each part used (PostgreSQL, gunicorn, the worker, the stand-ins, the
bench and its clients).

    .venv/bin/python -m bench.destinations [--events 100000] [--rate 1000] [--seconds 15]
        [--backfill-events 50000] [--phases throughput,latency,backfill]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime

from bench.harness import (
    EVENT_COLUMNS,
    client_pool,
    database_url,
    dumps,
    gunicorn,
    http_load,
    hub_env,
    manage,
    recreate_database,
    scratch_events_table,
)
from bench.segment_delivery import CpuMeter, StandIn, _setup_django, _start_worker

DB = "hub_bench_destinations"
WRITE_KEY = "wk_bench"


def make_events(n: int, prefix: str) -> list[dict]:
    t0 = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
    return [
        {
            "eventName": ("api_call", "report_generated", "export")[i % 3],
            "eventId": f"{prefix}-{i}",
            "customerId": f"shop-{i % 200}",
            "timestamp": t0 + i,
            "properties": {"rows": i % 97, "plan": "pro", "path": "/api/v1/things"},
        }
        for i in range(n)
    ]


def _paced(args) -> list[tuple[int, float]]:
    """Send each (index, body) at its time; return (index, time its answer arrived)."""
    port, headers, schedule = args
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    answered = []
    for at, k, body in schedule:
        wait = at - time.time()
        if wait > 0:
            time.sleep(wait)
        conn.request("POST", "/v1/usage_events", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        answered.append((k, time.time()))
        if response.status != 200:
            raise RuntimeError(f"ingest answered {response.status}")
    return answered


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


class _Meter(CpuMeter):
    """CpuMeter that also returns the CPU seconds of each part (and the wall time, as "wall")."""

    def stop_parts(self) -> tuple[str, dict[str, float]]:
        after = self._sample()
        used = {
            name: sum(v - self.before[name].get(p, 0.0) for p, v in pids.items())
            for name, pids in after.items()
        }
        wall = time.monotonic() - self.started
        text = f"CPU over {wall:.1f} s: " + ", ".join(f"{name} {s:.1f} s" for name, s in used.items())
        return text, {**used, "wall": wall}


def _all_received(standins: dict[str, StandIn], n: int, timeout: float) -> dict[str, float]:
    """{name: when its stand-in had `n` unique messages}, all stand-ins watched at once (waiting for
    one after the other would date a destination that finished first at the later one's end)."""
    done: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(standins):
        for name, s in standins.items():
            if name not in done and s.unique() >= n:
                done[name] = time.time()
        if time.monotonic() > deadline:
            got = {name: s.unique() for name, s in standins.items()}
            raise RuntimeError(f"the stand-ins got {got} of {n} in {timeout:.0f} s")
        time.sleep(0.05)
    return done


def _latency_parts(prefix: str, urls: dict[str, str]) -> None:
    """Where the steady phase's time went, per destination, from the rows: the event stored (just
    before the ingest answer) to its delivery made by the forwarder, and made to delivered."""
    from django.db import connection

    from integrations.models import Integration

    names = {
        pk: name
        for name, url in urls.items()
        for pk in Integration.objects.filter(custom_host__startswith=url).values_list("pk", flat=True)
    }
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT d.integration_id, EXTRACT(EPOCH FROM d.created_at - e.received_at), "
            "EXTRACT(EPOCH FROM d.delivered_at - d.created_at) FROM integrations_delivery d "
            "JOIN events_usageevent e ON e.id = d.item_id::bigint "
            "WHERE d.item_kind = 'usage_event' AND e.event_id LIKE %s AND d.delivered_at IS NOT NULL",
            [prefix + "-%"],
        )
        rows = cursor.fetchall()
    for pk, name in sorted(names.items(), key=lambda kv: kv[1]):
        made = sorted(float(r[1]) * 1000 for r in rows if r[0] == pk)
        sent = sorted(float(r[2]) * 1000 for r in rows if r[0] == pk)
        if not made:
            continue

        def pct(xs: list[float], p: float) -> float:
            return xs[min(len(xs) - 1, int(len(xs) * p))]

        print(f"  {name}: stored to delivery made p50 {pct(made, 0.5):.0f} ms, p99 {pct(made, 0.99):.0f} ms; "
              f"made to delivered p50 {pct(sent, 0.5):.0f} ms, p99 {pct(sent, 0.99):.0f} ms")  # fmt: skip


def _lib_rate(baseline_standin: StandIn, events: list[dict], meter: _Meter) -> float:
    """segment-analytics-python sending these events as track calls to its stand-in: events/s."""
    import segment.analytics as segment_analytics

    n = len(events)
    baseline_standin.reset()
    client = segment_analytics.Client(
        WRITE_KEY, host=baseline_standin.url, max_queue_size=n + 1, upload_size=100, upload_interval=0.05,
    )  # fmt: skip
    meter.start()
    started = time.time()
    for i, e in enumerate(events):
        client.track(user_id=e["customerId"], event=e["eventName"], message_id=f"lib-{i}",
                     properties=e["properties"])  # fmt: skip
    client.flush()
    done = baseline_standin.wait_unique(n, timeout=max(120, n / 500))
    lib_rate = n / (done - started)
    client.shutdown()
    print(f"segment-analytics-python (in memory): {n} track calls = {lib_rate:,.0f} events/s")
    print(f"  {meter.stop()}")
    return lib_rate


def _feasibility(
    lib_rate: float, n: int, destinations: int, used: dict[str, float], copy_us: float, deliveries_us: float
) -> None:
    """The CPU per event the throughput target leaves on this machine, against what was measured."""
    cores = len(os.sched_getaffinity(0))
    target = 2 * lib_rate
    budget = cores / target * 1e6  # µs of CPU per event: its ingest and its delivery to every destination
    hub = used.get("web", 0.0) + used["workers"] + used["postgres"]
    per_event = hub / n * 1e6
    print(
        f"feasibility ({cores} cores): the target, 2 x {lib_rate:,.0f} = {target:,.0f} events/s to each of "
        f"{destinations} destinations while ingesting as many, leaves {budget:.1f} µs of CPU per event for "
        f"its ingest and its {destinations} deliveries (web, workers and PostgreSQL together)"
    )
    print(
        f"  measured per event: {per_event:.0f} µs (web {used.get('web', 0.0) / n * 1e6:.0f}: ingest; "
        f"workers {used['workers'] / n * 1e6:.0f} = {used['workers'] / (n * destinations) * 1e6:.0f} per "
        f"delivery, rollups included; PostgreSQL {used['postgres'] / n * 1e6:.0f}); the stand-ins another "
        f"{used['stand-in'] / n * 1e6:.0f}"
    )
    print(
        f"  the target needs {per_event / budget:.1f}x less CPU per event; at the CPU measured these cores "
        f"carry {cores / per_event * 1e6:,.0f} events/s to {destinations} destinations, ingest included"
    )
    # The floor no design of the hub can go under here: PostgreSQL taking each event by COPY (the
    # cheapest way it stores rows; the hub answers only after the event is committed), the same
    # stand-ins taking each delivery (their CPU per event in this run, shared by any sender), and
    # PostgreSQL taking by COPY the row each (event, destination) must have, its message stored
    # (the "a delivery per (item, destination) with its message stored"), with no index
    # but its primary key (what keeps one message from becoming two deliveries).
    standins_us = used["stand-in"] / n * 1e6
    floor = copy_us + standins_us
    print(
        f"  floor: PostgreSQL storing an event by COPY into a table of the events' shape {copy_us:.1f} µs + "
        f"the stand-ins taking its {destinations} deliveries {standins_us:.1f} µs = {floor:.1f} µs a "
        f"event, {floor / budget:.2f}x the budget: at the target's rate these two alone need "
        f"{floor * target / 1e6:.2f} of the {cores} cores"
    )
    floor += deliveries_us
    print(
        f"  with its {destinations} delivery rows stored by COPY (this run's messages, primary key only) "
        f"{deliveries_us:.1f} µs more: {floor:.1f} µs a event, {floor / budget:.2f}x the budget"
        + (" (the target is beyond this machine whatever the hub does)" if floor > budget else "")
    )


def _copy_floor(events: list[dict], meter: _Meter) -> float:
    """PostgreSQL's CPU (µs an event, its backend read from /proc) to store `events` by COPY, 1,000 a
    transaction, into a scratch table shaped as the events table with its unique (app, event id)."""
    import psycopg

    with psycopg.connect(database_url(DB)) as conn:
        scratch_events_table(conn, "bench_copy_floor")
        now = datetime.now(UTC)
        rows = [
            (1, i % 200, e["eventId"], e["eventName"], datetime.fromtimestamp(e["timestamp"] / 1000, UTC),
             json.dumps(e["properties"]), now)
            for i, e in enumerate(events)
        ]  # fmt: skip
        meter.start()
        for i in range(0, len(rows), 1000):
            with conn.cursor().copy(f"COPY bench_copy_floor ({EVENT_COLUMNS}) FROM STDIN") as copy:
                for row in rows[i : i + 1000]:
                    copy.write_row(row)
            conn.commit()
        _, used = meter.stop_parts()
        conn.execute("DROP TABLE bench_copy_floor")
        conn.commit()
    return used["postgres"] / len(rows) * 1e6


def _copy_deliveries_floor(rows: int, meter: _Meter) -> float:
    """PostgreSQL's CPU (µs a row, its backend read from /proc) to store `rows` of the deliveries
    this run made, by COPY, 3,000 a transaction, into a scratch table of the deliveries' columns
    with their primary key and no other index."""
    import psycopg

    with psycopg.connect(database_url(DB)) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_copy_deliveries")
        conn.execute("CREATE TABLE bench_copy_deliveries (LIKE integrations_delivery INCLUDING DEFAULTS)")
        conn.execute("ALTER TABLE bench_copy_deliveries ADD PRIMARY KEY (id)")
        conn.commit()
        # The newest: this phase's, not the warm-up's.
        with conn.cursor().copy(
            "COPY (SELECT * FROM integrations_delivery ORDER BY created_at DESC LIMIT %s) TO STDOUT", [rows]
        ) as copy:
            data = b"".join(bytes(block) for block in copy)
        lines = data.splitlines(keepends=True)  # a text COPY escapes the newlines inside values
        meter.start()
        for i in range(0, len(lines), 3000):
            with conn.cursor().copy("COPY bench_copy_deliveries FROM STDIN") as copy:
                copy.write(b"".join(lines[i : i + 3000]))
            conn.commit()
        _, used = meter.stop_parts()
        conn.execute("DROP TABLE bench_copy_deliveries")
        conn.commit()
    return used["postgres"] / max(1, len(lines)) * 1e6


def _backfill_phase(
    m: int,
    app_public_id: str,
    standins: dict[str, StandIn],
    baseline: StandIn,
    meter: _Meter,
    lib_rate: float | None,
) -> bool:
    """Store `m` events of an app with no destination, connect three and backfill them at once
    through the worker; print each destination's rate. True when a backfill did not end as it should."""
    from django.db import transaction
    from django.utils import timezone

    from events.models import RollupBatch
    from events.services import usage_events_store, usage_events_validate
    from hub.models import App
    from integrations.backfill import backfill_start
    from integrations.destinations import destination_save
    from integrations.models import Backfill
    from integrations.vendors.webhook.connector import secret_generate

    app = App.objects.get(public_id=app_public_id)
    events = make_events(m, f"backfill-{uuid.uuid4().hex[:6]}")
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(0, m, 5000):
        usage_events_store(app=app, events=usage_events_validate(events[i : i + 5000]))
    took, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"backfill: {m} events stored in bulk in {took:.2f} s ({m / took:,.0f} events/s; "
          f"{cpu / m * 1e6:.0f} µs of CPU each in the bench), no destination of their app yet")  # fmt: skip
    deadline = time.monotonic() + 300
    while RollupBatch.objects.filter(app=app).exists() and time.monotonic() < deadline:
        time.sleep(0.2)  # their rollups are counted before the backfill starts
    for s in standins.values():
        s.reset()
    workspace = app.workspace
    integrations = {
        "metronome": destination_save(workspace=workspace, kind="metronome", name="Metronome backfill",
                                      secret="mt_bench", url=standins["metronome"].url, apps=[app]),
        "kable": destination_save(workspace=workspace, kind="kable", name="Kable backfill",
                                  secret="kcs_bench", url=standins["kable"].url, apps=[app],
                                  config={"client_id": "kci_bench"}),
        "webhook": destination_save(workspace=workspace, kind="webhook", name="Webhook backfill",
                                    secret=secret_generate(), url=standins["webhook"].url + "/hooks/in",
                                    apps=[app], config={"batch": True}),
    }  # fmt: skip
    meter.start()
    started = time.time()
    with transaction.atomic():  # the tasks are asked for after the commit, as the screen's are
        backfills = {
            name: backfill_start(integration=integration, since=datetime(2025, 12, 31, tzinfo=UTC),
                                 until=timezone.now(), by="bench")
            for name, integration in integrations.items()
        }  # fmt: skip
    rates = {
        name: m / (done - started) for name, done in _all_received(standins, m, max(180, m / 200)).items()
    }
    print(f"  {meter.stop()}")
    failed = False
    deadline = time.monotonic() + 30
    for name, backfill in backfills.items():
        while backfill.status == Backfill.Status.RUNNING and time.monotonic() < deadline:
            time.sleep(0.2)
            backfill.refresh_from_db()
        if backfill.status != Backfill.Status.DONE or backfill.queued != m or backfill.done != m:
            print(
                f"{name} backfill: {backfill.status}, {backfill.done} walked, {backfill.queued} queued of {m}"
            )
            failed = True
    if lib_rate is None:
        lib_rate = _lib_rate(baseline, events, meter)
    for name, rate in rates.items():
        print(f"{name} backfill: {m} stored events delivered = {rate:,.0f} events/s; "
              f"{rate / lib_rate:.2f}x segment-analytics-python ({lib_rate:,.0f}/s)")  # fmt: skip
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--backfill-events", type=int, default=50_000)
    parser.add_argument("--phases", default="throughput,latency,backfill")
    args = parser.parse_args(argv)
    phases = set(args.phases.split(","))
    n = args.events

    recreate_database(DB)
    broker = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/10")
    env = hub_env(
        DB, CELERY_BROKER_URL=broker, CELERY_RESULT_BACKEND=broker, HUB_OUTBOUND_ALLOW_NETWORKS="127.0.0.0/8",
        HUB_DELIVERY_SWEEP_SECONDS="0.5", HUB_DELIVERY_PARALLEL=str(args.concurrency),
        HUB_DELIVERY_TIMEOUT="10", DATABASE_CONN_MAX_AGE="600",
    )  # fmt: skip
    manage(env, "migrate", "--verbosity", "0")
    created = json.loads(manage(env, "hub_apply", "-", stdin=json.dumps(
        {"workspace": "Bench", "apps": [{"name": "Bench app", "api_keys": ["bench"]},
                                         {"name": "Backfill app", "api_keys": ["backfill"]}]})))  # fmt: skip
    app_info = created["apps"][0]
    headers = {"Content-Type": "application/json", "X-Mantle-App-Id": app_info["id"],
               "X-Mantle-App-Api-Key": app_info["api_keys"][0]["secret"]}  # fmt: skip
    standins = {name: StandIn(f"/tmp/{DB}-{name}.json") for name in ("metronome", "kable", "webhook")}
    baseline_standin = StandIn(f"/tmp/{DB}-segment.json")
    _setup_django(env)

    import redis

    from hub.models import App
    from integrations.destinations import destination_save
    from integrations.vendors.webhook.connector import secret_generate

    redis.Redis.from_url(broker).flushdb()
    app = App.objects.get(public_id=app_info["id"])
    workspace = app.workspace
    destination_save(workspace=workspace, kind="metronome", name="Metronome", secret="mt_bench",
                     url=standins["metronome"].url, apps=[app])  # fmt: skip
    destination_save(workspace=workspace, kind="kable", name="Kable", secret="kcs_bench",
                     url=standins["kable"].url, apps=[app], config={"client_id": "kci_bench"})  # fmt: skip
    hook_url = standins["webhook"].url + "/hooks/in"
    destination_save(workspace=workspace, kind="webhook", name="Webhook", secret=secret_generate(),
                     url=hook_url, apps=[app], config={"batch": True})  # fmt: skip

    worker = _start_worker(env, args.concurrency, f"/tmp/{DB}-worker.log", name=DB)
    failed = False
    lib_rate: float | None = None
    try:
        with gunicorn(env, workers=2) as port:
            web_pgid = _gunicorn_pgid(port)
            meter = _Meter(worker.pid, [*standins.values(), baseline_standin], db=DB, web_pgid=web_pgid)
            warm = http_load(port, "POST", "/v1/usage_events", headers,
                             [dumps({"events": make_events(1000, "warm")})] * 2, clients=2)  # fmt: skip
            assert warm.statuses == {200: 2}, warm.statuses
            for s in standins.values():
                s.wait_unique(1000, timeout=60)  # the two warm-up requests repeat the same ids
                s.reset()
            if "throughput" in phases:
                events = make_events(n, f"bulk-{uuid.uuid4().hex[:6]}")
                bodies = [dumps({"events": events[i : i + 1000]}) for i in range(0, n, 1000)]
                meter.start()
                started = time.time()
                load = http_load(port, "POST", "/v1/usage_events", headers, bodies, clients=args.clients)
                assert load.statuses == {200: len(bodies)}, load.statuses
                print(
                    f"ingest: {n} events answered in {load.seconds:.2f} s = {n / load.seconds:,.0f} events/s"
                )
                rates = {
                    name: n / (done - started)
                    for name, done in _all_received(standins, n, max(180, n / 300)).items()
                }
                text, used = meter.stop_parts()
                print(f"  {text}")
                lib_rate = _lib_rate(baseline_standin, events, meter)
                for name, rate in rates.items():
                    ratio = rate / lib_rate
                    print(f"{name}: {n} events delivered = {rate:,.0f} events/s; ratio {ratio:.2f} "
                          f"(target >= 2) {_verdict(ratio >= 2)}")  # fmt: skip
                    failed |= ratio < 2
                per_delivery = _copy_deliveries_floor(n * len(standins), meter)
                _feasibility(
                    lib_rate, n, len(standins), used, _copy_floor(events, meter), per_delivery * len(standins)
                )

            if "latency" in phases:
                for s in standins.values():
                    s.reset()
                queued = redis.Redis.from_url(broker).llen("celery")
                print(f"tasks waiting in the broker's queue before the steady phase: {queued}")
                per_request = 10
                requests = int(args.rate * args.seconds / per_request)
                prefix = f"steady-{uuid.uuid4().hex[:6]}"
                events = make_events(requests * per_request, prefix)
                ids = [
                    [e["eventId"] for e in events[k * per_request : (k + 1) * per_request]]
                    for k in range(requests)
                ]
                bodies = [
                    dumps({"events": events[k * per_request : (k + 1) * per_request]})
                    for k in range(requests)
                ]
                meter.start()
                with client_pool(args.clients) as pool:
                    t0 = time.time() + 0.5
                    schedule = [(t0 + k * per_request / args.rate, k, body) for k, body in enumerate(bodies)]
                    chunks = [(port, headers, schedule[i :: args.clients]) for i in range(args.clients)]
                    answered = dict(pair for part in pool.map(_paced, chunks) for pair in part)
                achieved = requests * per_request / (max(answered.values()) - t0)
                print(f"steady ingest: {requests * per_request} events at {args.rate:,.0f}/s asked, "
                      f"{achieved:,.0f}/s answered")  # fmt: skip
                for name, s in standins.items():
                    s.wait_unique(requests * per_request, timeout=120)
                    received = s.received_at()
                    lat = sorted(
                        (received[i] - answered[k]) * 1000
                        for k in range(requests)
                        for i in ids[k]
                        if i in received
                    )
                    p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
                    print(f"{name}: ingest answer to receipt p50 {p50:.0f} ms, p99 {p99:.0f} ms "
                          f"(target p99 <= 1000 ms) {_verdict(p99 <= 1000)}")  # fmt: skip
                    failed |= p99 > 1000
                print(f"  {meter.stop()}")
                _latency_parts(prefix, {name: s.url for name, s in standins.items()})

            if "backfill" in phases:
                failed |= _backfill_phase(args.backfill_events, created["apps"][1]["id"], standins,
                                          baseline_standin, meter, lib_rate)  # fmt: skip
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(30)
        for s in [*standins.values(), baseline_standin]:
            s.stop()
    return 1 if failed else 0


def _gunicorn_pgid(port: int) -> int | None:
    """The process group of the gunicorn serving `port` (its master leads a session of its own)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if any(b"gunicorn" in c for c in cmd) and f"127.0.0.1:{port}".encode() in cmd:
            return os.getpgid(int(entry))
    return None


if __name__ == "__main__":
    sys.exit(main())
