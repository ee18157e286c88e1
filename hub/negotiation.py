"""The API's content negotiation (REST_FRAMEWORK's DEFAULT_CONTENT_NEGOTIATION_CLASS): a module of
its own, since DRF imports it while defining APIView."""

from __future__ import annotations

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.settings import api_settings


def needs_negotiation(request, renderer_classes) -> bool:
    """Whether choosing the renderer takes DRF's negotiation: not when the client sent no Accept
    header, `*/*` or the first renderer's own type, and no `?format=`; then it is the first."""
    return not (
        renderer_classes
        and request.META.get("HTTP_ACCEPT", "*/*") in ("*/*", renderer_classes[0].media_type)
        and api_settings.URL_FORMAT_OVERRIDE not in request.GET
    )


class ApiContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, answered at once for what clients send nearly always (see
    `needs_negotiation`): the first renderer, as DRF would choose. Parsing the Accept header is a
    measurable share of a one-event request."""

    def select_renderer(self, request, renderers, format_suffix=None):
        if format_suffix is None and not needs_negotiation(request, renderers):
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)
