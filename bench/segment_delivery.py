"""Lifecycle activities to Segment: durable delivery throughput and latency, on loopback.

1. N activities (100,000 by default) are committed in PostgreSQL while the hub's Celery workers
   (with beat) run; time until a local Segment stand-in has received every one of them.
2. Baseline: segment-analytics-python sends the same number of track calls to the same stand-in
   (in-memory queue, nothing durable); time until all are received.
3. Latency: activities recorded through the lifecycle service at a steady 200/s; p99 of the time
   from commit to receipt at the stand-in.

Targets: ratio (1)/(2) at least 2, p99 at most 500 ms.

    .venv/bin/python -m bench.segment_delivery [--activities 100000] [--rate 200] [--seconds 15]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing import get_context

import orjson

from bench.harness import BIN, ROOT, free_port, hub_env, manage, recreate_database

DB = "hub_bench_segment"
WRITE_KEY = "wk_bench"


# --- The stand-in (its own process): counts unique messageIds and when each first arrived ------


def _standin(port: int, ready, dump_path: str) -> None:
    seen: dict[str, float] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def setup(self):
            super().setup()
            # Headers and body go out as separate writes: without this, Nagle's algorithm and the
            # client's delayed ACK add ~40 ms to every answer.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _reply(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/dump":
                with lock, open(dump_path, "wb") as f:
                    f.write(orjson.dumps(seen))
            with lock:
                self._reply(orjson.dumps({"unique": len(seen)}))

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            now = time.time()
            batch = orjson.loads(raw).get("batch", [])
            with lock:
                for m in batch:
                    seen.setdefault(m["messageId"], now)
            self._reply(b'{"success":true}')

        def do_DELETE(self):
            with lock:
                seen.clear()
            self._reply(b"{}")

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    ready.set()
    server.serve_forever()


class StandIn:
    def __init__(self, dump_path: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dump_path = dump_path
        ctx = get_context("spawn")
        ready = ctx.Event()
        self.proc = ctx.Process(target=_standin, args=(self.port, ready, dump_path), daemon=True)
        self.proc.start()
        ready.wait(10)

    def _call(self, method: str, path: str) -> dict:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request(method, path)
        body = conn.getresponse().read()
        conn.close()
        return orjson.loads(body)

    def unique(self) -> int:
        return self._call("GET", "/stats")["unique"]

    def reset(self) -> None:
        self._call("DELETE", "/")

    def received_at(self) -> dict[str, float]:
        self._call("GET", "/dump")
        with open(self.dump_path, "rb") as f:
            return orjson.loads(f.read())

    def wait_unique(self, n: int, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.unique() >= n:
                return time.time()
            time.sleep(0.02)
        raise RuntimeError(f"stand-in got {self.unique()} of {n} in {timeout}s")

    def stop(self) -> None:
        self.proc.kill()


# --- The hub side ------------------------------------------------------------------------------


def _setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "hub.settings"
    import django

    django.setup()


def _start_worker(env: dict[str, str], concurrency: int, log_path: str) -> subprocess.Popen:
    log = open(log_path, "wb")  # noqa: SIM115 - lives as long as the worker
    proc = subprocess.Popen(
        [str(BIN / "celery"), "-A", "hub", "worker", "--beat", "--schedule", f"/tmp/{DB}-beat",
         "--concurrency", str(concurrency), "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
         "--hostname", f"bench-{os.getpid()}@%h"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    time.sleep(3)
    if proc.poll() is not None:
        with open(log_path) as f:
            raise RuntimeError(f.read()[-3000:])
    return proc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--activities", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    n = args.activities

    recreate_database(DB)
    broker = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9")
    env = hub_env(
        DB,
        CELERY_BROKER_URL=broker,
        CELERY_RESULT_BACKEND=broker,
        HUB_OUTBOUND_ALLOW_NETWORKS="127.0.0.0/8",
        HUB_DELIVERY_SWEEP_SECONDS="0.5",
        HUB_DELIVERY_PARALLEL=str(args.concurrency),
        DATABASE_CONN_MAX_AGE="600",
    )
    manage(env, "migrate", "--noinput")
    standin = StandIn(f"/tmp/{DB}-received.json")
    _setup_django(env)

    import redis
    from django.db import transaction
    from django.utils import timezone

    from hub import lifecycle, services
    from hub.models import Activity, Customer
    from integrations.services import integration_save

    redis.Redis.from_url(broker).flushdb()
    workspace = services.workspace_create(name="Bench")
    app = services.app_create(workspace=workspace, name="Bench app")
    integration_save(
        workspace=workspace, name="Bench", write_key=WRITE_KEY, region="custom", custom_host=standin.url,
        apps=[app], activities=list(Activity.Kind.values),
    )  # fmt: skip
    customers = Customer.objects.bulk_create(
        [Customer(app=app, platform_id=f"shop-{i}", name=f"Shop {i}") for i in range(1000)]
    )
    worker = _start_worker(env, args.concurrency, f"/tmp/{DB}-worker.log")
    failed = False
    try:
        # 1. The hub: N activities committed, then delivered.
        now = timezone.now()
        rows = [
            Activity(
                app=app, customer=customers[i % len(customers)], kind="installed", occurred_at=now,
                properties={"app": app.name, "app_id": str(app.public_id),
                            "customer_id": str(customers[i % 1000].public_id), "platform": "shopify",
                            "platform_id": f"shop-{i % 1000}", "reinstall": False},
            )
            for i in range(n)
        ]  # fmt: skip
        with transaction.atomic():
            Activity.objects.bulk_create(rows, batch_size=5000)
        committed = time.time()
        done = standin.wait_unique(n, timeout=max(120, n / 500))
        hub_rate = n / (done - committed)
        print(f"hub (durable, PostgreSQL outbox): {n} activities delivered in {done - committed:.2f} s "
              f"= {hub_rate:,.0f} events/s")  # fmt: skip

        # 2. segment-analytics-python, the same number of track calls, same stand-in.
        standin.reset()
        import segment.analytics as segment_analytics

        client = segment_analytics.Client(
            WRITE_KEY, host=standin.url, max_queue_size=n + 1, upload_size=100, upload_interval=0.05
        )
        started = time.time()
        for i in range(n):
            client.track(
                user_id=str(customers[i % 1000].public_id), event="App Installed", message_id=f"lib-{i}",
                properties=rows[i].properties, timestamp=now,
            )  # fmt: skip
        client.flush()
        done = standin.wait_unique(n, timeout=max(120, n / 500))
        lib_rate = n / (done - started)
        client.shutdown()
        print(f"segment-analytics-python (in memory): {n} track calls in {done - started:.2f} s "
              f"= {lib_rate:,.0f} events/s")  # fmt: skip
        ratio = hub_rate / lib_rate
        print(f"ratio hub / segment-analytics-python: {ratio:.2f} (target >= 2)")
        failed |= ratio < 2

        # 3. Latency at a steady rate, through the lifecycle service (commit → on_commit → worker).
        standin.reset()
        commits: dict[str, float] = {}
        total = int(args.rate * args.seconds)
        interval = 1.0 / args.rate
        start = time.perf_counter()
        for i in range(total):
            target = start + i * interval
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            with transaction.atomic():
                activity = lifecycle.activity_record(
                    customer=customers[i % 1000], kind="reviewed", properties={"rating": 5}
                )
            commits[str(activity.pk)] = time.time()
        standin.wait_unique(total, timeout=60)
        received = standin.received_at()
        latencies = sorted((received[k] - t) * 1000 for k, t in commits.items())
        p50 = latencies[len(latencies) // 2]
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(f"commit-to-received at {args.rate}/s for {args.seconds:.0f} s ({total} activities): "
              f"p50 {p50:.0f} ms, p99 {p99:.0f} ms (target p99 <= 500 ms)")  # fmt: skip
        failed |= p99 > 500
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        standin.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
