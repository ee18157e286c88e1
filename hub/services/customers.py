"""Customers of an app: identify (create or update), API tokens, and resolving references.

A customer reference, as usage events send it in `customerId`, may be the hub's id (a UUID), the
customer's API token, its platform id or its myshopify domain.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.db import IntegrityError, transaction
from django.db.models import ForeignObjectRel, Q
from django.utils import timezone

from ..errors import AuthenticationError, Conflict, HubError
from ..locks import app_usage_lock
from ..models import Activity, App, Contact, Customer, CustomerForward, Installation
from ..raw_cursor import JoinedRows, RowsInsert, raw_cursor
from ..task_coalescing import CoalescedTask
from ..ttl_cache import TTLCache
from .customer_merge import customer_merge_run

TOKEN_PREFIX = "hub_ct_"
_SHOPIFY_SUFFIX = ".myshopify.com"


def customer_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _set_new_token(customer: Customer) -> str:
    token = _new_token()
    customer.api_token = token
    customer.api_token_hash = customer_token_hash(token)
    return token


@dataclass(frozen=True)
class IdentifyResult:
    customer: Customer
    api_token: str
    created: bool  # a new customer row (not a filled-in placeholder)
    first_identify: bool  # never identified before (new, or a placeholder filled in)


def _clean_str(value: Any, field: str, max_length: int = 255) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str | int):
        raise HubError(f"{field} must be a string.")
    value = str(value).strip()
    if len(value) > max_length:
        raise HubError(f"{field} has at most {max_length} characters.")
    return value or None


def _matching(app: App, platform: str, platform_id: str | None, domain: str | None) -> Q:
    """The app's customers an identify with this platform id or domain is about (at most two)."""
    query = Q()
    if platform_id:
        query |= Q(platform=platform, platform_id=platform_id)
    if domain:
        # Stored domains are lower case (identify, placeholders and the admin lower them), as is
        # `domain`: an exact match uses the unique index, where iexact reads every customer of the app.
        query |= Q(myshopify_domain=domain)
    return Q(app=app) & query


def _find_customer(app: App, platform: str, platform_id: str | None, domain: str | None) -> Customer | None:
    """The customer matching the platform id or the domain, merging a placeholder into it.

    Usage events may have created one placeholder under the platform id and another under the
    domain before the first identify tells they are the same customer: the placeholder is merged
    into the other row. Two identified customers claiming the same domain is a conflict.
    """
    # NO KEY UPDATE: rollup workers inserting rows that reference a customer (FOR KEY SHARE) go on.
    candidates = list(
        Customer.objects.select_for_update(no_key=True)
        .filter(_matching(app, platform, platform_id, domain))
        .order_by("pk")[:2]
    )
    if len(candidates) < 2:
        return candidates[0] if candidates else None
    by_id = next((c for c in candidates if platform_id and c.platform_id == platform_id), candidates[0])
    other = candidates[1] if by_id is candidates[0] else candidates[0]
    if other.is_placeholder:
        return _customer_merge(keep=by_id, remove=other)
    if by_id.is_placeholder:
        return _customer_merge(keep=other, remove=by_id)
    raise Conflict(f"myshopifyDomain {domain} belongs to another customer.")


def _customer_merge(*, keep: Customer, remove: Customer) -> Customer:
    """Move everything of placeholder `remove` to `keep` and delete it (generic over relations).

    The models of a registered handler (`hub.services.customer_merge`) are moved by that handler (the
    metrics' rollups add up buckets both customers have). The app's usage lock keeps rollup
    workers from counting the moved events under the old customer meanwhile.
    """
    app_usage_lock(keep.app_id)
    for contact in remove.contacts.all():
        if keep.contacts.filter(email=contact.email).exists():
            contact.delete()
    merged = customer_merge_run(keep=keep, remove=remove)
    # Hidden relations too (`related_name="+"`, as the metrics' rollups have): all rows move.
    relations = [
        f
        for f in Customer._meta.get_fields(include_hidden=True)
        if isinstance(f, ForeignObjectRel) and f.auto_created and not f.concrete
    ]
    for rel in relations:
        if rel.related_model in merged:
            continue
        if rel.one_to_many or rel.one_to_one:
            rel.related_model._base_manager.filter(**{rel.field.name: remove}).update(
                **{rel.field.name: keep}
            )
    remove.delete()
    _reference_cache.clear()
    return keep


