"""Settings → Integrations → Segment and the delivery log (server-side rendering, no browser)."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from hub.models import Activity
from integrations import delivery, delivery_fanout
from integrations.models import Delivery, Integration, Replay
from integrations.services import integration_save
from tests.integrations.conftest import make_customer

pytestmark = pytest.mark.django_db


def form_data(app, **extra):
    data = {
        "name": "Production",
        "write_key": "wk_live_123",
        "region": "us",
        "apps": [app.pk],
        "app_activities": ["installed", "uninstalled"],
        "subscription_activities": ["upgraded"],
        "enabled": "on",
    }
    data.update(extra)
    return data


def test_create_then_the_key_is_masked_and_kept_unless_replaced(logged_in, workspace, app):
    response = logged_in.post(f"/w/{workspace.slug}/integrations/segment/new/", form_data(app))
    integration = Integration.objects.get(workspace=workspace)
    assert response.status_code == 302 and response.url.endswith(f"/integrations/{integration.pk}/")
    assert integration.activities == ["installed", "uninstalled", "upgraded"]
    assert list(integration.apps.all()) == [app]
    page = logged_in.get(response.url).content.decode()
    assert "wk_live_123" not in page and "••••••••_123" in page
    from django.db import connection

    with connection.cursor() as cursor:  # encrypted at rest
        cursor.execute("SELECT write_key FROM integrations_integration WHERE id = %s", [integration.pk])
        assert "wk_live_123" not in cursor.fetchone()[0]
    logged_in.post(
        response.url, form_data(app, write_key="", region="eu", use_custom_field="on", user_id_field="crm")
    )
    integration.refresh_from_db()
    assert (
        integration.write_key == "wk_live_123"
        and integration.region == "eu"
        and integration.user_id_field == "crm"
    )
    logged_in.post(response.url, form_data(app, write_key="wk_new_4567"))
    integration.refresh_from_db()
    assert integration.write_key == "wk_new_4567"


def test_a_workspace_may_have_several_segment_integrations(logged_in, workspace, app):
    logged_in.post(f"/w/{workspace.slug}/integrations/segment/new/", form_data(app, name="Production"))
    logged_in.post(f"/w/{workspace.slug}/integrations/segment/new/", form_data(app, name="Staging"))
    page = logged_in.get(f"/w/{workspace.slug}/integrations/").content.decode()
    assert "Production" in page and "Staging" in page
    assert Integration.objects.filter(workspace=workspace).count() == 2


def test_form_errors(logged_in, workspace, app):
    url = f"/w/{workspace.slug}/integrations/segment/new/"
    assert "Enter the host URL" in logged_in.post(url, form_data(app, region="custom")).content.decode()
    assert logged_in.post(url, form_data(app, write_key="")).status_code == 200  # key required on create
    refused = logged_in.post(
        url, form_data(app, region="custom", custom_host="http://10.0.0.1/"), follow=True
    )
    assert "cannot be used" in refused.content.decode()  # the SSRF guard, at save time
    assert not Integration.objects.exists()


def test_send_test_event_shows_segments_answer_and_lands_in_the_log(logged_in, workspace, segment, standin):
    response = logged_in.post(f"/w/{workspace.slug}/integrations/{segment.pk}/test/", follow=True)
    page = response.content.decode()
    assert "Test event delivered." in page and "HTTP 200" in page and "&quot;success&quot;: true" in page
    assert standin.messages[0]["event"] == "Hub Test Event"
    log = logged_in.get(f"/w/{workspace.slug}/integrations/{segment.pk}/deliveries/").content.decode()
    assert "Hub Test Event" in log and 'data-stat="delivered">1<' in log


def test_a_wrong_write_key_fails_the_test_and_marks_the_integration(logged_in, workspace, segment, standin):
    standin.write_key = "another"
    page = logged_in.post(
        f"/w/{workspace.slug}/integrations/{segment.pk}/test/", follow=True
    ).content.decode()
    assert "Test event failed." in page and "HTTP 401" in page and "Needs attention" in page


def test_delivery_log_counts_filters_retry_and_replay(logged_in, workspace, app, segment, standin):
    for i in range(3):
        make_customer(app, f"s{i}")
    standin.fail_next(1, 400)
    delivery_fanout.activities_fanout()
    delivery.deliveries_send(integration_id=segment.pk)
    assert Delivery.objects.filter(status="failed").count() == 3
    url = f"/w/{workspace.slug}/integrations/{segment.pk}/deliveries/"
    page = logged_in.get(url).content.decode()
    assert 'data-stat="failed">3<' in page and "HTTP 400" in page and "scripted fault" in page
    assert logged_in.get(url, {"status": "delivered"}).content.decode().count("data-delivery-id=") == 0
    assert (
        logged_in.get(url, {"kind": "installed", "q": "s1"}).content.decode().count("data-delivery-id=") == 1
    )

    one = Delivery.objects.filter(activity__customer__platform_id="s0").get()
    logged_in.post(url + "retry/", {"delivery": str(one.pk)})
    delivery.deliveries_send(integration_id=segment.pk)
    one.refresh_from_db()
    assert one.status == "delivered" and one.attempts == 2

    now = timezone.now()
    logged_in.post(
        url + "replay/",
        {
            "since": (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
            "until": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
        },
    )
    replay = Replay.objects.get()
    assert replay.total == 2
    page = logged_in.get(url).content.decode()
    assert "0 of 2 done" in page and 'http-equiv="refresh"' in page  # progress, refreshing while pending
    delivery.deliveries_send(integration_id=segment.pk)
    page = logged_in.get(url).content.decode()
    assert "2 of 2 done (2 delivered)" in page and 'data-stat="delivered">3<' in page
    assert re.search(r'data-stat="p95">\d+ ms<', page)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"delivered"}
    assert Activity.objects.filter(app=app).count() == 3


def test_the_list_counts_activities_out_of_those_the_form_offers_and_highlights_one_nav_item(
    logged_in, workspace, app
):
    integration_save(
        workspace=workspace, name="All", write_key="wk_1", apps=[app], activities=list(Activity.Kind.values)
    )
    page = logged_in.get(f"/w/{workspace.slug}/integrations/").content.decode()
    assert f"{len(Activity.Kind.values)} of {len(Activity.Kind.values)}" in page
    nav = re.search(r'<nav class="nav">.*?</nav>', page, re.S).group(0)
    assert re.findall(r'class="active">([^<]+)<', nav) == ["Integrations"]
