"""API authentication: Mantle-compatible app id and API key headers, a Bearer key, or a
customer API token (`X-Mantle-Customer-Api-Token` with `X-Mantle-App-Id`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from .errors import AuthenticationError
from .models import ApiKey, App, Customer
from .services.accounts import api_key_authenticate
from .services.customer_refs import customer_by_token


@dataclass(frozen=True)
class AppCaller:
    """`request.user` of an API request: the app the credentials belong to."""

    app: App
    api_key: ApiKey | None = None
    customer: Customer | None = None  # set when a customer token was sent: scope to it

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
            token = meta.get("HTTP_X_MANTLE_CUSTOMER_API_TOKEN")
            customer = customer_by_token(app=api_key.app, token=token) if token else None
        except AuthenticationError as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None
        return AppCaller(app=api_key.app, api_key=api_key, customer=customer), api_key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="hub"'


class CustomerTokenAuthentication(authentication.BaseAuthentication):
    """`X-Mantle-App-Id` + `X-Mantle-Customer-Api-Token`: acts for one customer of the app."""

    def authenticate(self, request):
        meta = request.META
        token = meta.get("HTTP_X_MANTLE_CUSTOMER_API_TOKEN")
        if token is None:
            return None
        app_id = meta.get("HTTP_X_MANTLE_APP_ID")
        if not app_id:
            raise exceptions.AuthenticationFailed("Missing X-Mantle-App-Id.")
        try:
            app = App.objects.select_related("workspace").get(public_id=uuid.UUID(app_id.strip()))
        except (ValueError, App.DoesNotExist):
            raise exceptions.AuthenticationFailed("Invalid app id.") from None
        try:
            customer = customer_by_token(app=app, token=token)
        except AuthenticationError as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None
        return AppCaller(app=app, customer=customer), None

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="hub"'


class HasApiKey(permissions.BasePermission):
    """Server-side endpoints: a customer token alone is not enough."""

    message = "This endpoint needs the app's API key (X-Mantle-App-Api-Key)."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, AppCaller) and request.user.api_key is not None


class AppApiKeyScheme(OpenApiAuthenticationExtension):
    """The schema's description of AppApiKeyAuthentication: both headers together, or a Bearer key."""

    target_class = "hub.authentication.AppApiKeyAuthentication"
    name = ["AppId", "AppApiKey", "BearerApiKey"]

    def get_security_definition(self, auto_schema):
        return [
            {"type": "apiKey", "in": "header", "name": "X-Mantle-App-Id", "description": "The app's id."},
            {"type": "apiKey", "in": "header", "name": "X-Mantle-App-Api-Key", "description": "An API key."},
            {"type": "http", "scheme": "bearer", "description": "An API key as `Authorization: Bearer`."},
        ]

    def get_security_requirement(self, auto_schema):
        return [{"AppId": [], "AppApiKey": []}, {"BearerApiKey": []}]


class CustomerTokenScheme(OpenApiAuthenticationExtension):
    """The schema's description of CustomerTokenAuthentication: app id and customer token together."""

    target_class = "hub.authentication.CustomerTokenAuthentication"
    # Its own name for the app id header: a scheme name belongs to one authentication class.
    name = ["CustomerAppId", "CustomerApiToken"]

    def get_security_definition(self, auto_schema):
        return [
            {"type": "apiKey", "in": "header", "name": "X-Mantle-App-Id", "description": "The app's id."},
            {
                "type": "apiKey",
                "in": "header",
                "name": "X-Mantle-Customer-Api-Token",
                "description": "A customer's API token (returned by identify).",
            },
        ]

    def get_security_requirement(self, auto_schema):
        return {"CustomerAppId": [], "CustomerApiToken": []}
