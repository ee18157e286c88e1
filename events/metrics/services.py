"""Write paths of metric definitions: create, change, delete; and hub_apply's `metrics` section."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models import F

from hub.errors import Conflict, HubError, NotFound
from hub.locks import app_usage_lock
from hub.models import App, Plan
from hub.races import unique_race_safe

from ..models import Metric, PlanUsageLimit
from .definitions import Definition, MetricDefinitionError, definition_validate
from .limits import DEFAULT_THRESHOLDS, plan_usage_limit_remove, plan_usage_limit_set

logger = logging.getLogger(__name__)

REBUILD_TASK = "events.metrics_rebuild"


def _enqueue_rebuild(app_pk: int) -> None:
    from kombu.exceptions import OperationalError

    from hub.celery import app as celery_app

    try:
        celery_app.send_task(REBUILD_TASK, args=[app_pk], retry=False)
    except OperationalError as exc:
        logger.warning("broker unavailable, metric build left for the sweep: %s", exc)


def _name_free(app: App, name: str, exclude_pk: int | None = None) -> None:
    qs = Metric.objects.filter(app=app, name=name)
    if exclude_pk is not None:
        qs = qs.exclude(pk=exclude_pk)
    if qs.exists():
        raise Conflict(f"A metric named {name!r} exists already.")


@unique_race_safe
@transaction.atomic
def metric_create(*, app: App, definition: Definition) -> Metric:
    """Create a metric; it is built from the stored events by a worker, then kept up to date."""
    _name_free(app, definition.name)
    metric = Metric.objects.create(
        app=app,
        name=definition.name,
        event_name=definition.event_name,
        aggregation=definition.aggregation,
        property=definition.property,
        group_by=definition.group_by,
        filters=definition.filters_json(),
        status=Metric.Status.BUILDING,
    )
    transaction.on_commit(lambda: _enqueue_rebuild(app.pk))
    return metric


@unique_race_safe
@transaction.atomic
def metric_update(*, metric: Metric, definition: Definition) -> Metric:
    """Change a metric; a changed definition (not just the name) is rebuilt from the stored events."""
    metric = Metric.objects.select_for_update().get(pk=metric.pk)
    _name_free(metric.app, definition.name, exclude_pk=metric.pk)
    changed = (
        metric.event_name != definition.event_name
        or metric.aggregation != definition.aggregation
        or metric.property != definition.property
        or metric.group_by != definition.group_by
        or metric.filters != definition.filters_json()
    )
    metric.name = definition.name
    fields = ["name", "updated_at"]
    if changed:
        metric.event_name = definition.event_name
        metric.aggregation = definition.aggregation
        metric.property = definition.property
        metric.group_by = definition.group_by
        metric.filters = definition.filters_json()
        metric.status = Metric.Status.BUILDING
        metric.version = F("version") + 1
        fields += ["event_name", "aggregation", "property", "group_by", "filters", "status", "version"]
        app_pk = metric.app_id
        transaction.on_commit(lambda: _enqueue_rebuild(app_pk))
    metric.save(update_fields=fields)
    metric.refresh_from_db()
    return metric


def metric_delete(*, metric: Metric) -> None:
    """Delete a metric with its rollups and plan limits.

    Under the app's usage lock (exclusive): no drain is writing the metric's rows meanwhile (the
    rollup tables have no foreign-key constraint that would refuse a row of a deleted metric).
    """
    with transaction.atomic():
        app_usage_lock(metric.app_id)
        metric.delete()


def metric_rebuild_request(*, metric: Metric) -> None:
    """Recompute a metric from the stored events (e.g. after events were deleted by hand)."""
    Metric.objects.filter(pk=metric.pk).update(status=Metric.Status.BUILDING, version=F("version") + 1)
    transaction.on_commit(lambda: _enqueue_rebuild(metric.app_id))


def metric_get(*, app: App, reference: object) -> Metric:
    """The app's metric by id or name, or NotFound."""
    import uuid

    if not isinstance(reference, str) or not reference.strip():
        raise NotFound("No such metric.")
    qs = Metric.objects.filter(app=app)
    try:
        metric = qs.filter(public_id=uuid.UUID(reference.strip())).first()
    except ValueError:
        metric = qs.filter(name=reference.strip()).first()
    if metric is None:
        raise NotFound("No such metric.")
    return metric


