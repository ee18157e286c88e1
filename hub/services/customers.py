"""Customers of an app: identify (create or update, with their API tokens) and contacts.

Resolving the references usage events send is `customer_refs`; what the destinations get of a
customer or contact is `customer_forwards`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.db import IntegrityError, connection, transaction
from django.db.models import ForeignObjectRel, Q
from django.utils import timezone

from ..errors import Conflict, HubError
from ..locks import app_usage_lock
from ..models import Activity, App, Contact, Customer, CustomerForward, Installation
from ..raw_cursor import JoinedRows, RowsInsert, raw_cursor
from .customer_forwards import contact_forward, customer_forward, customer_snapshot, customers_forward_soon
from .customer_merge import customer_merge_run
from .customer_refs import TOKEN_PREFIX, customer_token_hash, reference_cache_clear


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


# The app's customers an identify with this platform id or domain is about (at most two; a NULL id
# or domain matches nothing), one branch per partial unique index, each led by the platform id or
# the domain, so that no plan reads more than their entries, whatever the statistics say. The app
# is compared as `app_id + 0`, which no index of the app can serve: with `app_id = %s` (or an OR of
# the two conditions, or an `id IN` of the two, which the planner joined to a scan of the table)
# the planner read every customer of the app whenever the statistics made the table look small (a
# new hub importing its shops: 1-3 ms a lookup at 3,000 customers, growing with them, against 0.05).
def _matching_sql(select: str, join: str = "") -> str:
    return " UNION ALL ".join(
        f"SELECT {select} FROM {Customer._meta.db_table} c {join} WHERE {condition} AND c.app_id + 0 = %s"  # noqa: S608
        for condition in ("c.platform_id = %s AND c.platform = %s", "c.myshopify_domain = %s")
    )


def _matching_params(app: App, platform: str, platform_id: str | None, domain: str | None) -> list[Any]:
    return [platform_id, platform, app.pk, domain, app.pk]


def _find_customer(app: App, platform: str, platform_id: str | None, domain: str | None) -> Customer | None:
    """The customer matching the platform id or the domain, merging a placeholder into it.

    Usage events may have created one placeholder under the platform id and another under the
    domain before the first identify tells they are the same customer: the placeholder is merged
    into the other row. Two identified customers claiming the same domain is a conflict.
    """
    with raw_cursor() as cursor:
        cursor.execute(_matching_sql("c.id"), _matching_params(app, platform, platform_id, domain))
        ids = sorted({row[0] for row in cursor.fetchall()})
    if not ids:
        return None
    # Locked by primary key (FOR UPDATE admits no UNION), the conditions checked again on the locked
    # rows. A row that came to match meanwhile is missed: the write then violates a unique
    # constraint, and the caller's IntegrityError retry finds it. NO KEY UPDATE: rollup workers
    # inserting rows that reference a customer (FOR KEY SHARE) go on.
    still = Q(myshopify_domain=domain) if domain else Q(pk__in=[])
    if platform_id:
        still |= Q(platform=platform, platform_id=platform_id)
    locked = Customer.objects.select_for_update(no_key=True).filter(still, pk__in=ids)
    candidates = list(locked.order_by("pk"))
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
    reference_cache_clear()
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
    """The matching customers (at most two, oldest first) with their app (as stored now: its
    settings decide what identify records) and installation, read without a lock in one statement.
    The installation is a LATERAL subquery kept from being pulled up (OFFSET 0): looked up by
    customer for each row found, never joined to a scan of its table."""
    table = Installation._meta.db_table
    installation = (
        f"LEFT JOIN LATERAL (SELECT * FROM {table} WHERE customer_id = c.id OFFSET 0) i ON true"  # noqa: S608
        if connection.vendor == "postgresql"
        else f"LEFT JOIN {table} i ON i.customer_id = c.id"  # SQLite: no LATERAL
    )
    joins = f"JOIN {App._meta.db_table} a ON a.id = c.app_id {installation}"
    with raw_cursor() as cursor:
        cursor.execute(
            _matching_sql(_IDENTIFY_ROWS.columns("c", "a", "i"), joins) + " ORDER BY 1",
            _matching_params(app, platform, platform_id, domain),
        )
        rows = cursor.fetchall()
    found: dict[int, Customer] = {}
    for row in rows:
        customer: Customer
        customer, customer.app, installation = _IDENTIFY_ROWS.instances(row)
        if customer.pk in found:  # matched by its platform id and its domain alike
            continue
        if installation.pk is not None:
            customer.installation = installation
        found[customer.pk] = customer
    return list(found.values())


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
