"""Request figures under gunicorn with two worker processes: with PROMETHEUS_MULTIPROC_DIR every
scrape, whichever process answers it, counts the requests of both."""

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.processes import BIN, ROOT, free_port, process_env

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

TOKEN = "metrics-token-gunicorn-0123456789"


@pytest.fixture
def gunicorn(tmp_path):
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    port = free_port()
    log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115 - closed below
    env = process_env(HUB_METRICS_TOKEN=TOKEN, PROMETHEUS_MULTIPROC_DIR=str(multiproc))
    proc = subprocess.Popen(
        [str(BIN / "gunicorn"), "hub.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"{url}/healthz", timeout=10)
                break
            except requests.RequestException:
                time.sleep(0.2)
        yield url, multiproc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()


def _healthz_count(url: str) -> float:
    text = requests.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).text
    prefix = 'hub_http_request_duration_seconds_count{method="GET",route="healthz",status="200"} '
    (line,) = [x for x in text.splitlines() if x.startswith(prefix)]
    return float(line.removeprefix(prefix))


def test_every_scrape_counts_the_requests_of_every_worker_process(gunicorn):
    url, multiproc = gunicorn
    start = _healthz_count(url)
    sent = 0

    def get(_):
        requests.get(f"{url}/healthz", headers={"Connection": "close"}, timeout=10)

    # Concurrent requests, on new connections, until both processes have served some (one idle
    # sync worker can otherwise win every accept on a busy machine).
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(20):
            list(pool.map(get, range(20)))
            sent += 20
            if len(list(multiproc.glob("histogram_*.db"))) == 2:
                break
    assert len(list(multiproc.glob("histogram_*.db"))) == 2  # both processes served requests
    counts = {_healthz_count(url) for _ in range(10)}  # scrapes answered by either process
    assert counts == {start + sent}
