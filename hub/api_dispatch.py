"""A shorter dispatch for the API's busiest POST endpoints (one usage event, identify).

DRF's dispatch wraps the request, negotiates, authenticates, checks permissions and throttles,
calls the handler and renders its `Response` through a template response: a fifth of the CPU of
a one-event request. `DirectPostView` takes the same steps on the request as Django gives it, in
the case nearly every client is in (a POST answered in JSON, from a caller its authenticators
accept and its permissions let through), and hands everything else to DRF's own dispatch: other
methods, an `Accept` asking for negotiation, an anonymous or refused caller, and every error, which
DRF answers as it would have (its exception handler, `WWW-Authenticate`, `Retry-After`).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse, HttpResponseBase
from rest_framework.response import Response
from rest_framework.views import APIView

from .negotiation import needs_negotiation


class DirectPostView(APIView):
    """An APIView whose POST handler is `answer(request)`, returning the body of a 200.

    `request` is then Django's request with `user` set (what DRF's request would have given):
    `answer` reads the caller, headers and body (`json_body`), never DRF-only attributes.
    """

    def answer(self, request: Any) -> dict[str, Any]:
        raise NotImplementedError

    def post(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        return Response(self.answer(request))

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method != "POST" or kwargs or needs_negotiation(request, self.renderer_classes):
            return super().dispatch(request, *args, **kwargs)
        self.args, self.kwargs = args, kwargs
        self.headers = self.default_response_headers
        # As DRF's request: no caller until an authenticator found one (or after it failed).
        request.user, request.auth = None, None
        try:
            if not self._authenticated(request):
                # Anonymous or refused: DRF's dispatch says so (401 or 403), from the start.
                return super().dispatch(request, *args, **kwargs)
            self.check_throttles(request)
            body = self.answer(request)
        except Exception as exc:  # every error is answered by DRF's handling, as it would be
            return self._error(request, exc)
        renderer = self.renderer_classes[0]()
        response = HttpResponse(
            renderer.render(body, renderer.media_type, {}), content_type=renderer.media_type
        )
        return self.finalize_response(request, response)  # type: ignore[arg-type]  # a plain response

    def _authenticated(self, request: Any) -> bool:
        """Whether an authenticator found a caller (its errors raised) whom the permissions accept."""
        for authenticator in self.get_authenticators():
            found = authenticator.authenticate(request)
            if found is not None:
                request.user, request.auth = found
                break
        else:
            return False
        return all(permission.has_permission(request, self) for permission in self.get_permissions())

    def _error(self, request: Any, exc: Exception) -> HttpResponseBase:
        """DRF's answer to `exc`: its request, negotiation, exception handling and headers."""
        drf_request = self.initialize_request(request)
        drf_request.user, drf_request.auth = request.user, request.auth
        self.request = drf_request
        self.format_kwarg = None
        drf_request.accepted_renderer, drf_request.accepted_media_type = self.perform_content_negotiation(
            drf_request
        )
        self.response = self.finalize_response(drf_request, self.handle_exception(exc))
        return self.response
