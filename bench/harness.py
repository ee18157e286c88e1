"""Shared pieces of the benchmarks: a scratch PostgreSQL database, a gunicorn hub, HTTP load."""

from __future__ import annotations

import http.client
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
FERNET_KEY = "GAW81VnGy_yUPqjZdtDEvDzEpCDBY2QBOtNJ35o_zHk="


def database_url(name: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


def hub_env(db_name: str, **extra: str) -> dict[str, str]:
    """Production-like settings on loopback (no TLS redirect, no rate limit)."""
    env = dict(os.environ)
    env.update(
        {
            "DEBUG": "0",
            "SECRET_KEY": "bench-only-secret-key-0123456789-0123456789-0123456789",
            "HUB_ENCRYPTION_KEYS": FERNET_KEY,
            "ALLOWED_HOSTS": "*",
            "DATABASE_URL": database_url(db_name).replace("postgresql://", "postgres://"),
            "CELERY_BROKER_URL": os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/8"),
            "SECURE_SSL_REDIRECT": "0",
            "SESSION_COOKIE_SECURE": "0",
            "CSRF_COOKIE_SECURE": "0",
            "STATIC_MANIFEST": "0",
            "LOG_LEVEL": "WARNING",
            "HUB_RATE_LIMIT": "off",
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update(extra)
    return env


def recreate_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def manage(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env, input=stdin, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The gunicorn master of each running server, by port (its workers are its children).
SERVER_PIDS: dict[int, int] = {}


@contextmanager
def gunicorn(
    env: dict[str, str], *, workers: int = 2, threads: int = 1, app: str = "hub.wsgi"
) -> Iterator[int]:
    """Run `gunicorn hub.wsgi` (or `app`) with `workers` processes (`threads` each: gthread); yield
    its port."""
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "gunicorn"), app, "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
         "--threads", str(threads), "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("gunicorn did not start")
        SERVER_PIDS[port] = proc.pid
        yield port
    finally:
        SERVER_PIDS.pop(port, None)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies: list[float]
    statuses: dict[int, int]
    client_cpu: float = 0.0  # CPU seconds the client processes spent sending (the load generator's cost)
    machine_cpu: float = 0.0  # CPU seconds the whole machine was busy meanwhile (`machine_busy_seconds`)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    def summary(self) -> str:
        return f"p50 {self.pct(50):.1f} ms, p99 {self.pct(99):.1f} ms"

    @classmethod
    def merged(cls, parts: list[LoadResult]) -> LoadResult:
        """One result of several runs of a phase: their requests over their summed time."""
        statuses: dict[int, int] = {}
        for part in parts:
            for code, n in part.statuses.items():
                statuses[code] = statuses.get(code, 0) + n
        return cls(sum(p.requests for p in parts), sum(p.seconds for p in parts),
                   [x for p in parts for x in p.latencies], statuses,
                   sum(p.client_cpu for p in parts), sum(p.machine_cpu for p in parts))  # fmt: skip


def _request(conn, port: int, method: str, path: str, body, headers: dict[str, str]):
    """Send one request on `conn`, once more on a new connection if the old one broke."""
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
    except (http.client.HTTPException, OSError):
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
    return conn, response


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy so far, over all its cores (/proc/stat's first
    line: user, nice, system, irq and softirq; not idle, iowait or steal, the time another guest of
    the host had the core; guest time is counted within user already)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _client_worker(args) -> tuple[list[float], dict[int, int], float]:
    port, method, path, headers, bodies = args
    latencies, statuses = [], {}
    cpu_start = _cpu_seconds()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for body in bodies:
        start = time.perf_counter()
        conn, response = _request(conn, port, method, path, body, headers)
        latencies.append(time.perf_counter() - start)
        statuses[response.status] = statuses.get(response.status, 0) + 1
        if response.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    return latencies, statuses, _cpu_seconds() - cpu_start


_barrier = None


def _init_client(barrier) -> None:
    global _barrier
    _barrier = barrier


def _client_ready(_: int) -> None:
    """Return once every client process runs this at the same time: all of them have started."""
    _barrier.wait(timeout=60)


@contextmanager
def client_pool(clients: int) -> Iterator:
    """`clients` spawned processes, every one started (imports done) before the caller's clock
    starts: a process still starting would spend its start-up CPU inside the measured window."""
    ctx = get_context("spawn")
    barrier = ctx.Barrier(clients)
    with ctx.Pool(clients, initializer=_init_client, initargs=(barrier,)) as pool:
        pool.map(_client_ready, range(clients), chunksize=1)
        yield pool


def http_load(
    port: int, method: str, path: str, headers: dict[str, str], bodies: list[bytes | None], *, clients: int
) -> LoadResult:
    """Send `bodies` from `clients` separate processes at once; time the whole run (and the
    machine's busy CPU through it: the clients' start-up and exit fall outside)."""
    chunks = [bodies[i::clients] for i in range(clients)]
    with client_pool(clients) as pool:
        busy = machine_busy_seconds()
        start = time.perf_counter()
        results = pool.map(_client_worker, [(port, method, path, headers, c) for c in chunks])
        seconds = time.perf_counter() - start
        busy = machine_busy_seconds() - busy
    latencies = [x for lat, _, _ in results for x in lat]
    statuses: dict[int, int] = {}
    for _, st, _ in results:
        for k, v in st.items():
            statuses[k] = statuses.get(k, 0) + v
    return LoadResult(len(bodies), seconds, latencies, statuses, sum(cpu for _, _, cpu in results), busy)


def _paced_worker(args) -> tuple[list[float], dict[int, int], float]:
    """Send each body at its scheduled wall-clock time (open loop: a late one goes at once)."""
    port, method, path, headers, schedule = args
    latencies, statuses = [], {}
    worst_lag = 0.0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for at, body in schedule:
        wait = at - time.time()
        if wait > 0:
            time.sleep(wait)
        worst_lag = max(worst_lag, -wait)
        start = time.perf_counter()
        conn, response = _request(conn, port, method, path, body, headers)
        latencies.append(time.perf_counter() - start)
        statuses[response.status] = statuses.get(response.status, 0) + 1
    return latencies, statuses, worst_lag


def paced_load(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str],
    bodies: list[bytes],
    *,
    requests_per_second: float,
    clients: int,
) -> tuple[LoadResult, float]:
    """Send `bodies` at a fixed rate (request k at start + k / rate) from `clients` processes, so a
    slow answer does not slow the senders; the result and the worst lateness of a send, seconds."""
    with client_pool(clients) as pool:
        t0 = time.time() + 0.5
        schedule = [(t0 + k / requests_per_second, body) for k, body in enumerate(bodies)]
        start = time.perf_counter()
        results = pool.map(
            _paced_worker, [(port, method, path, headers, schedule[i::clients]) for i in range(clients)]
        )
        seconds = time.perf_counter() - start
    latencies = [x for lat, _, _ in results for x in lat]
    statuses: dict[int, int] = {}
    for _, st, _ in results:
        for k, v in st.items():
            statuses[k] = statuses.get(k, 0) + v
    return LoadResult(len(bodies), seconds, latencies, statuses), max(lag for _, _, lag in results)


def median_of(runs: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(runs))


def dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def process_cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds each process has used so far (from /proc; gone ones left out)."""
    tick = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        seconds[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14 and 15 of stat)
    return seconds


def child_pids(pid: int) -> list[int]:
    """The processes `pid` started (gunicorn's workers of its master)."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@dataclass
class ServerCpu:
    """CPU seconds of a gunicorn server's workers and of the PostgreSQL backends serving its database,
    read from /proc: robust on a busy machine, where wall-clock rates are not."""

    port: int
    db: str
    web: float = 0.0
    postgres: float = 0.0

    def _sample(self) -> tuple[dict[int, float], dict[int, float]]:
        workers = child_pids(SERVER_PIDS[self.port])
        with psycopg.connect(database_url(self.db), autocommit=True) as conn:
            backends = [pid for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'"
                " AND pid <> pg_backend_pid()", (self.db,))]  # fmt: skip
        return process_cpu_seconds(workers), process_cpu_seconds(backends)

    @contextmanager
    def measure(self) -> Iterator[ServerCpu]:
        """Within the block, `web` and `postgres` grow by the CPU seconds each spent meanwhile (a
        process started meanwhile counts whole; one that ended meanwhile is missed): blocks of a
        phase run in rounds add up."""
        web0, pg0 = self._sample()
        yield self
        web1, pg1 = self._sample()
        self.web += sum(cpu - web0.get(pid, 0.0) for pid, cpu in web1.items())
        self.postgres += sum(cpu - pg0.get(pid, 0.0) for pid, cpu in pg1.items())

    def per_request(self, requests: int, load: LoadResult | None = None) -> str:
        """The server's CPU per request; with the `load` it served, the whole machine's through it
        too, the clients' share of that and the rest (the kernel's work outside those processes,
        PostgreSQL's background processes, anything else running). The server's CPU is measured
        over a slightly wider window (the clients' start-up too, while the server idles), so the
        rest can read a little below zero."""
        ms = 1000 / requests
        line = f"server CPU per request: web {self.web * ms:.2f} ms, PostgreSQL {self.postgres * ms:.2f} ms"
        if load is not None:
            machine, clients = load.machine_cpu, load.client_cpu
            rest = machine - self.web - self.postgres - clients
            line += (f"; the machine's {machine * ms:.2f} ms: clients {clients * ms:.2f} ms, "
                     f"the rest {rest * ms:.2f} ms")  # fmt: skip
        return line


# --- The raw baselines: the events' rows stored by plain psycopg, no hub -------------------------

EVENT_COLUMNS = "app_id, customer_id, event_id, event_name, timestamp, properties, received_at"


def scratch_events_table(conn: psycopg.Connection, name: str) -> None:
    """(Re)create `name` shaped as the events table with its unique (app_id, event_id), committed.

    The events table is partitioned and its dedupe key lives in events_usageeventkey: the
    baselines keep the one-table shape, its unique (app_id, event_id) included."""
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(f"CREATE TABLE {name} (LIKE events_usageevent INCLUDING ALL)")
    conn.execute(f"ALTER TABLE {name} ADD UNIQUE (app_id, event_id)")
    conn.commit()


def raw_insert_rate(db: str, rows: list[tuple]) -> float:
    """Rows/s of psycopg executemany INSERT ... ON CONFLICT DO NOTHING of `rows` (EVENT_COLUMNS),
    1,000 rows a transaction, into a scratch table shaped as the events table."""
    sql = (
        f"INSERT INTO bench_scratch ({EVENT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (app_id, event_id) DO NOTHING"
    )
    with psycopg.connect(database_url(db)) as conn:
        scratch_events_table(conn, "bench_scratch")
        start = time.perf_counter()
        with conn.cursor() as cur:
            for i in range(0, len(rows), 1000):
                cur.executemany(sql, rows[i : i + 1000])
                conn.commit()
        return len(rows) / (time.perf_counter() - start)
