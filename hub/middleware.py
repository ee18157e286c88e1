"""Middleware of the hub's own: request body size limit, checked before anything reads the body,
and NUL characters in the URL refused before they reach PostgreSQL (which stores no NUL)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse


class BodySizeLimitMiddleware:
    """Refuse a body declared over HUB_MAX_BODY_BYTES with 413 `{"error": ...}`, unread.

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
            if length < 0:
                return JsonResponse({"error": "Invalid Content-Length header."}, status=400)
            limit = settings.HUB_MAX_BODY_BYTES
            if length > limit:
                return JsonResponse({"error": f"The request body is over {limit} bytes."}, status=413)
        if (
            "\x00" in request.path
            or "%00" in request.META.get("QUERY_STRING", "")
            or any("\x00" in v for values in request.GET.lists() for v in values[1])
        ):
            return JsonResponse({"error": "The URL may not contain the NUL character."}, status=400)
        return self.get_response(request)
