"""Usage metrics API: definitions (`/v1/usage_metrics`), reports, and the customer's `usage`.

`GET /v1/usage_events/{metricId}/report` is what `@heymantle/client`'s `getUsageMetricReport`
calls; `GET /v1/usage_metrics/{id}/report` is the same report under Mantle's documented path.
With a customer API token a report is always that customer's.
"""

from __future__ import annotations

from datetime import date

from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from hub.api import CustomerView, ErrorSerializer, customer_json
from hub.authentication import HasApiKey
from hub.errors import HubError, NotFound
from hub.request_body import json_body
from hub.services.customer_refs import customer_get

from .metrics.definitions import AGGREGATIONS, FILTER_OPS, definition_validate
from .metrics.periods import PERIODS
from .metrics.selectors import customer_usage, metric_report
from .metrics.services import metric_create, metric_delete, metric_get, metric_update
from .models import Metric


def metric_json(metric: Metric) -> dict:
    """A metric definition as the API shows it."""
    return {
        "id": str(metric.public_id),
        "name": metric.name,
        "eventName": metric.event_name,
        "aggregation": metric.aggregation,
        "property": metric.property or None,
        "groupBy": metric.group_by or None,
        "filters": metric.filters,
        "status": metric.status,
        "limits": [
            {
                "plan": u.plan.name,
                "planId": str(u.plan.public_id),
                "limit": float(u.limit),
                "thresholds": u.thresholds,
            }
            for u in metric.plan_limits.select_related("plan").order_by("plan__amount", "plan__name")
        ],
        "createdAt": metric.created_at.isoformat(),
    }


_Filter = inline_serializer(
    "MetricFilter",
    {
        "property": serializers.CharField(help_text="Dot notation, e.g. `usage.units`."),
        "op": serializers.ChoiceField(choices=list(FILTER_OPS)),
        "value": serializers.JSONField(required=False),
    },
)
_MetricIn = inline_serializer(
    "UsageMetricIn",
    {
        "name": serializers.CharField(),
        "eventName": serializers.CharField(),
        "aggregation": serializers.ChoiceField(choices=list(AGGREGATIONS), required=False, default="count"),
        "property": serializers.CharField(required=False, help_text="Required unless aggregation is count."),
        "groupBy": serializers.CharField(required=False),
        "filters": serializers.ListField(child=_Filter, required=False),
    },
)
_MetricOut = inline_serializer(
    "UsageMetric",
    {
        "id": serializers.UUIDField(),
        "name": serializers.CharField(),
        "eventName": serializers.CharField(),
        "aggregation": serializers.CharField(),
        "property": serializers.CharField(allow_null=True),
        "groupBy": serializers.CharField(allow_null=True),
        "filters": serializers.ListField(child=serializers.DictField()),
        "status": serializers.ChoiceField(choices=["building", "ready"]),
        "limits": serializers.ListField(child=serializers.DictField()),
        "createdAt": serializers.DateTimeField(),
    },
)
_ReportOut = inline_serializer(
    "UsageMetricReportOut",
    {
        "report": inline_serializer(
            "UsageMetricReport",
            {
                "metricId": serializers.UUIDField(),
                "name": serializers.CharField(),
                "aggregation": serializers.CharField(),
                "startDate": serializers.DateTimeField(),
                "endDate": serializers.DateTimeField(),
                "period": serializers.ChoiceField(choices=list(PERIODS)),
                "groupBy": serializers.CharField(required=False),
                "data": serializers.ListField(child=serializers.DictField()),
            },
        )
    },
)
_ERRORS = {400: ErrorSerializer, 401: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer}


def _definition(body) -> dict:
    if not isinstance(body, dict):
        raise HubError("The body must be a JSON object.")
    return {
        "name": body.get("name"),
        "event_name": body.get("eventName", body.get("event_name")),
        "aggregation": body.get("aggregation", "count"),
        "property": body.get("property") or "",
        "group_by": body.get("groupBy", body.get("group_by")) or "",
        "filters": body.get("filters"),
    }


