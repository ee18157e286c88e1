"""Usage-event ingest benchmark (issue: usage events in).

Starts the hub under gunicorn (4 sync workers: two a core, within gunicorn's advice of 2-4 a
core; with 2 a worker waiting for its commit leaves a core idle) on a scratch PostgreSQL database
and drives it from separate client processes. Prints, from one run:
  (a) bulk ingest events/s (1,000-event requests, dedupe on) and its ratio to a raw psycopg
      executemany of INSERT ... ON CONFLICT DO NOTHING of the same rows into a same-shaped
      scratch table;
  (b) single-event requests/s and its ratio to a trivial JSON view (/healthz) on the same server,
      the two phases taking turns in rounds (`--rounds`, 10 by default: short turns, so a drift of
      the machine's speed, which moved single rounds by up to 40% on a shared 2-core machine,
      weighs on both alike); the ratio is of their totals, each round's printed beside with their
      median;
  (b') the floors of (b): the same bodies, through the same server and middleware, to bench-only
      endpoints (`bench.ingest_floor`) that parse the body and answer (no database), also commit
      one row (one durable round trip at its cheapest), or also commit the hub's own one-event
      statement (no authentication, validation or DRF); each as a ratio to the trivial view, in
      the same rounds, and the hub's single rate as a ratio to the statement's floor;
  (c) identify (`POST /v1/identify`) of new customers, then of the same customers again, each in
      requests/s and as a ratio to (b)'s single-event rate;
  p50/p99 latency for each, and the CPU the server (gunicorn workers, PostgreSQL backends) spent
  per request, read from /proc (robust on a busy machine, where rates are not); beside it the
  whole machine's busy CPU per request, the clients' share of it and the rest (the kernel's work
  outside those processes, PostgreSQL's background processes, anything else running). The phases
  keep both cores busy, so a ratio of rates is about the inverse ratio of the machine's CPU per
  request.
  Targets: every ratio >= 0.5 (the floors are printed for what they tell, without a target).

    python -m bench.ingest [--events 100000] [--single 6000] [--rounds 10] [--identify 3000]
                           [--clients 4] [--workers 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import uuid
from datetime import UTC, datetime, timedelta

import psycopg

from bench.harness import (
    LoadResult,
    ServerCpu,
    database_url,
    dumps,
    gunicorn,
    http_load,
    hub_env,
    manage,
    raw_insert_rate,
    recreate_database,
)

DB = "hub_bench_ingest"
TARGET = 0.5
# The floors of the single-event phase: bench-only endpoints of `bench.ingest_floor` (the server
# this bench runs), under /v1/bench-floor/<name>.
FLOORS = {
    "post": "parse the body and answer, no database",
    "one-row": "and commit one row (primary key only)",
    "statement": "and commit the hub's one-event statement",
}
SCRATCH_TABLE = "bench_floor_row"  # the one-row floor's table, in the bench's database
SCRATCH_DDL = f"CREATE TABLE {SCRATCH_TABLE} (id bigserial PRIMARY KEY, body text NOT NULL)"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def make_events(n: int, prefix: str) -> list[dict]:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        {
            "eventName": ("api_call", "report_generated", "export")[i % 3],
            "eventId": f"{prefix}-{i}",
            "customerId": f"shop-{i % 200}",
            "timestamp": int((t0 + timedelta(seconds=i)).timestamp() * 1000),
            "properties": {"rows": i % 97, "plan": "pro", "path": "/api/v1/things"},
        }
        for i in range(n)
    ]


def identify_bodies(n: int, prefix: str) -> list[bytes]:
    """What an app server sends on install or login: the shop's ids, owner and plan."""
    return [
        dumps({"platform": "shopify", "platformId": f"{prefix}-{i}",
               "myshopifyDomain": f"{prefix}-{i}.myshopify.com",
               "name": f"Shop {i}", "email": f"owner{i}@example.com", "platformPlanName": "basic",
               "customFields": {"segment": ("smb", "mid", "enterprise")[i % 3]}})
        for i in range(n)
    ]  # fmt: skip