def customer_identify(
    *,
    app: App,
    platform: str | None = "shopify",
    platform_id: object = None,
    myshopify_domain: object = None,
    name: object = None,
    email: object = None,
    platform_plan_name: object = None,
    custom_fields: object = None,
    contacts: object = None,
    tags: object = None,
    created_at: datetime | None = None,
    rotate_api_token: bool = False,
) -> IdentifyResult:
    """Create or update the customer matched by platform id or myshopify domain; return its token.

    The fields are taken as received (any JSON value) and checked here (HubError). Custom fields
    are merged, contacts upserted by email, tags added. Concurrent identifies of the same new
    customer end in one row.
    """
    platform = _clean_str(platform, "platform", 50) or "shopify"
    platform_id = _clean_str(platform_id, "platformId")
    domain = _clean_str(myshopify_domain, "myshopifyDomain")
    if domain:
        domain = domain.lower()
    if not platform_id and not domain:
        raise HubError("platformId or myshopifyDomain is required.")
    if custom_fields is not None and not isinstance(custom_fields, dict):
        raise HubError("customFields must be an object.")
    if contacts is not None and not isinstance(contacts, list):
        raise HubError("contacts must be a list.")
    if tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
        raise HubError("tags must be a list of strings.")
    texts = {
        attr: _clean_str(value, field)
        for attr, value, field in (
            ("name", name, "name"),
            ("email", email, "email"),
            ("platform_plan_name", platform_plan_name, "platformPlanName"),
        )
    }
    if not contacts:
        done = _identify_unlocked(
            app, platform, platform_id, domain, texts, custom_fields, tags, created_at, rotate_api_token
        )
        if done is not None:
            return done
    for attempt in range(3):
        try:
            with transaction.atomic():
                return _identify_once(
                    app, platform, platform_id, domain, texts, custom_fields, contacts, tags, created_at,
                    rotate_api_token,
                )  # fmt: skip
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


# A new customer, its installation, the `installed` activity and, when the app forwards customers,
# the customer's snapshot for the destinations: one statement (hub.raw_cursor.RowsInsert).
_NEW_CUSTOMER = RowsInsert(
    Customer,
    [
        (Installation, "customer_id", ""),
        (Activity, "customer_id", ""),
        (CustomerForward, "object_id",
         f"EXISTS (SELECT 1 FROM {App._meta.db_table} WHERE id = %s AND forward_customers)"),  # noqa: S608
    ],
)  # fmt: skip


def _identify_unlocked(
    app: App, platform: str, platform_id: str | None, domain: str | None, texts: dict[str, str | None],
    custom_fields: dict[str, Any] | None, tags: list[str] | None, created_at: datetime | None, rotate: bool,
) -> IdentifyResult | None:  # fmt: skip
    """The two common identifies, without a transaction of their own: of a customer the app has no
    row for (written in one statement), and of one whose row already says all the request says
    (nothing to write). None for every other case, which takes the locked path."""
    found = _identify_lookup(app, platform, platform_id, domain)
    if not found:
        # Where the database cannot write them in one statement (SQLite), the locked path does.
        if not _NEW_CUSTOMER.available():
            return None
        return _identify_new(app, platform, platform_id, domain, texts, custom_fields, tags, created_at)
    customer = found[0]
    if (
        len(found) > 1
        or rotate
        or not _says_nothing_new(customer, platform_id, domain, texts, custom_fields, tags, created_at)
    ):
        return None
    return IdentifyResult(
        customer=customer, api_token=customer.api_token, created=False, first_identify=False
    )


_IDENTIFY_ROWS = JoinedRows(Customer, App, Installation)


def _identify_lookup(app: App, platform: str, platform_id: str | None, domain: str | None) -> list[Customer]:
    """`_matching`'s customers (at most two, oldest first) with their app and installation, read
    without a lock in one prepared statement (a NULL platform id or domain matches nothing)."""
    sql = (
        f"SELECT {_IDENTIFY_ROWS.columns('c', 'a', 'i')} FROM {Customer._meta.db_table} c "  # noqa: S608
        f"JOIN {App._meta.db_table} a ON a.id = c.app_id "
        f"LEFT JOIN {Installation._meta.db_table} i ON i.customer_id = c.id "
        "WHERE c.app_id = %s AND ((c.platform = %s AND c.platform_id = %s) OR c.myshopify_domain = %s) "
        "ORDER BY c.id LIMIT 2"
    )
    with raw_cursor() as cursor:
        cursor.execute(sql, [app.pk, platform, platform_id, domain])
        rows = cursor.fetchall()
    found = []
    for row in rows:
        customer: Customer
        customer, customer.app, installation = _IDENTIFY_ROWS.instances(row)
        if installation.pk is not None:
            customer.installation = installation
        found.append(customer)
    return found


