"""The hub's WSGI application plus three bench-only floor endpoints, for `bench.ingest`.

`bench.ingest` serves this module instead of `hub.wsgi`: the same application, whose routes are
unchanged, with three POST endpoints under `/v1/bench-floor/` (`bench.ingest.FLOORS`) that take
the single-event phase's body through the same gunicorn and the same `/v1/` middleware chain,
each doing less of the hub's work. They tell what a one-event request cannot avoid on this
machine from what the hub adds to it:

- `post`: reads and parses the JSON body and answers the hub's JSON (no database);
- `one-row`: also commits one row (the body, into a scratch table with a primary key only) before
  answering: one durable round trip at its cheapest;
- `statement`: also commits the hub's own one-event statement (the dedupe key, the event and its
  rollup batch: `events.event_store`), without authentication, validation, DRF or the rollup
  drain's enqueue.

Never part of the hub: nothing outside `bench/` imports this module.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import django
import orjson

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
django.setup()

from django.http import HttpResponse  # noqa: E402 (after setup)
from django.urls import include, path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402
from django.views.decorators.http import require_POST  # noqa: E402

import hub.urls  # noqa: E402
from bench.ingest import FLOORS, SCRATCH_TABLE  # noqa: E402
from events.event_store import PostgresUsageEventStore  # noqa: E402
from hub.models import Customer  # noqa: E402
from hub.raw_cursor import DirectStatement  # noqa: E402

_ONE_ROW = DirectStatement(
    "bench_floor_one_row",
    f"INSERT INTO {SCRATCH_TABLE} (body) VALUES (%s) RETURNING id",
    (bytes.decode,),
)
_STORE = PostgresUsageEventStore()
# (app id, customer's platform id) -> (app pk, customer pk), read once per process (the hub's
# own lookup keeps such references for a process too: hub.services.customer_refs).
_CUSTOMERS: dict[tuple[str, str], tuple[int, int]] = {}


def _answer(accepted: int) -> HttpResponse:
    """The hub's answer, as compact JSON."""
    body = orjson.dumps({"success": True, "accepted": accepted, "duplicates": 1 - accepted})
    return HttpResponse(body, content_type="application/json")


@csrf_exempt
@require_POST
def post_only(request):
    orjson.loads(request.body)
    return _answer(1)


@csrf_exempt
@require_POST
def one_row(request):
    orjson.loads(request.body)
    return _answer(len(_ONE_ROW.rows([request.body.decode()])))


@csrf_exempt
@require_POST
def statement(request):
    event = orjson.loads(request.body)
    app_id = request.headers["X-Mantle-App-Id"]
    if (app_id, event["customerId"]) not in _CUSTOMERS:  # the app's customers, in one query
        for customer in Customer.objects.filter(app__public_id=app_id):
            _CUSTOMERS[(app_id, customer.platform_id)] = (customer.app_id, customer.pk)
    app_pk, customer_pk = _CUSTOMERS[(app_id, event["customerId"])]
    timestamp = datetime.fromtimestamp(event["timestamp"] / 1000, UTC)
    row = (app_pk, customer_pk, event["eventId"], event["eventName"], timestamp,
           orjson.dumps(event["properties"]).decode(), datetime.now(UTC))  # fmt: skip
    stored, _ = _STORE.insert([row])  # the hub's own one-event statement, as its ingest sends it
    return _answer(len(stored))


VIEWS = {"post": post_only, "one-row": one_row, "statement": statement}
assert VIEWS.keys() == FLOORS.keys()
# Beside `usage_events` in the API's own list (read when the first request resolves): the floors
# resolve at its depth, and the hub's paths before it see no pattern more.
hub.urls.api_v1.insert(
    [getattr(p, "name", None) for p in hub.urls.api_v1].index("api_usage_events") + 1,
    path("bench-floor/", include([path(name, view) for name, view in VIEWS.items()])),
)

from hub.wsgi import application  # noqa: E402

__all__ = ["application"]
