"""Middleware of the hub's own: request body size limit, checked before anything reads the body,
NUL characters in the URL refused before they reach PostgreSQL (which stores no NUL), and JSON
errors on every API path, whatever answered them (a view, Django's resolver, a server error)."""

from __future__ import annotations

from http import HTTPStatus

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from .races import CONFLICT_MESSAGE, is_unique_violation


class BodySizeLimitMiddleware:
    """Refuse a body declared over HUB_MAX_BODY_BYTES with 413 in the API's dialect, unread.

    Under WSGI, Django reads at most Content-Length bytes and nothing without one, so checking
    the declared length bounds what any view or parser can read. Endpoints may set lower limits.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        declared = request.META.get("CONTENT_LENGTH")
        if declared not in (None, ""):
            try:
                length = int(declared)
            except ValueError:
                length = -1
            key = api_error_key(request.path) or "error"
            if length < 0:
                return JsonResponse({key: "Invalid Content-Length header."}, status=400)
            limit = settings.HUB_MAX_BODY_BYTES
            if length > limit:
                return JsonResponse({key: f"The request body is over {limit} bytes."}, status=413)
        if (
            "\x00" in request.path
            or "%00" in request.META.get("QUERY_STRING", "")
            or any("\x00" in v for values in request.GET.lists() for v in values[1])
        ):
            key = api_error_key(request.path) or "error"
            return JsonResponse({key: "The URL may not contain the NUL character."}, status=400)
        return self.get_response(request)


# The API's first path segments and the key of their error bodies: Metronome's and Kable's
# dialect is `{"message": ...}`, the hub's own (and its Segment endpoints') `{"error": ...}`.
API_ERROR_KEYS = {
    "v1": "error",
    "segment": "error",
    "hooks": "error",
    "metronome": "message",
    "kable": "message",
}
_KEPT_HEADERS = ("Allow", "Retry-After")


def api_error_key(path: str) -> str | None:
    """The error body's key for an API path (`//v1/x` too), or None for a screen's path."""
    return API_ERROR_KEYS.get(path.lstrip("/").split("/", 1)[0])


def _message(request: HttpRequest, response: HttpResponse) -> str:
    status = response.status_code
    if status == 404:
        return "Not found: no such endpoint or object."
    if status == 405:
        return f"Method {request.method} not allowed; allowed: {response.get('Allow', 'none')}."
    try:
        return f"{HTTPStatus(status).phrase}."
    except ValueError:
        return f"Error {status}."


class ApiErrorMiddleware:
    """Every error answer under the API's paths is JSON in the endpoint's dialect.

    Views answer their own errors in JSON already; this catches the rest, one mechanism for all:
    Django's 404 for an unrouted path, `require_POST`'s empty 405 (its `Allow` kept), a server
    error's HTML 500, and a unique violation no service retried (409, see hub.races). Screens
    keep their HTML pages.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        key = api_error_key(request.path)
        if key is None or response.status_code < 400:
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        replaced = JsonResponse({key: _message(request, response)}, status=response.status_code)
        for header in _KEPT_HEADERS:
            if header in response:
                replaced[header] = response[header]
        return replaced

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_unique_violation(exception):
            return None
        key = api_error_key(request.path)
        if key is not None:
            return JsonResponse({key: CONFLICT_MESSAGE}, status=409)
        return HttpResponse(
            f"<!doctype html><title>Conflict</title><h1>Conflict</h1><p>{CONFLICT_MESSAGE}</p>", status=409
        )
