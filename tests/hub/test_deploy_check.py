"""`manage.py check --deploy` is clean with a production-like environment."""

import secrets
import subprocess
import sys

from django.conf import settings

from tests.processes import ROOT, process_env


def deploy_check(**overrides: str) -> subprocess.CompletedProcess:
    production_like = dict(
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(64),
        HUB_ENCRYPTION_KEYS=settings.HUB_ENCRYPTION_KEYS[0],
        ALLOWED_HOSTS="hub.example.com",
        CSRF_TRUSTED_ORIGINS="https://hub.example.com",
        SECURE_SSL_REDIRECT="1",
        SESSION_COOKIE_SECURE="1",
        CSRF_COOKIE_SECURE="1",
        SECURE_HSTS_SECONDS="31536000",
        STATIC_MANIFEST="1",
        CACHE_URL="redis://127.0.0.1:6379/1",
        HUB_RATE_LIMIT="600/60s",
    )
    env = process_env(**{**production_like, **overrides})
    env.pop(
        "DJANGO_ALLOW_ASYNC_UNSAFE", None
    )  # set in this process by the browser tests, never in production
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_deploy_check_is_clean_in_production_like_settings():
    result = deploy_check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_deploy_check_flags_what_hardening_needs():
    result = deploy_check(
        HUB_RATE_LIMIT_REDIS_URL="", CELERY_BROKER_URL="filesystem://", CACHE_URL="locmemcache://"
    )
    assert result.returncode != 0
    assert "hub.W001" in result.stderr + result.stdout
    assert "hub.W002" in result.stderr + result.stdout


def test_metrics_on_without_a_shared_multiprocess_directory_is_warned_about(tmp_path):
    result = deploy_check(HUB_METRICS_TOKEN="short")
    assert "hub.W010" in result.stderr + result.stdout and "hub.W011" in result.stderr + result.stdout
    good = deploy_check(HUB_METRICS_TOKEN="m" * 32, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    assert good.returncode == 0, good.stderr + good.stdout
