import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_healthz():
    assert Client().get("/healthz").json() == {"status": "ok"}


def test_readyz_checks_database_and_broker():
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_readyz_is_503_when_the_broker_is_down(monkeypatch):
    from hub.celery import app

    monkeypatch.setattr(app.conf, "broker_url", "redis://127.0.0.1:1/0")
    monkeypatch.setattr(app.conf, "broker_write_url", "redis://127.0.0.1:1/0")
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"].startswith("error")


def test_openapi_schema_and_offline_docs():
    schema = Client().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    assert "/v1/app" in schema.json()["paths"]
    docs = Client().get("/api/docs/").content.decode()
    assert "swagger-ui" in docs and "cdn" not in docs.lower()