class UsageMetricsView(APIView):
    """The app's metric definitions; create one (it is built from the stored events, then kept current)."""

    permission_classes = [HasApiKey]

    @extend_schema(
        operation_id="usage_metrics_list",
        tags=["Usage metrics"],
        responses={
            200: inline_serializer("UsageMetrics", {"usageMetrics": serializers.ListField(child=_MetricOut)}),
            **_ERRORS,
        },
    )
    def get(self, request):
        metrics = Metric.objects.filter(app=request.user.app).order_by("name")
        return Response({"usageMetrics": [metric_json(m) for m in metrics]})

    @extend_schema(
        operation_id="usage_metrics_create",
        tags=["Usage metrics"],
        request=_MetricIn,
        responses={201: _MetricOut, **_ERRORS, 409: ErrorSerializer},
    )
    def post(self, request):
        definition = definition_validate(**_definition(json_body(request, max_bytes=64 * 1024)))
        metric = metric_create(app=request.user.app, definition=definition)
        return Response(metric_json(metric), status=201)


_ID = OpenApiParameter("id", str, OpenApiParameter.PATH, description="The metric's id (or its name).")


class UsageMetricView(APIView):
    """One metric definition: read, change (a changed definition is rebuilt), delete."""

    permission_classes = [HasApiKey]

    @extend_schema(
        operation_id="usage_metric_retrieve",
        tags=["Usage metrics"],
        parameters=[_ID],
        responses={200: _MetricOut, **_ERRORS},
    )
    def get(self, request, id):
        return Response(metric_json(metric_get(app=request.user.app, reference=id)))

    @extend_schema(
        operation_id="usage_metric_update",
        tags=["Usage metrics"],
        parameters=[_ID],
        request=_MetricIn,
        responses={200: _MetricOut, **_ERRORS, 409: ErrorSerializer},
    )
    def put(self, request, id):
        body = json_body(request, max_bytes=64 * 1024)
        with transaction.atomic():
            metric = metric_get(app=request.user.app, reference=id)
            metric = metric_update(metric=metric, definition=definition_validate(**_definition(body)))
        return Response(metric_json(metric))

    @extend_schema(
        operation_id="usage_metric_destroy",
        tags=["Usage metrics"],
        parameters=[_ID],
        responses={204: None, **_ERRORS},
    )
    def delete(self, request, id):
        metric_delete(metric=metric_get(app=request.user.app, reference=id))
        return Response(status=204)


def _date_param(request, name: str) -> date | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        return date.fromisoformat(raw[:10])
    except ValueError:
        raise HubError(f"{name} must be a date (YYYY-MM-DD).") from None


class UsageMetricReportView(APIView):
    """The metric's value per day, week or month: app-wide, or for one customer."""

    @extend_schema(
        operation_id="usage_metric_report",
        tags=["Usage metrics"],
        parameters=[
            OpenApiParameter("id", str, OpenApiParameter.PATH, description="The metric's id (or its name)."),
            OpenApiParameter("period", str, enum=list(PERIODS), description="Default daily."),
            OpenApiParameter("customerId", str, description="Hub id, platform id or myshopify domain."),
            OpenApiParameter(
                "startDate", str, description="YYYY-MM-DD; default: 90 days, 12 weeks or 12 months back."
            ),
            OpenApiParameter("endDate", str, description="YYYY-MM-DD; default today."),
        ],
        responses={200: _ReportOut, **_ERRORS},
    )
    def get(self, request, id):
        caller = request.user
        metric = metric_get(app=caller.app, reference=id)
        period = request.query_params.get("period") or "daily"
        customer = caller.customer
        reference = request.query_params.get("customerId")
        if reference:
            found = customer_get(app=caller.app, reference=reference)
            if found is None or (customer is not None and found.pk != customer.pk):
                raise NotFound("No such customer.")
            customer = found
        report = metric_report(
            metric=metric,
            period=period,
            customer=customer,
            start=_date_param(request, "startDate"),
            end=_date_param(request, "endDate"),
        )
        return Response({"report": report.as_json()})


class CustomerWithUsageView(CustomerView):
    """`GET /v1/customer`, with the customer's `usage` of every metric (`@heymantle/client`'s shape)."""

    def customer_body(self, customer) -> dict:
        return {**customer_json(customer), "usage": customer_usage(customer=customer)}


class UsageEventsReportView(UsageMetricReportView):
    """The same report under the path `@heymantle/client`'s `getUsageMetricReport` calls."""

    @extend_schema(
        operation_id="usage_events_report",
        tags=["Usage metrics"],
        parameters=[
            OpenApiParameter("id", str, OpenApiParameter.PATH),
            OpenApiParameter("period", str, enum=list(PERIODS)),
            OpenApiParameter("customerId", str),
            OpenApiParameter("startDate", str),
            OpenApiParameter("endDate", str),
        ],
        responses={200: _ReportOut, **_ERRORS},
    )
    def get(self, request, id):
        return super().get(request, id)
