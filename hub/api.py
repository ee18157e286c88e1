"""The core's REST API (app, identify, customer) and the error shape shared by every endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from .api_dispatch import DirectPostView
from .authentication import HasApiKey
from .errors import HubError, NotFound
from .models import Customer
from .races import CONFLICT_MESSAGE, is_unique_violation
from .request_body import json_body
from .services.customer_refs import customer_get
from .services.customers import customer_identify
from .timestamps import parse_timestamp

if TYPE_CHECKING:
    from .authentication import AppCaller

    class ApiRequest(Request):
        """A request of the API (whose authentication classes set an `AppCaller` as its user)."""

        user: AppCaller  # type: ignore[assignment]  # the stubs know only Django's user model
else:
    ApiRequest = Request


def _first_message(detail: object) -> str:
    if isinstance(detail, dict):
        if "detail" in detail:
            return _first_message(detail["detail"])
        key, value = next(iter(detail.items()))
        return f"{key}: {_first_message(value)}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Answer every API error as `{"error": "..."}` (what Mantle's clients look for)."""
    if isinstance(exc, HubError):
        return Response(exc.body(), status=exc.status_code)
    if is_unique_violation(exc):
        # A race no service retried (hub.races): the row exists now, so this is a conflict.
        return Response({"error": CONFLICT_MESSAGE}, status=status.HTTP_409_CONFLICT)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    body: dict[str, Any] = {"error": _first_message(data)}
    if isinstance(data, dict) and "detail" not in data:
        body["details"] = data
    response.data = body
    return response


ErrorSerializer = inline_serializer("Error", {"error": serializers.CharField()})

AppSerializer = inline_serializer(
    "App",
    {
        "id": serializers.UUIDField(),
        "name": serializers.CharField(),
        "workspace": serializers.CharField(),
        "createdAt": serializers.DateTimeField(),
    },
)


class AppView(APIView):
    """The authenticated app (Segment's Mantle destination calls it as its connection test)."""

    @extend_schema(
        operation_id="app_retrieve",
        responses={200: AppSerializer, 401: ErrorSerializer},
        tags=["App"],
    )
    def get(self, request: ApiRequest) -> Response:
        app = request.user.app
        return Response(
            {
                "id": str(app.public_id),
                "name": app.name,
                "workspace": app.workspace.name,
                "createdAt": app.created_at.isoformat(),
            },
            status=status.HTTP_200_OK,
        )


def customer_json(customer: Customer) -> dict[str, Any]:
    """A customer as the Mantle-compatible API shows it."""
    return {
        "id": str(customer.public_id),
        "platform": customer.platform,
        "platformId": customer.platform_id,
        "myshopifyDomain": customer.myshopify_domain,
        "name": customer.name,
        "email": customer.email,
        "platformPlanName": customer.platform_plan_name,
        "customFields": customer.custom_fields,
        "tags": customer.tags,
        "contacts": [
            {"email": c.email, "label": c.label, "name": c.name, "phone": c.phone}
            for c in customer.contacts.all()
        ],
        "identified": not customer.is_placeholder,
        "createdAt": (customer.platform_created_at or customer.created_at).isoformat(),
    }


_CustomerSerializer = inline_serializer(
    "Customer",
    {
        "id": serializers.UUIDField(),
        "platform": serializers.CharField(),
        "platformId": serializers.CharField(allow_null=True),
        "myshopifyDomain": serializers.CharField(allow_null=True),
        "name": serializers.CharField(),
        "email": serializers.CharField(),
        "platformPlanName": serializers.CharField(),
        "customFields": serializers.DictField(),
        "tags": serializers.ListField(child=serializers.CharField()),
        "contacts": serializers.ListField(child=serializers.DictField()),
        "identified": serializers.BooleanField(),
        "createdAt": serializers.DateTimeField(),
        "usage": serializers.DictField(
            required=False, help_text="Per usage metric id: current period, month to date, rolling windows."
        ),
    },
)

_IdentifyIn = inline_serializer(
    "IdentifyIn",
    {
        "platform": serializers.CharField(required=False, default="shopify"),
        "platformId": serializers.CharField(required=False),
        "myshopifyDomain": serializers.CharField(required=False),
        "name": serializers.CharField(required=False),
        "email": serializers.CharField(required=False),
        "platformPlanName": serializers.CharField(required=False),
        "customFields": serializers.DictField(required=False),
        "contacts": serializers.ListField(child=serializers.DictField(), required=False),
        "tags": serializers.ListField(child=serializers.CharField(), required=False),
        "createdAt": serializers.CharField(required=False),
        "rotateApiToken": serializers.BooleanField(required=False),
    },
)


@extend_schema_view(
    post=extend_schema(
        operation_id="identify",
        request=_IdentifyIn,
        responses={200: inline_serializer("IdentifyOut", {"apiToken": serializers.CharField()}),
                   400: ErrorSerializer, 401: ErrorSerializer, 403: ErrorSerializer, 409: ErrorSerializer},
        tags=["Customers"],
    )
)  # fmt: skip
class IdentifyView(DirectPostView):
    """Create or update a customer (matched by platform id or myshopify domain); return its token."""

    permission_classes = [HasApiKey]

    def answer(self, request: ApiRequest) -> dict[str, Any]:
        body = json_body(request, max_bytes=settings.HUB_IDENTIFY_MAX_REQUEST_BYTES)
        if not isinstance(body, dict):
            raise HubError("The body must be a JSON object.")
        created_at = None
        if body.get("createdAt") is not None:
            try:
                created_at = parse_timestamp(body["createdAt"], now=timezone.now())
            except ValueError as exc:
                raise HubError(f"createdAt {exc}.") from None
        rotate = body.get("rotateApiToken", False)
        if not isinstance(rotate, bool):
            raise HubError("rotateApiToken must be true or false.")
        result = customer_identify(
            app=request.user.app,
            platform=body.get("platform") or "shopify",
            platform_id=body.get("platformId"),
            myshopify_domain=body.get("myshopifyDomain"),
            name=body.get("name"),
            email=body.get("email"),
            platform_plan_name=body.get("platformPlanName"),
            custom_fields=body.get("customFields"),
            contacts=body.get("contacts"),
            tags=body.get("tags"),
            created_at=created_at,
            rotate_api_token=rotate,
        )
        return {"apiToken": result.api_token}


class CustomerView(APIView):
    """The customer of the customer API token, or `?id=` (any reference) with the API key."""

    @extend_schema(
        operation_id="customer_retrieve",
        parameters=[OpenApiParameter("id", str, required=False,
                                     description="Hub id, platform id or myshopify domain.")],
        responses={200: inline_serializer("CustomerOut", {"customer": _CustomerSerializer}),
                   400: ErrorSerializer, 401: ErrorSerializer, 404: ErrorSerializer},
        tags=["Customers"],
    )  # fmt: skip
    def get(self, request: ApiRequest) -> Response:
        caller = request.user
        reference = request.query_params.get("id")
        customer = caller.customer
        if reference and caller.api_key is not None:
            found = customer_get(app=caller.app, reference=reference)
            if found is None or (customer is not None and found != customer):
                raise NotFound("No such customer.")
            customer = found
        if customer is None:
            if caller.api_key is None:
                raise NotFound("No such customer.")
            raise HubError("Pass ?id= (the customer's id, platform id or myshopify domain).")
        return Response({"customer": self.customer_body(customer)})

    def customer_body(self, customer: Customer) -> dict[str, Any]:
        """The customer as answered; the events package adds its usage (see events/metrics_api.py)."""
        return customer_json(customer)
