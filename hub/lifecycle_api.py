"""The lifecycle REST API: Mantle-compatible `GET /v1/app_installations` and
`POST|PUT|DELETE /v1/subscriptions`, and the hub's own transitions those do not cover
(install, uninstall, freeze and unfreeze of installation and subscription, reviews).

A call acts for the customer of the customer API token, or, with the app's API key, for the
customer named by `customerId` (hub id, platform id or myshopify domain).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from .api import ErrorSerializer
from .errors import HubError, NotFound
from .models import Customer, Installation, Plan, Subscription
from .request_body import json_body
from .services import lifecycle, plans
from .services.customer_refs import customer_get

_MAX_BODY = 64 * 1024


def _body(request, *, required: bool = True) -> dict[str, Any]:
    if not required and request.META.get("CONTENT_LENGTH") in (None, "", "0"):
        return {}
    body = json_body(request, max_bytes=_MAX_BODY)
    if not isinstance(body, dict):
        raise HubError("The body must be a JSON object.")
    return body


def _customer(request, reference: Any) -> Customer:
    """The caller's customer: the token's, or `customerId` (API key only). Others' answer 404."""
    caller = request.user
    customer = caller.customer
    if reference is not None and reference != "":
        if not isinstance(reference, str):
            raise HubError("customerId must be a string.")
        if caller.api_key is None:
            if customer is None or customer_get(app=caller.app, reference=reference) != customer:
                raise NotFound("No such customer.")
            return customer
        found = customer_get(app=caller.app, reference=reference)
        if found is None or (customer is not None and found != customer):
            raise NotFound("No such customer.")
        return found
    if customer is None:
        raise HubError("customerId is required with an API key.")
    return customer


def _money(value) -> float | None:
    return None if value is None else float(value)


def plan_json(plan: Plan) -> dict:
    return {
        "id": str(plan.public_id),
        "name": plan.name,
        "amount": float(plan.amount),
        "subtotal": float(plan.amount),
        "total": float(plan.amount),
        "currencyCode": plan.currency,
        "interval": plan.interval,
    }


def subscription_json(subscription: Subscription, confirm_type: str | None = None) -> dict:
    body = {
        "id": str(subscription.public_id),
        "plan": plan_json(subscription.plan),
        "status": subscription.status,
        "active": subscription.status == Subscription.Status.ACTIVE,
        "activatedAt": subscription.activated_at.isoformat(),
        "frozenAt": subscription.frozen_at.isoformat() if subscription.frozen_at else None,
        "cancelledAt": subscription.cancelled_at.isoformat() if subscription.cancelled_at else None,
        "usageChargeCappedAmount": _money(subscription.capped_amount),
        "total": float(subscription.plan.amount),
        "subtotal": float(subscription.plan.amount),
        "createdAt": subscription.created_at.isoformat(),
    }
    if confirm_type:
        body["confirmType"] = confirm_type
    return body


def installation_json(installation: Installation) -> dict:
    customer, app = installation.customer, installation.app
    subscription = (
        customer.subscriptions.select_related("plan")
        .filter(status__in=[Subscription.Status.ACTIVE, Subscription.Status.FROZEN])
        .first()
    )
    return {
        "id": str(installation.public_id),
        "name": customer.name or customer.myshopify_domain or customer.platform_id or "",
        "myshopifyDomain": customer.myshopify_domain,
        "platform": customer.platform,
        "platformId": customer.platform_id or "",
        "installedAt": installation.installed_at.isoformat(),
        "uninstalledAt": installation.uninstalled_at.isoformat() if installation.uninstalled_at else None,
        "installStatus": "uninstalled"
        if installation.status == Installation.Status.UNINSTALLED
        else "installed",
        "status": installation.status,
        "app": {"id": str(app.public_id), "name": app.name},
        "subscription": {
            "id": str(subscription.public_id),
            "planId": str(subscription.plan.public_id),
            "planName": subscription.plan.name,
        }
        if subscription
        else None,
    }


