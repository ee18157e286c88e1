"""The delivery engine, lifecycle activities to Segment: durable throughput, latency, recovery after
an outage and isolation from a hanging destination, all on loopback.

1. Throughput: N activities (100,000 by default) committed in PostgreSQL while the hub's Celery
   worker (with beat) runs, then handed to the fan-out one by one as the lifecycle service's
   on-commit hook does (`fanout_soon`; --no-handoff leaves them for the sweep to find, up to
   HUB_DELIVERY_SWEEP_SECONDS later); time until a local Segment stand-in has received every one of them,
   against segment-analytics-python sending as many track calls to the same stand-in (in-memory
   queue, nothing durable), the two taking turns in --rounds after a warm-up of 2,000 each (not
   measured: a fresh worker's first fan-out makes its threads and connections). Target: ratio at
   least 2.
2. Latency: activities recorded through the lifecycle service (commit, on_commit, worker) at a
   steady 200/s and 2,000/s (several producer processes; at 2,000/s, --per-commit activities a
   transaction); p99 commit-to-received. Targets: 150 ms and 500 ms.
3. Recovery: the destination refuses connections for 60 s (and, in a second case, a simulated
   30 minutes: the deliveries' backoff pushed an hour out and the outage dated 30 min back) while
   a backlog waits; time from its return to the first delivery (target 10 s) and the backlog's
   drain rate; the probe rate while it was down.
4. Isolation: one integration's stand-in hangs every request past the timeout while a second
   integration of another workspace takes 200/s: the healthy one's p99 against its figure without
   the fault (target at most 2x), and how many requests the hanging one held at once.

With BENCH_DUMP_LATENCY=<file>, each latency phase appends its [commit time, receipt time] pairs to
that file as a JSON line (to see when slow deliveries happen, not only how many).

Each phase prints the CPU seconds each part used (PostgreSQL backends of the bench database, the
Celery worker processes, the stand-in, the producers).

    .venv/bin/python -m bench.segment_delivery [--activities 100000] [--seconds 15] [--outage 60]
        [--phases throughput,latency,recovery,isolation] [--rates 200,2000] [--per-commit 4]
        [--rounds 2]
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
from pathlib import Path

import orjson
import psycopg

from bench.harness import BIN, ROOT, database_url, free_port, hub_env, manage, recreate_database

DB = os.environ.get("BENCH_SEGMENT_DB", "hub_bench_segment")  # another name for a parallel run
WRITE_KEY = "wk_bench"
TICKS = os.sysconf("SC_CLK_TCK")

# --- The stand-in (its own process): first receipt of each message id; can hang -----------------

# path -> the key of each item's id: Segment's messageId, Metronome's transaction_id, Kable's
# transactionId (a webhook carries the forwarded track call's messageId).
ID_KEYS = {"/v1/ingest": "transaction_id", "/api/v1/events/create": "transactionId"}


def _standin(port: int, ready, dump_path: str) -> None:
    seen: dict[str, float] = {}
    state = {"hang": 0.0, "inflight": 0, "max_inflight": 0, "requests": 0}
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
            elif self.path.startswith("/hang/"):
                state["hang"] = float(self.path.rsplit("/", 1)[1])
            with lock:
                self._reply(orjson.dumps({"unique": len(seen), **state}))

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                state["inflight"] += 1
                state["requests"] += 1
                state["max_inflight"] = max(state["max_inflight"], state["inflight"])
            try:
                if state["hang"]:
                    time.sleep(state["hang"])
                now = time.time()
                body = orjson.loads(raw)
                # Segment's {"batch": [...]}, Mantle's {"events": [...]}, a JSON array, or one message.
                items = (
                    (body.get("batch") or body.get("events") or [body]) if isinstance(body, dict) else body
                )
                key = ID_KEYS.get(self.path, "messageId")
                with lock:
                    for m in items:
                        seen.setdefault(str(m.get(key, m.get("messageId"))), now)
                self._reply(b'{"success":true}')
            finally:
                with lock:
                    state["inflight"] -= 1

        def do_DELETE(self):
            with lock:
                seen.clear()
                state.update(max_inflight=0, requests=0)
            self._reply(b"{}")

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    ready.set()
    server.serve_forever()


class StandIn:
    """A stand-in in a process of its own: `target(port, ready, dump_path, *args)` serves, recording
    the first receipt of each message id, with `/stats`, `/dump`, `/hang/<s>` and DELETE to reset."""

    def __init__(self, dump_path: str, port: int | None = None, *, target=None, args: tuple = ()):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dump_path = dump_path
        self.target, self.args = target or _standin, args
        self.proc = None
        self.start()

    def start(self) -> None:
        ctx = get_context("spawn")
        ready = ctx.Event()
        self.proc = ctx.Process(
            target=self.target, args=(self.port, ready, self.dump_path, *self.args), daemon=True
        )
        self.proc.start()
        ready.wait(10)

    def _call(self, method: str, path: str) -> dict:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request(method, path)
        body = conn.getresponse().read()
        conn.close()
        return orjson.loads(body)

    def stats(self) -> dict:
        return self._call("GET", "/stats")

    def unique(self) -> int:
        return self.stats()["unique"]

    def hang(self, seconds: float) -> None:
        self._call("GET", f"/hang/{seconds}")

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
        """Kill it: its port then refuses connections."""
        self.proc.kill()
        self.proc.join(5)


# --- CPU accounting ---------------------------------------------------------------------------


def _cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    pids.append(int(entry.name))
            except ProcessLookupError:
                pass
    return pids


class CpuMeter:
    """CPU seconds of each part between start() and stop()."""

    def __init__(self, worker_pgid: int, standins: list[StandIn], db: str = DB, web_pgid: int | None = None):
        self.worker_pgid = worker_pgid
        self.standins = standins
        self.db = db
        self.web_pgid = web_pgid

    def _pg_pids(self) -> list[int]:
        with psycopg.connect(database_url("postgres"), autocommit=True) as conn:
            rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [self.db]).fetchall()
        return [r[0] for r in rows]

    def _sample(self) -> dict[str, dict[int, float]]:
        return {
            "postgres": {p: _cpu(p) for p in self._pg_pids()},
            "workers": {p: _cpu(p) for p in _group_pids(self.worker_pgid)},
            "stand-in": {s.proc.pid: _cpu(s.proc.pid) for s in self.standins if s.proc.is_alive()},
            **({"web": {p: _cpu(p) for p in _group_pids(self.web_pgid)}} if self.web_pgid else {}),
            "bench+producers": {os.getpid(): _cpu(os.getpid())},
        }

    def start(self) -> None:
        self.before = self._sample()
        self.steal = _steal_seconds()
        self.started = time.monotonic()

    def stop(self, per: int = 0) -> str:
        """The CPU each part used; with `per` items, also the workers' CPU per item."""
        after = self._sample()
        wall = time.monotonic() - self.started
        parts = []
        for name, pids in after.items():
            used = sum(v - self.before[name].get(p, 0.0) for p, v in pids.items())
            parts.append(f"{name} {used:.2f} s")
            if name == "workers" and per:
                parts[-1] += f" ({used / per * 1000:.2f} ms an activity)"
        # A virtual machine's host may run others on its cores: the time it took from this one
        # ("steal") is time every part lost, and what makes two runs' rates differ.
        parts.append(f"stolen by the host {_steal_seconds() - self.steal:.1f} s")
        return f"CPU over {wall:.1f} s: " + ", ".join(parts)


