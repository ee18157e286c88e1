"""PostgreSQL and Redis servers of a test's own, on free loopback ports, that it may kill.

The chaos suite restarts the database and the broker; doing that to the machine's shared
servers would break every other test run, so it gets private ones.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tests.processes import free_port


def _pg_bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")


def _as_postgres(args: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the postgres user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


class PrivatePostgres:
    def __init__(self, base: Path):
        # Its own folder outside pytest's private (0700) tmp dirs, so the postgres user can enter.
        self.root = Path(tempfile.mkdtemp(prefix="hub-private-pg-"))
        self.root.chmod(0o755)
        self.dir = self.root / "data"
        self.port = free_port()
        self.bindir = _pg_bindir()
        self.log = self.root / "postgres.log"
        self.base = base

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> PrivatePostgres:
        self.dir.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self.log.touch()
            shutil.chown(self.log, "postgres", "postgres")
        subprocess.run(
            _as_postgres([str(self.bindir / "initdb"), "-D", str(self.dir), "-U", "postgres", "--auth=trust",
                          "-E", "UTF8", "--no-sync"]),
            check=True, capture_output=True,
        )  # fmt: skip
        return self.start()

    def start(self) -> PrivatePostgres:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir}"
        subprocess.run(
            _as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.dir), "-o", options, "-l", str(self.log),
                          "-w", "-t", "60", "start"]),
            check=True, capture_output=True,
        )  # fmt: skip
        return self

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.copy(self.log, self.base / "postgres.log")
        shutil.rmtree(self.root, ignore_errors=True)

    def stop(self, mode: str = "fast") -> None:
        """`immediate` is a crash: no checkpoint, recovery from the WAL at the next start."""
        subprocess.run(
            _as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.dir), "-m", mode, "-w", "stop"]),
            check=False, capture_output=True,
        )  # fmt: skip

    def restart(self, mode: str = "immediate") -> None:
        self.stop(mode)
        self.start()

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + f"/{name}"


class PrivateRedis:
    def __init__(self, base: Path):
        self.port = free_port()
        self.log = base / "redis.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--logfile", str(self.log)],
            start_new_session=True,
        )  # fmt: skip
        import redis

        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("private redis did not start")

    def stop(self) -> None:
        """Kill it: whatever it held (queued tasks) is gone, as in a crash without persistence."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()


class PrivatePgBouncer:
    """Debian's PgBouncer on a free loopback port, in transaction pool mode, in front of a
    PostgreSQL server (every database name is passed through to it)."""

    def __init__(
        self, base: Path, *, pg_host: str = "127.0.0.1", pg_port: int = 5432, user: str = "postgres"
    ):
        # Its own folder outside pytest's private (0700) tmp dirs: run as root, PgBouncer drops to
        # the postgres user (it refuses to run as root), which must read its config and write its log.
        self.root = Path(tempfile.mkdtemp(prefix="hub-private-pgbouncer-"))
        self.root.chmod(0o755)
        self.port = free_port()
        self.base = base
        self.log = self.root / "pgbouncer.log"
        self.ini = self.root / "pgbouncer.ini"
        self.pg_host, self.pg_port, self.user = pg_host, pg_port, user
        self.proc: subprocess.Popen | None = None

    def config(self) -> str:
        """The settings docs/scaling.md documents, sized for a test run."""
        return "\n".join(
            [
                "[databases]",
                f"* = host={self.pg_host} port={self.pg_port}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {self.port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {self.root / 'userlist.txt'}",
                "pool_mode = transaction",
                # Each transaction on the next idle server connection, not the last one used: state
                # a session kept across transactions (locks, prepared statements) shows up at once.
                "server_round_robin = 1",
                "max_client_conn = 500",
                "default_pool_size = 20",
                "ignore_startup_parameters = extra_float_digits,options",
                f"logfile = {self.log}",
                f"admin_users = {self.user}",
                "",
            ]
        )

    def start(self) -> PrivatePgBouncer:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(binary).exists():
            raise RuntimeError("pgbouncer is not installed (apt-get install pgbouncer; .ci/services.sh does)")
        (self.root / "userlist.txt").write_text(f'"{self.user}" ""\n')
        self.ini.write_text(self.config())
        args = [binary, str(self.ini)]
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            args = [binary, "-u", "postgres", str(self.ini)]
        self.proc = subprocess.Popen(args, start_new_session=True, stdout=subprocess.DEVNULL,
                                     stderr=open(self.root / "stderr.log", "wb"))  # fmt: skip  # noqa: SIM115
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {self._logs()}")
            try:
                with psycopg.connect(self.url("postgres"), prepare_threshold=None, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return self
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError(f"pgbouncer did not start: {self._logs()}")

    def url(self, database: str) -> str:
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{database}"

    def _logs(self) -> str:
        out = ""
        for path in (self.root / "stderr.log", self.log):
            if path.exists():
                out += path.read_text(errors="replace")[-3000:]
        return out

    def stop(self) -> None:
        """Stop it: its server connections close, so the test database can be dropped."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self.log.exists():
            shutil.copy(self.log, self.base / "pgbouncer.log")
        shutil.rmtree(self.root, ignore_errors=True)