_Plan = inline_serializer(
    "Plan",
    {
        "id": serializers.UUIDField(),
        "name": serializers.CharField(),
        "amount": serializers.FloatField(),
        "subtotal": serializers.FloatField(),
        "total": serializers.FloatField(),
        "currencyCode": serializers.CharField(),
        "interval": serializers.CharField(),
    },
)
_Subscription = inline_serializer(
    "Subscription",
    {
        "id": serializers.UUIDField(),
        "plan": _Plan,
        "status": serializers.ChoiceField(choices=Subscription.Status.values),
        "active": serializers.BooleanField(),
        "activatedAt": serializers.DateTimeField(),
        "frozenAt": serializers.DateTimeField(allow_null=True),
        "cancelledAt": serializers.DateTimeField(allow_null=True),
        "usageChargeCappedAmount": serializers.FloatField(allow_null=True),
        "total": serializers.FloatField(),
        "subtotal": serializers.FloatField(),
        "createdAt": serializers.DateTimeField(),
        "confirmType": serializers.CharField(required=False),
    },
)
_Installation = inline_serializer(
    "AppInstallation",
    {
        "id": serializers.UUIDField(),
        "name": serializers.CharField(),
        "myshopifyDomain": serializers.CharField(allow_null=True),
        "platform": serializers.CharField(allow_null=True),
        "platformId": serializers.CharField(),
        "installedAt": serializers.DateTimeField(allow_null=True),
        "uninstalledAt": serializers.DateTimeField(allow_null=True),
        "installStatus": serializers.ChoiceField(choices=["installed", "uninstalled"]),
        "status": serializers.ChoiceField(choices=Installation.Status.values),
        "app": serializers.DictField(allow_null=True),
        "subscription": serializers.DictField(allow_null=True),
    },
)
_Review = inline_serializer(
    "Review",
    {
        "id": serializers.IntegerField(),
        "rating": serializers.IntegerField(),
        "text": serializers.CharField(allow_blank=True),
        "createdAt": serializers.DateTimeField(),
    },
)
_CustomerRef = {"customerId": serializers.CharField(required=False, help_text="With an API key.")}
_ERRORS = {400: ErrorSerializer, 401: ErrorSerializer, 404: ErrorSerializer, 409: ErrorSerializer}


class AppInstallationsView(APIView):
    """The customer's installations of the app (Mantle's `getAppInstallations`)."""

    @extend_schema(
        operation_id="app_installations_list",
        parameters=[OpenApiParameter("customerId", str, required=False, description="With an API key.")],
        responses={
            200: inline_serializer(
                "AppInstallationsOut", {"appInstallations": serializers.ListField(child=_Installation)}
            ),
            400: ErrorSerializer,
            401: ErrorSerializer,
            404: ErrorSerializer,
        },
        tags=["Lifecycle"],
    )
    def get(self, request):
        customer = _customer(request, request.query_params.get("customerId"))
        installations = Installation.objects.select_related("customer", "app").filter(customer=customer)
        return Response({"appInstallations": [installation_json(i) for i in installations]})