# --- hub_apply ----------------------------------------------------------------------------------

_METRIC_KEYS = {"name", "event_name", "aggregation", "property", "group_by", "filters", "limits"}


def metrics_apply(*, app: App, value: Any, path: str) -> list[dict]:
    """hub_apply's `metrics` section of an app (matched by name), with plan limits per metric.

    `value` is the section as the JSON document has it (checked here).

    What an entry omits keeps its value (`property`, `group_by`, `filters`: null clears); a limit
    names its plan, omitted `limit` or `thresholds` keep theirs, `"limit": null` removes it.
    """
    # The document checks of `hub.config_apply` (a ConfigError naming the path).
    from hub.config_apply import ConfigError, _check_keys, _require, declared_value

    _require(isinstance(value, list), path, "must be a list of metrics")
    out = []
    for i, spec in enumerate(value):
        where = f"{path}[{i}]"
        _require(isinstance(spec, dict), where, "each metric must be an object")
        _check_keys(spec, _METRIC_KEYS, "metric", where)
        name = spec.get("name")
        metric = Metric.objects.filter(app=app, name=name.strip()).first() if isinstance(name, str) else None
        created = metric is None
        try:
            definition = definition_validate(
                name=name,
                event_name=declared_value(spec, "event_name", obj=metric, default=None, path=where),
                aggregation=declared_value(spec, "aggregation", obj=metric, default="count", path=where),
                property=declared_value(spec, "property", obj=metric, default="", cleared="", path=where),
                group_by=declared_value(spec, "group_by", obj=metric, default="", cleared="", path=where),
                filters=declared_value(spec, "filters", obj=metric, default=None, cleared=None, path=where),
            )
        except MetricDefinitionError as exc:
            raise ConfigError(f"{where}.{exc}") from None
        metric = (
            metric_update(metric=metric, definition=definition)
            if metric is not None
            else metric_create(app=app, definition=definition)
        )
        limits_out = []
        limits = spec.get("limits", [])
        _require(isinstance(limits, list), f"{where}.limits", "must be a list")
        for j, item in enumerate(limits):
            lpath = f"{where}.limits[{j}]"
            _require(
                isinstance(item, dict) and not set(item) - {"plan", "limit", "thresholds"},
                lpath,
                'must be {"plan", "limit", "thresholds"}',
            )
            plan = Plan.objects.filter(app=app, name=item.get("plan")).first()
            if plan is None:
                raise ConfigError(f"{lpath}.plan: no plan named {item.get('plan')!r} in this app")
            if "limit" in item and item["limit"] is None:  # `"limit": null` removes the plan's limit
                plan_usage_limit_remove(plan=plan, metric=metric)
                continue
            current = PlanUsageLimit.objects.filter(plan=plan, metric=metric).first()
            try:
                usage_limit = plan_usage_limit_set(
                    plan=plan, metric=metric,
                    limit=declared_value(item, "limit", obj=current, default=None, path=lpath),
                    thresholds=declared_value(
                        item, "thresholds", obj=current, default=list(DEFAULT_THRESHOLDS), path=lpath
                    ),
                )  # fmt: skip
            except HubError as exc:
                raise ConfigError(f"{lpath}: {exc}") from None
            limits_out.append(
                {"plan": plan.name, "limit": float(usage_limit.limit), "thresholds": usage_limit.thresholds}
            )
        out.append(
            {"name": metric.name, "id": str(metric.public_id), "created": created, "status": metric.status,
             "limits": limits_out}
        )  # fmt: skip
    return out


__all__ = ["PlanUsageLimit", "metric_create", "metric_delete", "metric_get", "metric_update", "metrics_apply"]
