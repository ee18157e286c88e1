"""Login throttling: 5 failed logins for a username or from an IP within 15 minutes lock it out."""

import pytest
from django.core.cache import cache
from django.test import Client

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory's


@pytest.fixture(autouse=True)
def fresh_counts(settings):
    # A fast hasher (set before the `user` fixture hashes its password): these tests log in often.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()
    yield
    cache.clear()


def login(username, password, ip="10.0.0.1", client=None):
    client = client or Client()
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=ip)


def logged_in(response) -> bool:
    return "_auth_user_id" in response.client.session


def test_settings_defaults():
    from django.conf import settings

    assert (settings.HUB_LOGIN_FAILURE_LIMIT, settings.HUB_LOGIN_FAILURE_WINDOW) == (5, 900)


def test_five_failures_for_a_username_lock_it_out_even_with_the_right_password(user):
    for _ in range(5):
        response = login(user.username, "wrong")
        assert response.status_code == 200 and not logged_in(response)
    response = login(user.username, PASSWORD, ip="10.0.0.2")  # another IP does not help
    assert response.status_code == 429
    assert "Too many failed logins. Try again in 15 minutes." in response.content.decode()
    assert 890 <= int(response["Retry-After"]) <= 900
    assert not logged_in(response)


def test_the_username_is_matched_case_insensitively(user):
    for _ in range(5):
        login(user.username.upper(), "wrong", ip=f"10.0.1.{_}")
    assert login(user.username, PASSWORD, ip="10.0.2.1").status_code == 429


def test_five_failures_from_an_ip_lock_that_ip_out_for_every_username(user):
    for i in range(5):
        login(f"nobody{i}@example.com", "wrong", ip="10.0.0.9")
    assert login(user.username, PASSWORD, ip="10.0.0.9").status_code == 429
    response = login(user.username, PASSWORD, ip="10.0.0.10")
    assert response.status_code == 302 and logged_in(response)


def test_four_failures_still_allow_a_login_which_clears_the_username_count(user):
    for _ in range(4):
        login(user.username, "wrong", ip="10.0.0.1")
    assert logged_in(login(user.username, PASSWORD, ip="10.0.0.1"))
    for _ in range(4):  # from another IP, whose own count stays below the limit
        login(user.username, "wrong", ip="10.0.0.2")
    response = login(user.username, PASSWORD, ip="10.0.0.3")
    assert response.status_code == 302 and logged_in(response)


def test_the_lockout_ends_with_the_window(user, clock, settings):
    for _ in range(5):
        login(user.username, "wrong")
    assert login(user.username, PASSWORD).status_code == 429
    clock.advance(settings.HUB_LOGIN_FAILURE_WINDOW + 1)
    assert logged_in(login(user.username, PASSWORD))


def test_the_login_page_still_renders_while_locked_out(user):
    for _ in range(5):
        login(user.username, "wrong")
    assert Client().get("/login/", REMOTE_ADDR="10.0.0.1").status_code == 200