def raw_baseline(events: list[dict], app_pk: int, customer_pks: dict[str, int]) -> float:
    """Rows/s of psycopg executemany INSERT ... ON CONFLICT DO NOTHING, 1,000 rows a transaction."""
    now = datetime.now(UTC)
    rows = [
        (app_pk, customer_pks[e["customerId"]], e["eventId"], e["eventName"],
         datetime.fromtimestamp(e["timestamp"] / 1000, UTC), json.dumps(e["properties"]), now)
        for e in events
    ]  # fmt: skip
    return raw_insert_rate(DB, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000, help="events for the bulk test")
    parser.add_argument(
        "--single",
        type=int,
        default=6_000,
        help="requests for the single-event test (and as many for the trivial view)",
    )
    parser.add_argument("--rounds", type=int, default=10, help="turns of the single and trivial phases")
    parser.add_argument("--identify", type=int, default=3_000, help="customers for the identify test")
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=1, help="threads per gunicorn worker (gthread)")
    args = parser.parse_args(argv)

    recreate_database(DB)
    env = hub_env(DB)
    manage(env, "migrate", "--verbosity", "0")
    with psycopg.connect(database_url(DB), autocommit=True) as conn:
        conn.execute(SCRATCH_DDL)
    created = json.loads(manage(env, "hub_apply", "-", stdin=json.dumps(
        {"workspace": "Bench", "apps": [{"name": "Bench app", "api_keys": ["bench"]}]})))  # fmt: skip
    app = created["apps"][0]
    headers = {"Content-Type": "application/json", "X-Mantle-App-Id": app["id"],
               "X-Mantle-App-Api-Key": app["api_keys"][0]["secret"]}  # fmt: skip

    bulk_events = make_events(args.events, f"bulk-{uuid.uuid4().hex[:6]}")
    bulk_bodies = [dumps({"events": bulk_events[i : i + 1000]}) for i in range(0, len(bulk_events), 1000)]
    # Half of every request repeats ids already sent: dedupe is exercised, not skipped.
    dup_bodies = [dumps({"events": bulk_events[i : i + 500] + bulk_events[i + 500 : i + 1000]})
                  for i in range(0, min(len(bulk_events), 10_000), 1000)]  # fmt: skip
    run = uuid.uuid4().hex[:6]
    single_events = make_events(args.single, f"single-{run}")
    single_bodies = [dumps(e) for e in single_events]
    identify = identify_bodies(args.identify, f"idn-{uuid.uuid4().hex[:6]}")

    with gunicorn(env, workers=args.workers, threads=args.threads, app="bench.ingest_floor") as port:
        cpu = {name: ServerCpu(port, DB) for name in ("single", "trivial", "new", "known", *FLOORS)}
        # Warm up: customers exist, connections open, code paths hot.
        warm = http_load(port, "POST", "/v1/usage_events", headers,
                         [dumps({"events": make_events(1000, "warm")})] * 4, clients=2)  # fmt: skip
        assert warm.statuses == {200: 4}, warm.statuses
        bulk = http_load(port, "POST", "/v1/usage_events", headers, bulk_bodies, clients=args.clients)
        assert bulk.statuses == {200: len(bulk_bodies)}, bulk.statuses
        dups = http_load(port, "POST", "/v1/usage_events", headers, dup_bodies, clients=args.clients)
        assert dups.statuses == {200: len(dup_bodies)}, dups.statuses
        singles, trivials, clients = [], [], args.clients
        floor_parts: dict[str, list[LoadResult]] = {name: [] for name in FLOORS}
        for r in range(args.rounds):
            bodies = single_bodies[r :: args.rounds]
            with cpu["single"].measure():
                singles.append(http_load(port, "POST", "/v1/usage_events", headers, bodies, clients=clients))
            with cpu["trivial"].measure():
                trivials.append(http_load(port, "GET", "/healthz", {}, [None] * len(bodies), clients=clients))
            for name in FLOORS:
                # Events of their own (the statement's floor stores them as the hub would).
                floor_bodies = [dumps(e) for e in make_events(len(bodies), f"floor-{name}-{r}-{run}")]
                with cpu[name].measure():
                    floor_parts[name].append(http_load(port, "POST", f"/v1/bench-floor/{name}", headers,
                                                       floor_bodies, clients=clients))  # fmt: skip
        single, trivial = LoadResult.merged(singles), LoadResult.merged(trivials)
        floors = {name: LoadResult.merged(parts) for name, parts in floor_parts.items()}
        assert single.statuses == {200: len(single_bodies)}, single.statuses
        for name, floor in floors.items():
            assert floor.statuses == {200: len(single_bodies)}, (name, floor.statuses)
        with cpu["new"].measure():
            new = http_load(port, "POST", "/v1/identify", headers, identify, clients=args.clients)
        assert new.statuses == {200: len(identify)}, new.statuses
        with cpu["known"].measure():
            known = http_load(port, "POST", "/v1/identify", headers, identify, clients=args.clients)
        assert known.statuses == {200: len(identify)}, known.statuses

    with psycopg.connect(database_url(DB)) as conn:
        app_pk = conn.execute("SELECT id FROM hub_app WHERE public_id = %s", (app["id"],)).fetchone()[0]
        customers = dict(
            conn.execute("SELECT platform_id, id FROM hub_customer WHERE app_id = %s", (app_pk,))
        )
        stored = conn.execute(
            "SELECT count(*) FROM events_usageevent WHERE event_id LIKE 'bulk-%%'"
        ).fetchone()[0]
        # Each floor did its work: the statement's stored every event, the one-row floor a row each.
        floor_stored = conn.execute(
            "SELECT count(*) FROM events_usageevent WHERE event_id LIKE 'floor-statement-%%'"
        ).fetchone()[0]
        floor_rows = conn.execute(f"SELECT count(*) FROM {SCRATCH_TABLE}").fetchone()[0]
    assert stored == len(bulk_events), (stored, len(bulk_events))
    assert floor_stored == floor_rows == len(single_bodies), (floor_stored, floor_rows, len(single_bodies))
    baseline = raw_baseline(bulk_events, app_pk, customers)

    bulk_rate = len(bulk_events) / bulk.seconds
    single_rate = single.rate
    print(f"bulk ingest: {bulk_rate:,.0f} events/s ({len(bulk_bodies)} requests of 1,000; {bulk.summary()})")
    print(f"  duplicates-only requests: {10 * len(dup_bodies) * 100 / dups.seconds:,.0f} events/s")
    print(f"  raw psycopg executemany baseline: {baseline:,.0f} rows/s")
    ratios = {
        "bulk/raw": bulk_rate / baseline,
        "single/trivial": single_rate / trivial.rate,
        "identify-new/single": new.rate / single_rate,
        "identify-known/single": known.rate / single_rate,
    }

    def ratio_line(name: str) -> str:
        return f"  RATIO {name} = {ratios[name]:.2f}  (target >= {TARGET}) {verdict(ratios[name] >= TARGET)}"

    print(ratio_line("bulk/raw"))
    print(f"single-event: {single_rate:,.0f} requests/s ({single.summary()}; "
          f"{cpu['single'].per_request(single.requests, single)})")  # fmt: skip
    print(f"  trivial JSON view: {trivial.rate:,.0f} requests/s ({trivial.summary()}; "
          f"{cpu['trivial'].per_request(trivial.requests, trivial)})")  # fmt: skip
    print(ratio_line("single/trivial"))
    round_ratios = [s.rate / t.rate for s, t in zip(singles, trivials, strict=True)]
    print(f"    by round (median {statistics.median(round_ratios):.2f}): "
          + ", ".join(f"{s.rate:,.0f}/{t.rate:,.0f} = {r:.2f}"
                      for s, t, r in zip(singles, trivials, round_ratios, strict=True)))  # fmt: skip
    print("  floors (the same bodies, server and middleware; no target):")
    for name, what in FLOORS.items():
        floor = floors[name]
        by_round = ", ".join(f"{f.rate / t.rate:.2f}"
                             for f, t in zip(floor_parts[name], trivials, strict=True))  # fmt: skip
        print(f"    {what}: {floor.rate:,.0f} requests/s ({floor.summary()}; "
              f"{cpu[name].per_request(floor.requests, floor)}), "
              f"{floor.rate / trivial.rate:.2f} of the trivial view; by round {by_round}")  # fmt: skip
    statement_floor = floors["statement"].rate
    print(f"    the hub's single events: {single_rate / statement_floor:.2f} of the statement's floor")
    print(f"identify, new customers: {new.rate:,.0f} requests/s ({new.summary()}; "
          f"{cpu['new'].per_request(new.requests, new)})")  # fmt: skip
    print(ratio_line("identify-new/single"))
    print(f"identify, the same customers again: {known.rate:,.0f} requests/s ({known.summary()}; "
          f"{cpu['known'].per_request(known.requests, known)})")  # fmt: skip
    print(ratio_line("identify-known/single"))
    return 0 if all(r >= TARGET for r in ratios.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