class SubscriptionsView(APIView):
    """Subscribe or change plan (POST), update the capped amount (PUT), cancel (DELETE)."""

    @extend_schema(
        operation_id="subscriptions_create",
        request=inline_serializer(
            "SubscribeIn",
            {
                **_CustomerRef,
                "planId": serializers.CharField(required=False, help_text="A plan id or name."),
                "planIds": serializers.ListField(child=serializers.CharField(), required=False),
            },
        ),
        responses={200: _Subscription, **_ERRORS},
        tags=["Lifecycle"],
    )
    def post(self, request):
        body = _body(request)
        plan_ref = body.get("planId")
        if plan_ref is None and isinstance(body.get("planIds"), list) and body["planIds"]:
            if len(body["planIds"]) > 1:
                raise HubError("One plan per subscription: send a single planId.")
            plan_ref = body["planIds"][0]
        customer = _customer(request, body.get("customerId"))
        plan = plans.plan_get(app=request.user.app, reference=plan_ref)
        subscription, kind = lifecycle.subscription_subscribe(customer=customer, plan=plan)
        return Response(
            subscription_json(subscription, "subscribe" if kind == "subscribed" else "plan_change")
        )

    @extend_schema(
        operation_id="subscriptions_update",
        request=inline_serializer(
            "SubscriptionUpdateIn",
            {
                **_CustomerRef,
                "id": serializers.CharField(required=False),
                "cappedAmount": serializers.FloatField(),
            },
        ),
        responses={200: _Subscription, **_ERRORS},
        tags=["Lifecycle"],
    )
    def put(self, request):
        body = _body(request)
        customer = _customer(request, body.get("customerId"))
        if "cappedAmount" not in body:
            raise HubError("cappedAmount is required.")
        # One transaction: a wrong `id` rolls the update back (the open subscription is only
        # known, and locked, inside the service).
        with transaction.atomic():
            subscription = lifecycle.subscription_update(
                customer=customer, capped_amount=body["cappedAmount"]
            )
            if body.get("id") not in (None, "", str(subscription.public_id)):
                raise NotFound("No such subscription.")
        return Response(subscription_json(subscription))

    @extend_schema(
        operation_id="subscriptions_cancel",
        request=inline_serializer(
            "SubscriptionCancelIn", {**_CustomerRef, "cancelReason": serializers.CharField(required=False)}
        ),
        responses={200: _Subscription, **_ERRORS},
        tags=["Lifecycle"],
    )
    def delete(self, request):
        body = _body(request, required=False)
        customer = _customer(request, body.get("customerId"))
        reason = body.get("cancelReason") or ""
        return Response(subscription_json(lifecycle.subscription_cancel(customer=customer, reason=reason)))


def _transition_view(name: str, service, serialize, response, doc: str):
    class TransitionView(APIView):
        @extend_schema(
            operation_id=name,
            description=doc,
            request=inline_serializer(f"{name}_in", dict(_CustomerRef)),
            responses={200: response, **_ERRORS},
            tags=["Lifecycle"],
        )
        def post(self, request):
            body = _body(request, required=False)
            return Response(serialize(service(customer=_customer(request, body.get("customerId")))))

    TransitionView.__name__ = TransitionView.__qualname__ = (
        "".join(p.title() for p in name.split("_")) + "View"
    )
    TransitionView.__doc__ = doc
    return TransitionView


InstallView = _transition_view(
    "app_installations_install", lifecycle.installation_install, installation_json, _Installation,
    "Install the app for the customer (a reinstall after an uninstall).",
)  # fmt: skip
UninstallView = _transition_view(
    "app_installations_uninstall", lifecycle.installation_uninstall, installation_json, _Installation,
    "Uninstall the app (cancels the open subscription).",
)  # fmt: skip
InstallationFreezeView = _transition_view(
    "app_installations_freeze", lifecycle.installation_freeze, installation_json, _Installation,
    "Deactivate (freeze) the customer's installation.",
)  # fmt: skip
InstallationUnfreezeView = _transition_view(
    "app_installations_unfreeze", lifecycle.installation_reactivate, installation_json, _Installation,
    "Reactivate a frozen installation.",
)  # fmt: skip
SubscriptionFreezeView = _transition_view(
    "subscriptions_freeze", lifecycle.subscription_freeze, subscription_json, _Subscription,
    "Freeze the active subscription.",
)  # fmt: skip
SubscriptionUnfreezeView = _transition_view(
    "subscriptions_unfreeze", lifecycle.subscription_unfreeze, subscription_json, _Subscription,
    "Unfreeze a frozen subscription.",
)  # fmt: skip


class ReviewsView(APIView):
    """Record the customer's review of the app (rating 1 to 5, optional text)."""

    @extend_schema(
        operation_id="reviews_create",
        request=inline_serializer(
            "ReviewIn",
            {
                **_CustomerRef,
                "rating": serializers.IntegerField(),
                "text": serializers.CharField(required=False),
            },
        ),
        responses={200: _Review, **_ERRORS},
        tags=["Lifecycle"],
    )
    def post(self, request):
        body = _body(request)
        customer = _customer(request, body.get("customerId"))
        review = lifecycle.review_create(
            customer=customer, rating=body.get("rating"), text=body.get("text", "")
        )
        return Response(
            {
                "id": review.pk,
                "rating": review.rating,
                "text": review.text,
                "createdAt": review.created_at.isoformat(),
            }
        )
