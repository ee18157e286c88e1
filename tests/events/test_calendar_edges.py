"""Dates, times and ranges at the calendar's limits (years 1 and 9999) and beyond answer 400,
never a server error; the same limits inside the calendar answer 2xx."""

import json

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def client_(app, api_key):
    """The app's API client; a server error is an answer to assert on, not an exception."""
    return Client(
        raise_request_exception=False,
        headers={"X-Mantle-App-Id": str(app.public_id), "X-Mantle-App-Api-Key": api_key[1]},
    )


@pytest.fixture
def metric_id(client_):
    response = client_.post(
        "/v1/usage_metrics", json.dumps({"name": "Jobs", "eventName": "job"}), content_type="application/json"
    )
    return response.json()["id"]


@pytest.mark.parametrize("path", ["usage_metrics", "usage_events"])
@pytest.mark.parametrize("period", ["daily", "weekly", "monthly"])
@pytest.mark.parametrize(
    "query",
    [
        "startDate=9999-12-30&endDate=9999-12-31",  # the last period ends past 9999
        "endDate=9999-12-31",
        "startDate=9999-12-01&endDate=9999-12-31",
        "endDate=0001-01-05",  # the default span reaches back before year 1
        "startDate=10000-01-01",
        "startDate=0000-01-01",
        "endDate=99999-01-01",
        "startDate=9999-12-31",  # after the default end (today)
    ],
)
def test_report_ranges_past_the_calendar_answer_400(client_, metric_id, path, period, query):
    response = client_.get(f"/v1/{path}/{metric_id}/report?period={period}&{query}")
    assert response.status_code == 400, response.content
    assert "error" in response.json()


@pytest.mark.parametrize("period", ["daily", "weekly", "monthly"])
def test_report_ranges_at_the_calendar_start_answer_200(client_, metric_id, period):
    response = client_.get(
        f"/v1/usage_metrics/{metric_id}/report?period={period}&startDate=0001-01-01&endDate=0001-01-02"
    )
    assert response.status_code == 200, response.content
    assert response.json()["report"]["startDate"].startswith("0001-01-01")


@pytest.mark.parametrize(
    "timestamp",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-23:59", "-0001-01-01", 253402300800000, 1e300, -1],
)
def test_timestamps_beyond_the_calendar_answer_400(client_, app, api_key, timestamp):
    event = {"eventName": "job", "customerId": "shop", "timestamp": timestamp}
    response = client_.post("/v1/usage_events", json.dumps(event), content_type="application/json")
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "timestamp"
    response = client_.post(
        "/v1/identify",
        json.dumps({"platformId": "shop", "createdAt": timestamp}),
        content_type="application/json",
    )
    assert response.status_code == 400 and "createdAt" in response.json()["error"]


@pytest.mark.parametrize(
    "timestamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-23:59", "0000-01-01T00:00:00Z"]
)
def test_vendor_timestamps_beyond_the_calendar_answer_400(client_, app, api_key, timestamp):
    metronome = client_.post(
        "/metronome/v1/ingest",
        json.dumps([{"transaction_id": "t", "customer_id": "c", "event_type": "e", "timestamp": timestamp}]),
        content_type="application/json",
        headers={"Authorization": f"Bearer {api_key[1]}"},
    )
    kable = client_.post(
        "/kable/api/v1/events/create",
        json.dumps([{"transactionId": "t", "clientId": "c", "timestamp": timestamp, "data": {}}]),
        content_type="application/json",
        headers={"KABLE-CLIENT-ID": str(app.public_id), "KABLE-CLIENT-SECRET": api_key[1]},
    )
    assert (metronome.status_code, kable.status_code) == (400, 400)
    assert "message" in metronome.json() and "message" in kable.json()
