"""API rate limiting: a fixed window per API key, counted atomically in the test run's real Redis."""

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings
from django.test import Client, override_settings

from hub import rate_limits
from hub.rate_limits import rate_parse, window_hit
from tests.clock import rate_windows_end
from tests.factories import AppFactory, api_key_for

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_counters")]


def bearer(secret):
    return Client(headers={"Authorization": f"Bearer {secret}"})


def test_tests_run_with_rate_limiting_on():
    assert settings.HUB_RATE_LIMIT_REDIS_URL.startswith("redis://")
    assert "hub.throttling.ApiKeyRateThrottle" in settings.REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"]


@override_settings(HUB_RATE_LIMIT="3/60s")
def test_over_the_limit_is_429_with_retry_after_and_json_error(api_client):
    for _ in range(3):
        assert api_client.get("/v1/app").status_code == 200
    response = api_client.get("/v1/app")
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    assert isinstance(response.json()["error"], str) and response.json()["error"]


@override_settings(HUB_RATE_LIMIT="2/60s")
def test_each_api_key_has_its_own_budget(app, api_key):
    _, second_secret = api_key_for(app, name="second")
    _, other_app_secret = api_key_for(AppFactory(), name="other")
    first = bearer(api_key[1])
    assert [first.get("/v1/app").status_code for _ in range(3)] == [200, 200, 429]
    assert [bearer(second_secret).get("/v1/app").status_code for _ in range(3)] == [200, 200, 429]
    assert bearer(other_app_secret).get("/v1/app").status_code == 200
    assert first.get("/v1/app").status_code == 429


@override_settings(HUB_RATE_LIMIT="2/60s")
def test_the_budget_comes_back_when_the_window_ends(api_client, fresh_counters):
    assert [api_client.get("/v1/app").status_code for _ in range(3)] == [200, 200, 429]
    rate_windows_end(fresh_counters)
    assert api_client.get("/v1/app").status_code == 200


def test_counting_is_atomic_under_concurrency():
    def hit(_):
        return window_hit(key="concurrency-test", window=60).count

    with ThreadPoolExecutor(max_workers=8) as pool:
        counts = sorted(pool.map(hit, range(50)))
    assert counts == list(range(1, 51))


def test_counter_keys_expire(fresh_counters):
    window_hit(key="expiry-test", window=30)
    ttl = fresh_counters.ttl(f"{rate_limits.KEY_PREFIX}expiry-test")
    assert 0 < ttl <= 30


@override_settings(HUB_RATE_LIMIT="1/60s", HUB_RATE_LIMIT_REDIS_URL="")
def test_without_redis_rate_limiting_is_off_and_says_so(api_client, caplog):
    rate_limits._warn_no_redis.cache_clear()
    with caplog.at_level(logging.WARNING, logger="hub.rate_limits"):
        assert [api_client.get("/v1/app").status_code for _ in range(3)] == [200, 200, 200]
    assert "rate limiting is OFF" in caplog.text
    assert caplog.text.count("rate limiting is OFF") == 1


@override_settings(HUB_RATE_LIMIT="1/60s", HUB_RATE_LIMIT_REDIS_URL="redis://127.0.0.1:1/0")
def test_redis_outage_fails_open(api_client):
    assert [api_client.get("/v1/app").status_code for _ in range(2)] == [200, 200]


@override_settings(HUB_RATE_LIMIT="off")
def test_rate_limit_can_be_switched_off(api_client, fresh_counters):
    assert api_client.get("/v1/app").status_code == 200
    assert list(fresh_counters.scan_iter(f"{rate_limits.KEY_PREFIX}*")) == []


@pytest.mark.parametrize(
    ("value", "parsed"),
    [("600/60s", (600, 60)), ("100/m", (100, 60)), ("5000/1h", (5000, 3600)), ("10/5", (10, 5)),
     ("off", None), ("", None)],
)  # fmt: skip
def test_rate_setting_syntax(value, parsed):
    assert rate_parse(value) == parsed


@pytest.mark.parametrize("value", ["600", "x/60s", "0/60s", "10/0s", "10/60d"])
def test_bad_rate_settings_are_refused(value):
    with pytest.raises(ValueError):
        rate_parse(value)
