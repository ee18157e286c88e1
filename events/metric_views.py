"""Screens of usage metrics: Usage metrics → Metrics (list, form, chart and table, plan limits)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from hub.errors import Conflict, HubError, NotFound
from hub.models import App
from hub.selectors import app_get_for_user
from hub.services.customer_refs import customer_get

from . import selectors
from .metrics.definitions import AGGREGATIONS, FILTER_OPS, MetricDefinitionError, definition_validate
from .metrics.limits import DEFAULT_THRESHOLDS, plan_usage_limit_remove, plan_usage_limit_set
from .metrics.periods import PERIODS, day_start, month_start
from .metrics.selectors import as_number, metric_report, metrics_values
from .metrics.services import metric_create, metric_delete, metric_get, metric_update
from .models import Metric

_NO_VALUE_OPS = ("exists", "not_exists")
_LIST_OPS = ("in", "not_in")
# MetricDefinitionError.field → the form field it is shown at.
_FIELDS = {"name": "name", "eventName": "event_name", "aggregation": "aggregation", "property": "property",
           "groupBy": "group_by", "filters": "filters"}  # fmt: skip
_PERIOD_LABELS = {"daily": "Day", "weekly": "Week of", "monthly": "Month"}


def number_display(value: Any) -> str:
    """A metric value as the screens show it: thousands separated, at most four decimals, — for none."""
    value = as_number(value)
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    text = f"{value:,.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _metric_for(request: HttpRequest, app_id: str, metric_id: str) -> tuple[App, Metric]:
    app = app_get_for_user(user=request.user, public_id=app_id)
    try:
        return app, metric_get(app=app, reference=metric_id)
    except NotFound:
        raise Http404("No such metric.") from None


def _context(app: App, **extra: Any) -> dict:
    return {"workspace": app.workspace, "app": app, "active_tab": "metrics", **extra}


# --- List ---------------------------------------------------------------------------------------


@login_required
def metrics(request: HttpRequest, app_id: str) -> HttpResponse:
    app = app_get_for_user(user=request.user, public_id=app_id)
    items = selectors.metrics_for_app(app=app)
    now = timezone.now()
    values = metrics_values(metrics=items, customer=None, start=month_start(now),
                            end=day_start(now) + timedelta(days=1))  # fmt: skip
    rows = [(m, number_display(values[m.pk])) for m in items]
    building = any(m.status == Metric.Status.BUILDING for m in items)
    return render(request, "events/metrics.html", _context(app, rows=rows, building=building))


# --- Form ---------------------------------------------------------------------------------------


@dataclass
class FilterRow:
    property: str = ""
    op: str = "eq"
    value: str = ""
    error: str = ""


@dataclass
class MetricForm:
    name: str = ""
    event_name: str = ""
    aggregation: str = "count"
    property: str = ""
    group_by: str = ""
    rows: list[FilterRow] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, metric: Metric) -> MetricForm:
        rows = [
            FilterRow(f["property"], f["op"], _value_text(f["op"], f.get("value"))) for f in metric.filters
        ]
        return cls(metric.name, metric.event_name, metric.aggregation, metric.property, metric.group_by, rows)

    @classmethod
    def from_post(cls, post) -> MetricForm:
        rows = [
            FilterRow(p.strip(), o, v.strip())
            for p, o, v in zip(
                post.getlist("filter_property"),
                post.getlist("filter_op"),
                post.getlist("filter_value"),
                strict=False,
            )
            if p.strip() or v.strip()
        ]
        return cls(
            name=post.get("name", "").strip(),
            event_name=post.get("event_name", "").strip(),
            aggregation=post.get("aggregation", ""),
            property=post.get("property", "").strip(),
            group_by=post.get("group_by", "").strip(),
            rows=rows,
        )

    def filters(self) -> list[dict]:
        out = []
        for row in self.rows:
            item: dict[str, Any] = {"property": row.property, "op": row.op}
            if row.op not in _NO_VALUE_OPS:
                item["value"] = _value_parse(row.op, row.value)
            out.append(item)
        return out

    def error_at(self, exc: MetricDefinitionError) -> None:
        """Put the error next to the field it names (a filter's error on its row)."""
        message = str(exc).removeprefix(f"{exc.field}: ") if exc.field else str(exc)
        if exc.field.startswith("filters["):
            index = int(exc.field[len("filters[") : exc.field.index("]")])
            self.rows[index].error = message
            self.errors["filters"] = "A filter needs fixing."
        else:
            self.errors[_FIELDS.get(exc.field, "form")] = message


def _scalar(text: str) -> Any:
    """JSON when the text parses as JSON (`5`, `true`, `"5"`), else the text itself."""
    try:
        return json.loads(text, parse_float=Decimal)
    except ValueError:
        return text


def _value_parse(op: str, text: str) -> Any:
    if op in _LIST_OPS:
        parsed = _scalar(text)
        if isinstance(parsed, list):
            return parsed
        return [_scalar(part.strip()) for part in text.split(",") if part.strip()]
    return _scalar(text) if text else ""


def _value_text(op: str, value: Any) -> str:
    """How a stored filter value reads in the form, so that saving it again changes nothing."""
    if op in _NO_VALUE_OPS:
        return ""
    if op in _LIST_OPS and isinstance(value, list):
        plain = all(isinstance(v, str) and "," not in v and _scalar(v.strip()) == v for v in value)
        return ", ".join(value) if plain else json.dumps(value)
    if isinstance(value, str) and _scalar(value) == value:
        return value
    return json.dumps(value)


@login_required
def metric_edit(request: HttpRequest, app_id: str, metric_id: str | None = None) -> HttpResponse:
    if metric_id is None:
        app, metric = app_get_for_user(user=request.user, public_id=app_id), None
    else:
        app, metric = _metric_for(request, app_id, metric_id)
    form = MetricForm.of(metric) if metric is not None else MetricForm()
    if request.method == "POST":
        form = MetricForm.from_post(request.POST)
        try:
            definition = definition_validate(
                name=form.name, event_name=form.event_name, aggregation=form.aggregation,
                property=form.property, group_by=form.group_by, filters=form.filters(),
            )  # fmt: skip
            if metric is None:
                saved = metric_create(app=app, definition=definition)
            else:
                saved = metric_update(metric=metric, definition=definition)
        except MetricDefinitionError:
            for error in _definition_errors(form):
                form.error_at(error)
        except Conflict as exc:
            form.errors["name"] = str(exc)
        else:
            messages.success(request, f"Metric “{saved.name}” saved.")
            return redirect("metric_detail", app_id=app.public_id, metric_id=saved.public_id)
    if not form.rows:
        form.rows.append(FilterRow())
    return render(
        request,
        "events/metric_form.html",
        _context(
            app,
            metric=metric,
            form=form,
            aggregations=[(a, Metric.Aggregation(a).label) for a in AGGREGATIONS],
            filter_ops=FILTER_OPS.items(),
            event_names=selectors.recent_event_names(app=app),
        ),
        status=400 if form.errors else 200,
    )


@require_POST
@login_required
def metric_delete_view(request: HttpRequest, app_id: str, metric_id: str) -> HttpResponse:
    app, metric = _metric_for(request, app_id, metric_id)
    metric_delete(metric=metric)
    messages.success(request, f"Metric “{metric.name}” deleted.")
    return redirect("metrics", app_id=app.public_id)


# Valid stand-ins for a field already found wrong, so that validating again finds the next error.
_STAND_INS = {
    "name": ("name", "x"),
    "eventName": ("event_name", "x"),
    "aggregation": ("aggregation", "count"),
    "property": ("property", "x"),
    "groupBy": ("group_by", ""),
}


def _definition_errors(form: MetricForm) -> list[MetricDefinitionError]:
    """Every error of the form's definition at once (the validator stops at the first)."""
    values: dict[str, Any] = {
        "name": form.name,
        "event_name": form.event_name,
        "aggregation": form.aggregation,
        "property": form.property,
        "group_by": form.group_by,
        "filters": form.filters(),
    }
    errors: list[MetricDefinitionError] = []
    for _ in range(len(_STAND_INS) + len(form.rows) + 1):
        try:
            definition_validate(**values)
            break
        except MetricDefinitionError as exc:
            errors.append(exc)
            if exc.field in _STAND_INS:
                key, stand_in = _STAND_INS[exc.field]
                values[key] = stand_in
            elif exc.field.startswith("filters["):
                index = int(exc.field[len("filters[") : exc.field.index("]")])
                values["filters"] = [*values["filters"]]
                values["filters"][index] = {"property": "x", "op": "exists"}
            else:
                break
    return errors


# --- The metric's screen: chart, table, plan limits ---------------------------------------------


def bucket_label(period: str, bucket: datetime) -> str:
    if period == "monthly":
        return bucket.strftime("%b %Y")
    return f"{bucket:%b} {bucket.day}"


def report_chart(report) -> dict:
    """What the chart draws, and the table shows, of a report (values as JSON numbers)."""
    return {
        "labels": [bucket_label(report.period, b) for b, _ in report.points],
        "total": [as_number(v) for _, v in report.points],
        "groups": [
            {"label": label, "values": [as_number(v) for v in values]} for label, values in report.groups
        ],
        "stacked": report.metric.aggregation in ("count", "sum"),
    }


def report_table(report) -> list[dict]:
    """The report's rows, newest first: the table is read from today backwards."""
    rows = [
        {
            "bucket": b,
            "total": number_display(v),
            "groups": [number_display(values[i]) for _, values in report.groups],
        }
        for i, (b, v) in enumerate(report.points)
    ]
    rows.reverse()
    return rows


def _detail(request: HttpRequest, app: App, metric: Metric, limit_errors: dict | None = None,
            limit_form: dict | None = None) -> HttpResponse:  # fmt: skip
    period = request.GET.get("period", "daily")
    period = period if period in PERIODS else "daily"
    customer_ref = request.GET.get("customer", "").strip()
    customer = customer_get(app=app, reference=customer_ref) if customer_ref else None
    error = f"No customer matches “{customer_ref}”." if customer_ref and customer is None else ""
    report = metric_report(metric=metric, period=period, customer=customer)
    limits = []
    for plan, usage_limit in selectors.plan_limits_for_metric(metric=metric):
        key = str(plan.public_id)
        posted = (limit_form or {}).get(key)
        if posted is not None:
            limit_text, thresholds_text = posted
        elif usage_limit is not None:
            limit_text = number_display(usage_limit.limit).replace(",", "")
            thresholds_text = ", ".join(str(t) for t in usage_limit.thresholds)
        else:
            limit_text, thresholds_text = "", ", ".join(str(t) for t in DEFAULT_THRESHOLDS)
        limits.append({"plan": plan, "key": key, "limit": limit_text, "thresholds": thresholds_text,
                       "saved": usage_limit, "error": (limit_errors or {}).get(key, "")})  # fmt: skip
    return render(
        request,
        "events/metric_detail.html",
        _context(
            app,
            metric=metric,
            period=period,
            periods=[(p, p.title()) for p in PERIODS],
            period_label=_PERIOD_LABELS[period],
            customer=customer,
            customer_ref=customer_ref,
            error=error,
            report=report,
            chart=report_chart(report),
            table=report_table(report),
            group_labels=[label for label, _ in report.groups],
            filters=[
                (f["property"], FILTER_OPS[f["op"]], _value_text(f["op"], f.get("value")))
                for f in metric.filters
            ],
            limits=limits,
        ),
        status=400 if limit_errors else 200,
    )


@login_required
def metric_detail(request: HttpRequest, app_id: str, metric_id: str) -> HttpResponse:
    app, metric = _metric_for(request, app_id, metric_id)
    return _detail(request, app, metric)


def thresholds_parse(text: str) -> list[int]:
    try:
        return [int(part) for part in text.replace("%", "").split(",") if part.strip()]
    except ValueError:
        raise HubError("thresholds are whole percentages separated by commas (e.g. 80, 100).") from None


@require_POST
@login_required
def metric_limits(request: HttpRequest, app_id: str, metric_id: str) -> HttpResponse:
    """Save every plan's limit of the metric at once; nothing is saved when one of them is invalid."""
    app, metric = _metric_for(request, app_id, metric_id)
    posted, errors = {}, {}
    with transaction.atomic():
        for plan, _ in selectors.plan_limits_for_metric(metric=metric):
            key = str(plan.public_id)
            limit = request.POST.get(f"limit_{key}", "").strip().replace(",", "")
            thresholds = request.POST.get(f"thresholds_{key}", "").strip()
            posted[key] = (limit, thresholds)
            try:
                if limit:
                    plan_usage_limit_set(plan=plan, metric=metric, limit=limit,
                                         thresholds=thresholds_parse(thresholds))  # fmt: skip
                else:
                    plan_usage_limit_remove(plan=plan, metric=metric)
            except HubError as exc:
                errors[key] = str(exc)
        if errors:
            transaction.set_rollback(True)
    if errors:
        return _detail(request, app, metric, limit_errors=errors, limit_form=posted)
    messages.success(request, "Plan limits saved.")
    return redirect("metric_detail", app_id=app.public_id, metric_id=metric.public_id)
