"""API authentication, Mantle-compatible: app id + API key headers, or a Bearer key."""

import pytest
from django.test import Client

from hub.services import accounts
from tests.factories import AppFactory

pytestmark = pytest.mark.django_db


def test_get_app_with_mantle_headers(api_client, app):
    response = api_client.get("/v1/app")
    assert response.status_code == 200
    assert response.json()["id"] == str(app.public_id)
    assert response.json()["name"] == app.name


def test_headers_are_case_insensitive(app, api_key):
    # Segment's Mantle destination sends the headers in lower case; WSGI folds them anyway, so
    # send them raw through a real HTTP request line as well as through the test client.
    client = Client(headers={"x-mantle-app-id": str(app.public_id), "x-mantle-app-api-key": api_key[1]})
    assert client.get("/v1/app").status_code == 200


def test_bearer_key_alone_authenticates(app, api_key):
    client = Client(headers={"Authorization": f"Bearer {api_key[1]}"})
    response = client.get("/v1/app")
    assert response.status_code == 200
    assert response.json()["id"] == str(app.public_id)


def test_bearer_key_with_matching_app_id(app, api_key):
    client = Client(headers={"Authorization": f"bearer {api_key[1]}", "X-Mantle-App-Id": str(app.public_id)})
    assert client.get("/v1/app").status_code == 200


def _bad_cases(app, secret, other_app, revoked_secret):
    return {
        "no headers": {},
        "app id without key": {"X-Mantle-App-Id": str(app.public_id)},
        "key without app id is fine only as bearer; wrong key": {
            "X-Mantle-App-Id": str(app.public_id),
            "X-Mantle-App-Api-Key": secret + "x",
        },
        "unknown key": {"X-Mantle-App-Id": str(app.public_id), "X-Mantle-App-Api-Key": "hub_live_abc_def"},
        "revoked key": {"X-Mantle-App-Id": str(app.public_id), "X-Mantle-App-Api-Key": revoked_secret},
        "key of app A with app B's id": {
            "X-Mantle-App-Id": str(other_app.public_id),
            "X-Mantle-App-Api-Key": secret,
        },
        "malformed app id": {"X-Mantle-App-Id": "1' OR 1=1 --", "X-Mantle-App-Api-Key": secret},
        "empty bearer": {"Authorization": "Bearer "},
        "garbage bearer": {"Authorization": "Bearer \u00e9\u00e9\u00e9"},
        "basic auth only": {"Authorization": "Basic Zm9vOmJhcg=="},
        "bearer of app A with app B's id": {
            "Authorization": f"Bearer {secret}",
            "X-Mantle-App-Id": str(other_app.public_id),
        },
    }


def test_bad_credentials_are_401_with_json_error(app, api_key):
    other_app = AppFactory()
    revoked, revoked_secret = accounts.api_key_create(app=app, name="old")
    accounts.api_key_revoke(api_key=revoked)
    for label, headers in _bad_cases(app, api_key[1], other_app, revoked_secret).items():
        response = Client(headers=headers).get("/v1/app")
        assert response.status_code == 401, label
        body = response.json()
        assert isinstance(body.get("error"), str) and body["error"], label


def test_each_app_sees_only_itself(app, api_key):
    other_app = AppFactory()
    _, other_secret = accounts.api_key_create(app=other_app, name="k")
    mine = Client(headers={"Authorization": f"Bearer {api_key[1]}"}).get("/v1/app").json()
    theirs = Client(headers={"Authorization": f"Bearer {other_secret}"}).get("/v1/app").json()
    assert mine["id"] == str(app.public_id)
    assert theirs["id"] == str(other_app.public_id)


def test_unknown_api_path_is_json_404_not_500(api_client):
    assert api_client.get("/v1/nope").status_code == 404
