"""/v1/usage_metrics: definitions through the API, errors naming the field, reports, hub_apply."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

from events.metrics.rollups import metrics_rebuild, rollups_drain
from events.models import Metric, PlanUsageLimit

pytestmark = pytest.mark.django_db


def send(client, method, url, body=None):
    return getattr(client, method)(
        url, json.dumps(body) if body is not None else None, content_type="application/json"
    )


def test_create_read_update_delete(api_client, app):
    response = send(api_client, "post", "/v1/usage_metrics",
                    {"name": "Units", "eventName": "job", "aggregation": "sum", "property": "units",
                     "filters": [{"property": "plan", "op": "eq", "value": "pro"}]})  # fmt: skip
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["name"], body["aggregation"], body["status"]) == ("Units", "sum", "building")
    metric_id = body["id"]
    assert api_client.get(f"/v1/usage_metrics/{metric_id}").json()["filters"] == [
        {"property": "plan", "op": "eq", "value": "pro"}
    ]
    assert [m["id"] for m in api_client.get("/v1/usage_metrics").json()["usageMetrics"]] == [metric_id]

    changed = send(api_client, "put", f"/v1/usage_metrics/{metric_id}",
                   {"name": "Units", "eventName": "job", "aggregation": "max", "property": "units"})  # fmt: skip
    assert changed.status_code == 200 and changed.json()["aggregation"] == "max"
    assert Metric.objects.get(public_id=metric_id).version == 2

    assert api_client.delete(f"/v1/usage_metrics/{metric_id}").status_code == 204
    assert not Metric.objects.filter(app=app).exists()
    assert api_client.get(f"/v1/usage_metrics/{metric_id}").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"eventName": "job"}, "name"),
        ({"name": "x"}, "eventName"),
        ({"name": "x", "eventName": "job", "aggregation": "median"}, "aggregation"),
        ({"name": "x", "eventName": "job", "aggregation": "sum"}, "property"),
        ({"name": "x", "eventName": "job", "filters": [{"property": "a", "op": "gt", "value": "1"}]},
         "filters[0].value"),
        ({"name": "x", "eventName": "job", "filters": "plan=pro"}, "filters"),
    ],
)  # fmt: skip
def test_invalid_definitions_answer_400_naming_the_field_and_store_nothing(api_client, app, body, field):
    response = send(api_client, "post", "/v1/usage_metrics", body)
    assert response.status_code == 400
    assert response.json()["error"].startswith(field)
    assert not Metric.objects.exists()


def test_a_duplicate_name_is_409(api_client):
    body = {"name": "Calls", "eventName": "api_call"}
    assert send(api_client, "post", "/v1/usage_metrics", body).status_code == 201
    assert send(api_client, "post", "/v1/usage_metrics", body).status_code == 409


def test_report_periods_and_errors(api_client, app):
    metric_id = send(
        api_client, "post", "/v1/usage_metrics", {"name": "Calls", "eventName": "api_call"}
    ).json()["id"]
    send(
        api_client, "post", "/v1/usage_events", {"events": [{"eventName": "api_call", "customerId": "s"}] * 1}
    )
    metrics_rebuild(app_pk=app.pk)
    rollups_drain(app_pks=[app.pk])
    for url in (f"/v1/usage_metrics/{metric_id}/report", f"/v1/usage_events/{metric_id}/report"):
        for period, n in (("daily", 90), ("weekly", 12), ("monthly", 12)):
            report = api_client.get(url, {"period": period}).json()["report"]
            assert (report["period"], len(report["data"]), sum(p["value"] for p in report["data"])) == (
                period,
                n,
                1,
            )
    ranged = api_client.get(f"/v1/usage_metrics/{metric_id}/report",
                            {"period": "daily", "startDate": "2026-01-01", "endDate": "2026-01-10"})  # fmt: skip
    assert len(ranged.json()["report"]["data"]) == 10
    assert api_client.get(f"/v1/usage_metrics/{metric_id}/report", {"period": "hourly"}).status_code == 400
    assert api_client.get(f"/v1/usage_metrics/{metric_id}/report", {"startDate": "soon"}).status_code == 400
    too_long = {"period": "daily", "startDate": "2000-01-01", "endDate": "2026-01-01"}
    assert api_client.get(f"/v1/usage_metrics/{metric_id}/report", too_long).status_code == 400
    assert (
        api_client.get(f"/v1/usage_metrics/{metric_id}/report", {"customerId": "nobody"}).status_code == 404
    )


def test_hub_apply_declares_metrics_and_plan_limits_idempotently(tmp_path):
    document = {
        "workspace": "Acme",
        "apps": [
            {
                "name": "Upsell",
                "plans": [{"name": "Basic", "price": 10}, {"name": "Pro", "price": 50}],
                "metrics": [
                    {"name": "API calls", "event_name": "api_call",
                     "limits": [{"plan": "Basic", "limit": 1000, "thresholds": [80, 100]}]},
                    {"name": "Seats", "event_name": "seats", "aggregation": "latest", "property": "count",
                     "filters": [{"property": "env", "op": "neq", "value": "test"}]},
                ],
            }
        ],
    }  # fmt: skip

    def apply():
        out = StringIO()
        path = tmp_path / "hub.json"
        path.write_text(json.dumps(document))
        call_command("hub_apply", str(path), stdout=out)
        return json.loads(out.getvalue())

    first = apply()["apps"][0]["metrics"]
    assert [(m["name"], m["created"]) for m in first] == [("API calls", True), ("Seats", True)]
    assert first[0]["limits"] == [{"plan": "Basic", "limit": 1000.0, "thresholds": [80, 100]}]
    second = apply()["apps"][0]["metrics"]
    assert [(m["name"], m["created"], m["id"]) for m in second] == [
        (m["name"], False, m["id"]) for m in first
    ]
    assert Metric.objects.count() == 2 and PlanUsageLimit.objects.count() == 1
    assert Metric.objects.get(name="Seats").version == 1  # unchanged: not rebuilt


def test_hub_apply_refuses_a_bad_metric_naming_the_path(tmp_path):
    document = {"workspace": "Acme", "apps": [{"name": "Upsell", "metrics": [{"name": "x", "event_name": "e",
                                                                               "aggregation": "sum"}]}]}  # fmt: skip
    path = tmp_path / "hub.json"
    path.write_text(json.dumps(document))
    with pytest.raises(Exception, match=r"\$\.apps\[0\]\.metrics\[0\]\.property"):
        call_command("hub_apply", str(path), stdout=StringIO())
    assert not Metric.objects.exists()
