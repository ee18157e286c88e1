"""The core's REST API (`GET /v1/app`) and the error shape shared by every endpoint."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from .errors import HubError


def _first_message(detail) -> str:
    if isinstance(detail, dict):
        if "detail" in detail:
            return _first_message(detail["detail"])
        key, value = next(iter(detail.items()))
        return f"{key}: {_first_message(value)}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def exception_handler(exc, context):
    """Answer every API error as `{"error": "..."}` (what Mantle's clients look for)."""
    if isinstance(exc, HubError):
        return Response({"error": str(exc)}, status=exc.status_code)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    body = {"error": _first_message(data)}
    if isinstance(data, dict) and "detail" not in data:
        body["details"] = data
    response.data = body
    return response


ErrorSerializer = inline_serializer("Error", {"error": serializers.CharField()})

AppSerializer = inline_serializer(
    "App",
    {
        "id": serializers.UUIDField(),
        "name": serializers.CharField(),
        "workspace": serializers.CharField(),
        "createdAt": serializers.DateTimeField(),
    },
)


class AppView(APIView):
    """The authenticated app (Segment's Mantle destination calls it as its connection test)."""

    @extend_schema(
        operation_id="app_retrieve",
        responses={200: AppSerializer, 401: ErrorSerializer},
        tags=["App"],
    )
    def get(self, request):
        app = request.user.app
        return Response(
            {
                "id": str(app.public_id),
                "name": app.name,
                "workspace": app.workspace.name,
                "createdAt": app.created_at.isoformat(),
            },
            status=status.HTTP_200_OK,
        )