def _steal_seconds() -> float:
    """The machine's CPU seconds taken by its hypervisor so far (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) / TICKS if len(fields) > 8 else 0.0


# --- The hub side ------------------------------------------------------------------------------


def _setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "hub.settings"
    import django

    django.setup()


def _start_worker(env: dict[str, str], concurrency: int, log_path: str, name: str = DB) -> subprocess.Popen:
    log = open(log_path, "wb")  # noqa: SIM115 - lives as long as the worker
    proc = subprocess.Popen(
        [str(BIN / "celery"), "-A", "hub", "worker", "--beat", "--schedule", f"/tmp/{name}-beat",
         "--concurrency", str(concurrency), "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
         "--hostname", f"bench-{os.getpid()}@%h"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    time.sleep(3)
    if proc.poll() is not None:
        with open(log_path) as f:
            raise RuntimeError(f.read()[-3000:])
    return proc


def _producer(
    env: dict, customer_ids: list[int], rate: float, seconds: float, start_at: float, per_commit: int, out
) -> None:
    """Record activities through the lifecycle service at `rate`/s, `per_commit` to a transaction
    (as an import or an identify with its install does); send back {id: commit time} and the CPU
    seconds the process used meanwhile (its Django, its driver, its fan-out sends)."""
    _setup_django(env)
    from django.db import transaction

    from hub.models import Customer
    from hub.services import lifecycle

    customers = list(Customer.objects.filter(pk__in=customer_ids).select_related("app"))
    commits: dict[str, float] = {}
    total = int(rate * seconds)
    interval = 1.0 / rate
    while time.time() < start_at:
        time.sleep(0.001)
    start = time.perf_counter()
    cpu_start = time.process_time()
    for first in range(0, total, per_commit):
        delay = start + first * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        with transaction.atomic():
            recorded = [
                lifecycle.activity_record(
                    customer=customers[i % len(customers)], kind="reviewed", properties={"rating": 5}
                )
                for i in range(first, min(total, first + per_commit))
            ]
        committed = time.time()
        commits.update((str(activity.pk), committed) for activity in recorded)
    time.sleep(0.3)  # the coalesced fan-out send of the last commits
    out.put((commits, time.process_time() - cpu_start))


def steady(
    env, customer_ids: list[int], rate: float, seconds: float, processes: int, per_commit: int = 1
) -> tuple[dict[str, float], float]:
    """Run `processes` producers together at `rate` in all (`per_commit` activities a transaction);
    return every activity's commit time and the CPU seconds the producers used."""
    ctx = get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 4  # every producer has set Django up before the clock
    procs = [
        ctx.Process(
            target=_producer,
            args=(env, customer_ids[i::processes], rate / processes, seconds, start_at, per_commit, queue),
        )
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    commits: dict[str, float] = {}
    cpu = 0.0
    for _ in procs:
        # A producer that cannot keep its rate (the machine is full) finishes late: wait for it.
        produced, used = queue.get(timeout=seconds * 20 + 120)
        commits.update(produced)
        cpu += used
    for p in procs:
        p.join(10)
    return commits, cpu


def latency(commits: dict[str, float], received: dict[str, float]) -> tuple[float, float, int]:
    if os.environ.get("BENCH_DUMP_LATENCY"):
        with open(os.environ["BENCH_DUMP_LATENCY"], "ab") as f:
            f.write(orjson.dumps([[t, received.get(k)] for k, t in commits.items()]) + b"\n")
    lat = sorted((received[k] - t) * 1000 for k, t in commits.items() if k in received)
    missing = sum(1 for k in commits if k not in received)
    if not lat:
        return float("nan"), float("nan"), missing
    return lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))], missing


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--activities", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2, help="turns of the hub and the library (throughput)")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--outage", type=float, default=60)
    parser.add_argument("--backlog", type=int, default=20_000)
    # The hub's own defaults (`manage.py hub_run`: CELERY_CONCURRENCY 2; HUB_DELIVERY_PARALLEL 2):
    # on 2 cores, 4 processes with 4 fan-outs at once took more CPU a delivery in contention
    # (2026-12-06: ratio 1.76-1.94 in 8 runs against 1.96-2.20 in 5 with 2, alternated).
    parser.add_argument("--concurrency", type=int, default=2, help="the Celery worker's processes")
    parser.add_argument(
        "--parallel", type=int, default=None,
        help="HUB_DELIVERY_PARALLEL, the fan-outs of a backlog at once (default: the hub's own)",
    )  # fmt: skip
    parser.add_argument("--handoff", action=argparse.BooleanOptionalAction, default=True,
                        help="throughput: hand the committed activities to the fan-out as the lifecycle "
                        "service does (--no-handoff: leave them to the sweep)")  # fmt: skip
    parser.add_argument("--phases", default="throughput,latency,recovery,isolation")
    parser.add_argument("--rates", default="200,2000", help="the latency phase's rates (activities/s)")
    parser.add_argument(
        "--per-commit", type=int, default=4,
        help="activities a producer transaction records at 2,000/s (200/s: one a transaction)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    phases = set(args.phases.split(","))
    n = args.activities

    recreate_database(DB)
    broker = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9")
    env = hub_env(
        DB,
        CELERY_BROKER_URL=broker,
        CELERY_RESULT_BACKEND=broker,
        HUB_OUTBOUND_ALLOW_NETWORKS="127.0.0.0/8",
        HUB_DELIVERY_SWEEP_SECONDS="0.5",
        HUB_DELIVERY_TIMEOUT="10",
        DATABASE_CONN_MAX_AGE="600",
    )
    if args.parallel is not None:
        env["HUB_DELIVERY_PARALLEL"] = str(args.parallel)
    manage(env, "migrate", "--noinput")
    standin = StandIn(f"/tmp/{DB}-received.json")
    _setup_django(env)

    import redis
    from django.db import transaction
    from django.utils import timezone

    from hub.models import Activity, ActivityOutbox, Customer
    from hub.services import accounts
    from hub.services.lifecycle import fanout_soon
    from integrations.models import Attempt, Delivery, Integration
    from integrations.services import integration_save

    redis.Redis.from_url(broker).flushdb()
    workspace = accounts.workspace_create(name="Bench")
    app = accounts.app_create(workspace=workspace, name="Bench app")
    integration = integration_save(
        workspace=workspace, name="Bench", write_key=WRITE_KEY, region="custom", custom_host=standin.url,
        apps=[app], activities=list(Activity.Kind.values),
    )  # fmt: skip
    customers = Customer.objects.bulk_create(
        [Customer(app=app, platform_id=f"shop-{i}", name=f"Shop {i}") for i in range(1000)]
    )
    customer_ids = [c.pk for c in customers]

    def bulk_activities(count: int, target_app, target_customers) -> list:
        now = timezone.now()
        rows = [
            Activity(
                app=target_app, customer=target_customers[i % len(target_customers)], kind="installed",
                occurred_at=now,
                properties={"app": target_app.name, "app_id": str(target_app.public_id),
                            "customer_id": str(target_customers[i % len(target_customers)].public_id),
                            "platform": "shopify", "platform_id": f"shop-{i % 1000}", "reinstall": False},
            )
            for i in range(count)
        ]  # fmt: skip
        with transaction.atomic():
            Activity.objects.bulk_create(rows, batch_size=5000)
        return rows

    worker = _start_worker(env, args.concurrency, f"/tmp/{DB}-worker.log")
    print(f"Celery worker: {args.concurrency} processes with beat; fan-outs of a backlog at once "
          f"(HUB_DELIVERY_PARALLEL): {env.get('HUB_DELIVERY_PARALLEL') or 'the default'}")  # fmt: skip
    meter = CpuMeter(worker.pid, [standin])
    failed = False
    try:
        if "throughput" in phases:
            # 1. The hub (N activities committed, then delivered) and segment-analytics-python (as
            # many track calls, the same stand-in) take turns in rounds of N / --rounds each, so a
            # drift of the machine's speed (a busy host) weighs on both alike; each rate is of the
            # rounds' totals.
            import segment.analytics as segment_analytics

            hub_seconds = lib_seconds = 0.0
            per_round = n // args.rounds
            # A warm-up of each, not measured: the worker's processes make their send threads and
            # database connections and import what a fan-out uses on their first fan-out (about
            # 0.15 s between the first task and its claim in a first round, 8 ms in the next),
            # and the library starts its thread.
            warm = min(2000, per_round)
            rows = bulk_activities(warm, app, customers)
            for row in rows:
                fanout_soon(str(row.pk))
            standin.wait_unique(warm, timeout=120)
            client = segment_analytics.Client(
                WRITE_KEY, host=standin.url, upload_size=100, upload_interval=0.05
            )
            for i in range(warm):
                client.track(user_id="warm-up", event="App Installed", message_id=f"warm-{i}")
            client.flush()
            standin.wait_unique(2 * warm, timeout=120)
            client.shutdown()
            for r in range(args.rounds):
                standin.reset()
                rows = bulk_activities(per_round, app, customers)
                committed = time.time()
                meter.start()  # the delivery's CPU, not that of the bench's own insert of the activities
                if args.handoff:
                    # After the commit, each activity is handed to the fan-out as the lifecycle
                    # service does (`fanout_soon`, on commit); without it, the sweep finds them.
                    for row in rows:
                        fanout_soon(str(row.pk))
                standin.wait_unique(per_round, timeout=max(120, per_round / 500))
                cpu = meter.stop()
                # Done when the stand-in received the last message (its own clock), not when the
                # bench's poll (every 20 ms) saw it: the same for the library's rounds below.
                received = standin.received_at().values()
                took = max(received) - committed
                hub_seconds += took
                first = min(received) - committed
                print(f"hub (durable, PostgreSQL outbox), round {r + 1}: {per_round} activities delivered "
                      f"in {took:.2f} s = {per_round / took:,.0f} events/s (the first {first:.2f} s "
                      "after the commit)")  # fmt: skip
                print(f"  {cpu}")

                standin.reset()
                client = segment_analytics.Client(
                    WRITE_KEY, host=standin.url, max_queue_size=per_round + 1, upload_size=100,
                    upload_interval=0.05,
                )  # fmt: skip
                meter.start()
                started = time.time()
                for i in range(per_round):
                    client.track(
                        user_id=str(customers[i % 1000].public_id), event="App Installed",
                        message_id=f"lib-{r}-{i}", properties=rows[i].properties,
                        timestamp=rows[i].occurred_at,
                    )  # fmt: skip
                client.flush()
                standin.wait_unique(per_round, timeout=max(120, per_round / 500))
                cpu = meter.stop()
                done = max(standin.received_at().values())
                lib_seconds += done - started
                client.shutdown()
                print(f"segment-analytics-python (in memory), round {r + 1}: {per_round} track calls in "
                      f"{done - started:.2f} s = {per_round / (done - started):,.0f} events/s")  # fmt: skip
                print(f"  {cpu}")
            total = per_round * args.rounds
            hub_rate, lib_rate = total / hub_seconds, total / lib_seconds
            print(f"hub {hub_rate:,.0f} events/s, segment-analytics-python {lib_rate:,.0f} events/s "
                  f"({args.rounds} rounds of {per_round})")  # fmt: skip
            ratio = hub_rate / lib_rate
            print(f"ratio hub / segment-analytics-python: {ratio:.2f} (target >= 2) {_verdict(ratio >= 2)}")
            failed |= ratio < 2

        if "latency" in phases:
            # 2. Latency at steady rates, through the lifecycle service (commit → on_commit → worker).
            rates = {int(r) for r in args.rates.split(",")}
            # What the worker costs with nothing to do (beat, the sweep, the broker's polling): the
            # part of the CPU below that is not per activity.
            meter.start()
            time.sleep(5)
            print(f"  idle worker, {meter.stop()}")
            # At 2,000/s, one commit an activity asks more of 2 cores than the producers' Django can
            # give (764/s from 4 processes): there, a producer transaction records several.
            for rate, target, procs, per_commit in ((200, 150, 1, 1), (2000, 500, 4, args.per_commit)):
                if rate not in rates:
                    continue
                standin.reset()
                meter.start()
                commits, producer_cpu = steady(env, customer_ids, rate, args.seconds, procs, per_commit)
                standin.wait_unique(len(commits), timeout=120)
                p50, p99, _missing = latency(commits, standin.received_at())
                achieved = len(commits) / max(1e-6, max(commits.values()) - min(commits.values()))
                print(f"  producers committed {achieved:,.0f} activities/s (asked {rate}/s)")
                # A phase whose producers fell short of the rate measured a lighter load: no verdict.
                reached = achieved >= 0.95 * rate
                verdict = _verdict(p99 <= target) if reached else f"INVALID (producers: {achieved:,.0f}/s)"
                print(f"commit-to-received at {rate}/s for {args.seconds:.0f} s ({len(commits)} activities, "
                      f"{procs} producer process(es), {per_commit} a transaction): p50 {p50:.0f} ms, "
                      f"p99 {p99:.0f} ms (target p99 <= {target} ms) {verdict}")  # fmt: skip
                print(f"  {meter.stop(per=len(commits))}; producers {producer_cpu:.1f} s "
                      f"({producer_cpu / len(commits) * 1000:.2f} ms an activity)")  # fmt: skip
                failed |= p99 > target or not reached

        if "recovery" in phases:
            # 3. Recovery after an outage: refused connections, then back.
            for case in ("real", "simulated-30min"):
                standin.stop()
                meter.start()
                down_at = time.time()
                bulk_activities(args.backlog, app, customers)
                # The fan-out keeps up while the destination is down.
                deadline = time.monotonic() + 60
                while ActivityOutbox.objects.exists():
                    if time.monotonic() > deadline:
                        raise RuntimeError("the fan-out fell behind during the outage")
                    time.sleep(0.2)
                fanned = time.time() - down_at
                pending = Delivery.objects.filter(integration=integration, status="pending").count()
                if case == "real":
                    time.sleep(max(0.0, args.outage - (time.time() - down_at)))
                    outage = time.time() - down_at
                else:
                    time.sleep(3)
                    # What 30 minutes of failures leave: ninth attempts, each due in up to an hour.
                    now = timezone.now()
                    Delivery.objects.filter(integration=integration, status="pending").update(
                        attempts=9, next_attempt_at=now + timezone.timedelta(hours=1),
                        retry_window_start=now - timezone.timedelta(minutes=30),
                    )  # fmt: skip
                    Integration.objects.filter(pk=integration.pk).update(
                        outage_since=now - timezone.timedelta(minutes=30)
                    )
                    outage = time.time() - down_at
                since = timezone.now() - timezone.timedelta(seconds=outage)
                probes = Attempt.objects.filter(
                    integration=integration, probe=True, created_at__gte=since
                ).count()
                standin.start()
                back = time.time()
                done = standin.wait_unique(pending, timeout=300)
                received = sorted(standin.received_at().values())
                first = received[0] - back
                drain = len(received) / max(1e-6, received[-1] - received[0])
                print(f"recovery ({case}): outage {outage:.0f} s, backlog {pending} fanned out in "
                      f"{fanned:.1f} s; first delivery {first:.2f} s after the return (target <= 10 s) "
                      f"{_verdict(first <= 10)}, "
                      f"backlog drained at {drain:,.0f}/s, all in {done - back:.1f} s; "
                      f"{probes} probes while down ({probes / max(1.0, outage):.2f}/s)")  # fmt: skip
                print(f"  {meter.stop()}")
                failed |= first > 10
                standin.reset()

        if "isolation" in phases:
            # 4. Isolation: a hanging destination beside a healthy one of another workspace.
            healthy_standin = StandIn(f"/tmp/{DB}-healthy.json")
            other = accounts.workspace_create(name="Bench other")
            other_app = accounts.app_create(workspace=other, name="Other app")
            integration_save(
                workspace=other, name="Healthy", write_key=WRITE_KEY, region="custom",
                custom_host=healthy_standin.url, apps=[other_app], activities=list(Activity.Kind.values),
            )  # fmt: skip
            other_customers = Customer.objects.bulk_create(
                [Customer(app=other_app, platform_id=f"o-{i}", name=f"O {i}") for i in range(200)]
            )
            other_ids = [c.pk for c in other_customers]
            meter.standins = [standin, healthy_standin]
            healthy_standin.reset()
            commits, _ = steady(env, other_ids, 200, args.seconds, 1)
            healthy_standin.wait_unique(len(commits), timeout=120)
            _, base_p99, _ = latency(commits, healthy_standin.received_at())
            standin.hang(12)  # past the 10 s timeout
            healthy_standin.reset()
            standin.reset()
            meter.start()
            results: dict[str, dict] = {}
            hanging = threading.Thread(
                target=lambda: results.update(h=steady(env, customer_ids, 200, args.seconds, 1)[0])
            )
            hanging.start()
            commits, _ = steady(env, other_ids, 200, args.seconds, 1)
            hanging.join()
            healthy_standin.wait_unique(len(commits), timeout=120)
            _, p99, _ = latency(commits, healthy_standin.received_at())
            held = standin.stats()["max_inflight"]
            print(f"isolation: healthy p99 {base_p99:.0f} ms alone, {p99:.0f} ms beside a hanging "
                  f"destination (target <= 2x) {_verdict(p99 <= 2 * base_p99)}; the hanging one had "
                  f"at most {held} requests in flight at once (send threads, beside "
                  f"{args.concurrency} worker processes)")  # fmt: skip
            print(f"  {meter.stop()}")
            failed |= p99 > 2 * base_p99
            standin.hang(0)
            healthy_standin.stop()
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        if standin.proc.is_alive():
            standin.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
