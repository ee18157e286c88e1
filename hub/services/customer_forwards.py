"""Customers and contacts left for the destinations: their snapshots, and the forward rows
written in the caller's transaction (the integrations' forwarder sends them)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from ..models import App, Contact, Customer, CustomerForward
from ..task_coalescing import CoalescedTask


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
