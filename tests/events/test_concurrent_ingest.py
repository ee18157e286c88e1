"""Concurrent duplicates from several client processes are stored once."""

import json
import subprocess
import sys
import time

import pytest

from events.models import UsageEvent
from tests.factories import AppFactory, api_key_for

pytestmark = pytest.mark.django_db(transaction=True)

CLIENT = r"""
import json, sys, time, requests
url, app_id, key, start_at, batches = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), json.loads(sys.argv[5])
while time.time() < start_at:
    time.sleep(0.001)
out = []
for events in batches:
    r = requests.post(url, json={"events": events}, headers={"X-Mantle-App-Id": app_id, "X-Mantle-App-Api-Key": key}, timeout=60)
    out.append([r.status_code, r.json()])
print(json.dumps(out))
"""


def test_concurrent_duplicates_from_several_processes_are_stored_once(live_server):
    app = AppFactory()
    _, secret = api_key_for(app)
    # Every process sends the same 300 ids (in a different order), in 3 batches, at the same instant.
    ids = [f"evt-{i}" for i in range(300)]
    procs = []
    start_at = time.time() + 1.5
    for p in range(4):
        order = ids[p * 75 :] + ids[: p * 75]
        batches = [
            [
                {"eventName": "api_call", "eventId": i, "customerId": f"shop-{int(i[4:]) % 7}"}
                for i in order[b::3]
            ]
            for b in range(3)
        ]
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    CLIENT,
                    f"{live_server.url}/v1/usage_events",
                    str(app.public_id),
                    secret,
                    str(start_at),
                    json.dumps(batches),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    answers = [body for per_proc in results for status, body in per_proc if status == 200]
    assert len(answers) == 12, results
    assert sum(a["accepted"] for a in answers) == 300
    assert sum(a["accepted"] + a["duplicates"] for a in answers) == 1200
    assert UsageEvent.objects.filter(app=app).count() == 300
    assert app.customers.count() == 7
