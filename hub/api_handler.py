"""The hub's WSGI handler: the API's paths through a shorter middleware chain.

Every `/v1/` endpoint is a DRF view that authenticates its caller by API key or customer token,
is exempt from CSRF and answers JSON: it reads no session, cookie user or flash message, and
serves no static file. Sessions, CSRF, Django's authentication, messages and WhiteNoise then do
nothing for it but cost CPU on the busiest path: in `bench.ingest` (2026-12-04), a one-event
request took 0.87-0.88 ms of web CPU through this chain against 0.91-0.96 ms through the whole one.
`HubWSGIHandler` sends `/v1/` requests through the same middleware minus those five, built from
`settings.MIDDLEWARE` at start-up like Django's own chain, and everything else through Django's.
Answers are byte for byte the same (tests/hub/test_api_handler.py compares both chains), but for
one case by design: a request that carries a browser's session or CSRF cookie gets no Set-Cookie
(nor `Vary: Cookie`) here, where the whole chain would clear a stale session cookie or rotate a bad
CSRF one; an API client has no use for either.
"""

from __future__ import annotations

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler

API_PREFIX = "/v1/"
# What an API-key request never uses. Everything else (request ids, metrics, security headers,
# the API's JSON errors, the body limit, CommonMiddleware, X-Frame-Options) stays, in order.
API_SKIPPED_MIDDLEWARE = frozenset(
    {
        "whitenoise.middleware.WhiteNoiseMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    }
)


class ApiWSGIHandler(WSGIHandler):
    """Django's WSGI handler over `settings.MIDDLEWARE` without `API_SKIPPED_MIDDLEWARE`."""

    def load_middleware(self, is_async: bool = False) -> None:
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = [path for path in full if path not in API_SKIPPED_MIDDLEWARE]
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


class HubWSGIHandler(WSGIHandler):
    """Django's handler, with `/v1/` requests handed to an `ApiWSGIHandler`."""

    def __init__(self) -> None:
        super().__init__()
        self.api = ApiWSGIHandler()

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]  # WSGI's signature
        if environ.get("PATH_INFO", "").startswith(API_PREFIX):
            return self.api(environ, start_response)
        return super().__call__(environ, start_response)