def _same_json(a: object, b: object) -> bool:
    """Equal as JSON documents (where Python has 1 == 1.0 == True)."""
    try:
        return orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return False


def _says_nothing_new(
    customer: Customer, platform_id: str | None, domain: str | None, texts: dict[str, str | None],
    custom_fields: dict[str, Any] | None, tags: list[str] | None, created_at: datetime | None,
) -> bool:  # fmt: skip
    """Whether `_identify_once` would leave this customer as it is: identified, installed, holding
    a token and every value sent, in an app that does not forward customers (whose destinations get
    a snapshot on every identify)."""
    try:
        status = customer.installation.status
    except Installation.DoesNotExist:
        return False
    if (
        status == Installation.Status.UNINSTALLED
        or customer.is_placeholder
        or customer.identified_at is None
        or not customer.api_token_hash
        or customer.app.forward_customers
        or (platform_id and customer.platform_id != platform_id)
        or (domain and customer.myshopify_domain != domain)
        or (created_at is not None and customer.platform_created_at != created_at)
        or any(value is not None and getattr(customer, attr) != value for attr, value in texts.items())
    ):
        return False
    fields = customer.custom_fields or {}
    if custom_fields and not _same_json({**fields, **custom_fields}, fields):
        return False
    return not (
        tags and not _same_json(list(dict.fromkeys([*(customer.tags or []), *tags])), customer.tags or [])
    )


def _identify_new(
    app: App, platform: str, platform_id: str | None, domain: str | None, texts: dict[str, str | None],
    custom_fields: dict[str, Any] | None, tags: list[str] | None, created_at: datetime | None,
) -> IdentifyResult | None:  # fmt: skip
    """Identify of a customer the app has no row for (no platform id nor domain match): the rows
    `_identify_once` would write, in one statement; None when a customer matched (nothing written)."""
    from .lifecycle import activity_announce, installation_first_rows

    now = timezone.now()
    customer = Customer(
        app=app, platform=platform, platform_id=platform_id, myshopify_domain=domain,
        **{attr: value for attr, value in texts.items() if value is not None},
        custom_fields=dict(custom_fields or {}), tags=list(dict.fromkeys(tags or [])),
        platform_created_at=created_at, is_placeholder=False, identified_at=now, created_at=now,
    )  # fmt: skip
    token = _set_new_token(customer)
    installation, activity = installation_first_rows(customer=customer, at=now)
    forward = CustomerForward(
        app_id=app.pk, kind=CustomerForward.Kind.CUSTOMER, snapshot=customer_snapshot(customer)
    )
    written = _NEW_CUSTOMER.insert(customer, [(installation, ()), (activity, ()), (forward, (app.pk,))])
    if written is None:
        return None
    activity_announce(activity)
    if written[2]:
        transaction.on_commit(customers_forward_soon)
    return IdentifyResult(customer=customer, api_token=token, created=True, first_identify=True)


def _identify_once(
    app: App, platform: str, platform_id: str | None, domain: str | None, texts: dict[str, str | None],
    custom_fields: dict[str, Any] | None, contacts: list[Any] | None, tags: list[str] | None,
    created_at: datetime | None, rotate: bool,
) -> IdentifyResult:  # fmt: skip
    customer = _find_customer(app, platform, platform_id, domain)
    created = customer is None
    if customer is None:
        customer = Customer(app=app, platform=platform)
    first_identify = created or customer.identified_at is None
    if created:
        customer.platform = platform
    elif (
        platform_id
        and customer.platform_id != platform_id
        # Matched by domain: the platform id joins the customer's own platform, never another's.
        and Customer.objects.filter(app=app, platform=customer.platform, platform_id=platform_id).exists()
    ):
        raise Conflict(f"platformId {platform_id} belongs to another customer.")
    if platform_id:
        customer.platform_id = platform_id
    if domain:
        customer.myshopify_domain = domain
    for attr, value in texts.items():
        if value is not None:
            setattr(customer, attr, value)
    if custom_fields:
        customer.custom_fields = {**(customer.custom_fields or {}), **custom_fields}
    if tags:
        customer.tags = list(dict.fromkeys([*(customer.tags or []), *tags]))
    if created_at is not None:
        customer.platform_created_at = created_at
    customer.is_placeholder = False
    if customer.identified_at is None:
        customer.identified_at = timezone.now()
    token = _set_new_token(customer) if rotate or not customer.api_token_hash else customer.api_token
    customer.save()
    for contact in contacts or []:
        contact_upsert(customer=customer, **_contact_fields(contact))
    customer_forward(customer=customer)
    # Lifecycle (issue 5, hub/services/lifecycle.py): a first identify installs, one after an
    # uninstall reinstalls.
    from .lifecycle import installation_on_identify

    installation_on_identify(customer=customer)
    return IdentifyResult(customer=customer, api_token=token, created=created, first_identify=first_identify)


