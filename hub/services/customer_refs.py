"""Resolving an app's customer references: what usage events and API calls send as a customer.

A reference may be the hub's id (a UUID), the customer's API token, its platform id or its
myshopify domain. Known references are kept per process (stable ones only, never tokens).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import uuid
from collections.abc import Iterable
from typing import Any

from django.db import connection
from django.db.models import Q
from django.db.models.expressions import RawSQL

from ..errors import AuthenticationError, HubError
from ..models import App, Customer
from ..ttl_cache import TTLCache

TOKEN_PREFIX = "hub_ct_"
SHOPIFY_SUFFIX = ".myshopify.com"


def customer_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def customer_by_token(*, app: App, token: str) -> Customer:
    """The app's customer holding this API token, or AuthenticationError."""
    token = (token or "").strip()
    if not token:
        raise AuthenticationError("Missing customer API token.")
    customer = Customer.objects.filter(app=app, api_token_hash=customer_token_hash(token)).first()
    if customer is None:
        raise AuthenticationError("Invalid customer API token.")
    return customer


def _placeholder_fields(reference: str) -> dict:
    if reference.lower().endswith(SHOPIFY_SUFFIX):
        return {"myshopify_domain": reference.lower()}
    return {"platform_id": reference}


# Per-process map of (app pk, reference) to customer pk: hot ingest paths skip the lookup. Only
# stable references are kept (hub ids, platform ids, domains; never tokens, which can be rotated),
# with no expiry: a pk that went stale (a placeholder merged away) makes the insert fail on its
# foreign key, and the caller clears the cache and retries.
_reference_cache: TTLCache[int] = TTLCache(ttl=math.inf, maxsize=50_000)


def customer_ids_resolve(*, app: App, references: Iterable[str], use_cache: bool = True) -> dict[str, int]:
    """Like customers_resolve, but only primary keys, served from a per-process cache when possible."""
    refs = {r for r in references if r}
    result: dict[str, int] = {}
    if use_cache:
        for r in refs:
            pk = _reference_cache.get((app.pk, r))
            if pk is not None:
                result[r] = pk
    missing = refs - result.keys()
    if missing:
        for r, customer in customers_resolve(app=app, references=missing).items():
            result[r] = customer.pk
            if not r.startswith(TOKEN_PREFIX):
                _reference_cache.set((app.pk, r), customer.pk)
    return result


def reference_cache_clear() -> None:
    """Forget this process's cached customer references (a cached pk went stale)."""
    _reference_cache.clear()


def customers_resolve(*, app: App, references: Iterable[str], create: bool = True) -> dict[str, Customer]:
    """Map each reference to the app's customer, creating placeholders for unknown ones.

    Two queries whatever the number of references (three when placeholders are created).
    A reference that looks like a customer token but matches none raises HubError.
    """
    refs = {r for r in references if r}
    if not refs:
        return {}
    found = _match_references(app, refs)
    missing = refs - found.keys()
    bad_tokens = sorted(r for r in missing if r.startswith(TOKEN_PREFIX))
    if bad_tokens:
        raise HubError("Unknown customer API token in customerId.")
    if missing and create:
        Customer.objects.bulk_create(
            # Sorted, so concurrent requests lock the same new keys in the same order.
            [Customer(app=app, is_placeholder=True, **_placeholder_fields(r)) for r in sorted(missing)],
            ignore_conflicts=True,
        )
        found.update(_match_references(app, missing))
    return found


# One branch per unique index and kind of reference sent, each led by what it looks up; the app is
# compared as `app_id + 0`, which no index of the app can serve (an OR under `app_id = %s` let the
# planner read every customer of the app through the app's index whenever the statistics made the
# app look small: see hub.services.customers._matching_sql). A branch for an empty array would not
# be free: the planner may scan a whole index for it.
def _referenced_ids(app: App, by_column: dict[str, list[Any]]) -> RawSQL:
    branches = [(column, values) for column, values in by_column.items() if values]
    sql = " UNION ALL ".join(
        f"SELECT id FROM {Customer._meta.db_table} WHERE {column} = ANY(%s) AND app_id + 0 = %s"  # noqa: S608
        for column, _ in branches
    )
    return RawSQL(sql, [p for _, values in branches for p in (values, app.pk)])  # noqa: S611


def _match_references(app: App, refs: set[str]) -> dict[str, Customer]:
    uuids = set()
    for r in refs:
        with contextlib.suppress(ValueError):
            uuids.add(uuid.UUID(r))
    hashes = {customer_token_hash(r): r for r in refs if r.startswith(TOKEN_PREFIX)}
    lowered = {r.lower() for r in refs}
    by_column: dict[str, list[Any]] = {
        "public_id": list(uuids),
        "api_token_hash": list(hashes),
        "platform_id": list(refs),
        "myshopify_domain": list(lowered),
    }
    if connection.vendor == "postgresql":
        rows = Customer.objects.filter(pk__in=_referenced_ids(app, by_column))
    else:  # SQLite (`make run`): no arrays, and a planner of its own
        matching = Q()
        for column, values in by_column.items():
            matching |= Q(**{f"{column}__in": values})
        rows = Customer.objects.filter(matching, app=app)
    by_key: dict[str, Customer] = {}
    for c in rows:
        for key in (str(c.public_id), c.platform_id, c.myshopify_domain):
            if key:
                by_key.setdefault(key, c)
        if c.api_token_hash in hashes:
            by_key[hashes[c.api_token_hash]] = c
    result: dict[str, Customer] = {}
    for r in refs:
        match = by_key.get(r) or by_key.get(r.lower())
        if match is None:
            with contextlib.suppress(ValueError):
                match = by_key.get(str(uuid.UUID(r)))
        if match is not None:
            result[r] = match
    return result


def customer_get(*, app: App, reference: str) -> Customer | None:
    """The app's customer for a reference (id, token, platform id or domain), or None."""
    return customers_resolve(app=app, references=[reference], create=False).get(reference)
