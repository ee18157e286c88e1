"""API authentication: Mantle-compatible app id and API key headers, or a Bearer key."""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework import authentication, exceptions

from .errors import AuthenticationError
from .models import ApiKey, App
from .services import api_key_authenticate


@dataclass(frozen=True)
class AppCaller:
    """`request.user` of an API request: the app the credentials belong to."""

    app: App
    api_key: ApiKey | None = None
    customer: object | None = None

    is_authenticated = True
    is_anonymous = False

    @property
    def pk(self):  # DRF's throttles and logs look for an id
        return f"app:{self.app.pk}"


class AppApiKeyAuthentication(authentication.BaseAuthentication):
    """`X-Mantle-App-Id` + `X-Mantle-App-Api-Key`, or `Authorization: Bearer <key>`.

    Headers are case-insensitive (Segment sends them in lower case). A request carrying none of
    these headers is left to the next authenticator; one carrying a bad value fails with 401.
    """

    def authenticate(self, request):
        meta = request.META
        app_id = meta.get("HTTP_X_MANTLE_APP_ID")
        key = meta.get("HTTP_X_MANTLE_APP_API_KEY")
        if not key:
            scheme, _, value = meta.get("HTTP_AUTHORIZATION", "").partition(" ")
            if scheme.lower() == "bearer":
                key = value.strip() or None
                if key is None:
                    raise exceptions.AuthenticationFailed("Missing API key.")
        if key is None:
            if app_id is not None and not meta.get("HTTP_X_MANTLE_CUSTOMER_API_TOKEN"):
                raise exceptions.AuthenticationFailed("Missing API key.")
            return None
        try:
            api_key = api_key_authenticate(key=key, app_public_id=app_id)
        except AuthenticationError as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None
        return AppCaller(app=api_key.app, api_key=api_key), api_key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="hub"'