def _contact_fields(contact: Any) -> dict:
    if not isinstance(contact, dict):
        raise HubError("each contact must be an object.")
    email = _clean_str(contact.get("email"), "contacts.email")
    if not email:
        raise HubError("each contact needs an email.")
    return {
        "email": email,
        "label": _clean_str(contact.get("label"), "contacts.label", 100),
        "name": _clean_str(contact.get("name"), "contacts.name"),
        "phone": _clean_str(contact.get("phone"), "contacts.phone", 64),
    }


def contact_upsert(
    *, customer: Customer, email: str, label: str | None = None, name: str | None = None,
    phone: str | None = None,
) -> Contact:  # fmt: skip
    """Create or update the customer's contact with this email (case-insensitive)."""
    email = email.strip().lower()
    contact = Contact.objects.filter(customer=customer, email=email).first() or Contact(
        customer=customer, email=email
    )
    for attr, value in (("label", label), ("name", name), ("phone", phone)):
        if value is not None:
            setattr(contact, attr, value)
    contact.save()
    contact_forward(contact=contact, customer=customer)
    return contact


def customer_snapshot(customer: Customer) -> dict[str, Any]:
    """The customer as the destinations get it (a `CustomerForward`'s snapshot; a backfill's)."""
    return {
        "id": str(customer.public_id),
        "platform": customer.platform,
        "platform_id": customer.platform_id,
        "myshopify_domain": customer.myshopify_domain,
        "name": customer.name,
        "email": customer.email,
        "platform_plan_name": customer.platform_plan_name,
        "custom_fields": customer.custom_fields or {},
        "tags": customer.tags or [],
        "created_at": customer.platform_created_at.isoformat() if customer.platform_created_at else None,
    }


def contact_snapshot(contact: Contact, customer: Customer) -> dict[str, Any]:
    """A contact with its customer, as the destinations get it."""
    return {
        "email": contact.email, "name": contact.name, "phone": contact.phone, "label": contact.label,
        "customer": customer_snapshot(customer),
    }  # fmt: skip


def _forwards_customers(app_id: int) -> bool:
    return App.objects.filter(pk=app_id, forward_customers=True).exists()


def customer_forward(*, customer: Customer) -> None:
    """Leave the customer as it is now for the destinations subscribed to customers (in the
    caller's transaction), and ask for the forwarder after commit."""
    if not _forwards_customers(customer.app_id):
        return
    CustomerForward.objects.create(
        app_id=customer.app_id, kind=CustomerForward.Kind.CUSTOMER, object_id=customer.pk,
        snapshot=customer_snapshot(customer),
    )  # fmt: skip
    transaction.on_commit(customers_forward_soon)


def contact_forward(*, contact: Contact, customer: Customer) -> None:
    """The same for a contact (with its customer as it is now)."""
    if not _forwards_customers(customer.app_id):
        return
    CustomerForward.objects.create(
        app_id=customer.app_id, kind=CustomerForward.Kind.CONTACT, object_id=contact.pk,
        snapshot=contact_snapshot(contact, customer),
    )  # fmt: skip
    transaction.on_commit(customers_forward_soon)


# The integrations' forwarder, by name (the core does not import integrations).
customers_forward_soon = CoalescedTask("integrations.customers_forward", seconds=0.02)


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
    if reference.lower().endswith(_SHOPIFY_SUFFIX):
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


def _match_references(app: App, refs: set[str]) -> dict[str, Customer]:
    uuids = set()
    for r in refs:
        with contextlib.suppress(ValueError):
            uuids.add(uuid.UUID(r))
    hashes = {customer_token_hash(r): r for r in refs if r.startswith(TOKEN_PREFIX)}
    lowered = {r.lower() for r in refs}
    rows = Customer.objects.filter(app=app).filter(
        Q(public_id__in=uuids)
        | Q(api_token_hash__in=hashes.keys())
        | Q(platform_id__in=refs)
        | Q(myshopify_domain__in=lowered)
    )
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
