"""Usage metrics: definitions, time buckets, rollups with their SQL, reads, and plans' usage limits.

`definitions` validates a metric and evaluates one event; `periods` is the one copy of the UTC
time-bucket arithmetic; `rollups` keeps the rollup rows up to date (`rollup_delta` accumulates what
events add, `rollup_store` writes it, per database, with `rollup_sql` and `metric_sql`);
`selectors` reads values and reports from the rollups; `limits` records the billing signals;
`services` holds the write paths of definitions. Dependencies point down that list's reverse:
models import nothing of these modules.
"""
