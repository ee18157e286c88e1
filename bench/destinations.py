"""Destinations: usage events ingested in bulk through the Mantle API and forwarded at once to
local stand-ins of Metronome (`/v1/ingest`), Kable (`/api/v1/events/create`) and a signed webhook
(JSON-array batches), all on loopback.

1. Throughput: N usage events (100,000 by default) posted in requests of 1,000 by 4 client
   processes to gunicorn (2 workers) while a Celery worker (4 processes, with beat) forwards them;
   each destination's rate is N over the time from the first request to the last event's receipt
   at its stand-in, against segment-analytics-python sending N track calls to a stand-in in the
   same run (in-memory queue, nothing durable). Target: ratio at least 2 for each destination.
2. Latency: events posted at a steady rate (1,000/s by default, in requests of 10); p99 from the
   ingest answer to receipt at each stand-in. Target: at most 1 s.

Each phase prints the CPU each part used (PostgreSQL, gunicorn, the worker, the stand-ins, the
bench and its clients).

    .venv/bin/python -m bench.destinations [--events 100000] [--rate 1000] [--seconds 15]
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

from bench.harness import client_pool, dumps, gunicorn, http_load, hub_env, manage, recreate_database
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--phases", default="throughput,latency")
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
        {"workspace": "Bench", "apps": [{"name": "Bench app", "api_keys": ["bench"]}]})))  # fmt: skip
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
    try:
        with gunicorn(env, workers=2) as port:
            web_pgid = _gunicorn_pgid(port)
            meter = CpuMeter(worker.pid, [*standins.values(), baseline_standin], db=DB, web_pgid=web_pgid)
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
                rates = {}
                for name, s in standins.items():
                    done = s.wait_unique(n, timeout=max(180, n / 300))
                    rates[name] = n / (done - started)
                print(f"  {meter.stop()}")

                import segment.analytics as segment_analytics

                client = segment_analytics.Client(
                    WRITE_KEY, host=baseline_standin.url, max_queue_size=n + 1, upload_size=100,
                    upload_interval=0.05,
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
                for name, rate in rates.items():
                    ratio = rate / lib_rate
                    print(f"{name}: {n} events delivered = {rate:,.0f} events/s; ratio {ratio:.2f} "
                          f"(target >= 2) {_verdict(ratio >= 2)}")  # fmt: skip
                    failed |= ratio < 2

            if "latency" in phases:
                for s in standins.values():
                    s.reset()
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
