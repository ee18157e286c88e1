"""Errors the core services raise; views turn them into HTTP answers."""


class HubError(Exception):
    """Base of the hub's domain errors: the message is safe to show to the caller."""

    status_code = 400


class AuthenticationError(HubError):
    """Credentials are missing, malformed, wrong or revoked."""

    status_code = 401


class NotFound(HubError):
    status_code = 404


class Conflict(HubError):
    """The request contradicts the current state (an illegal transition)."""

    status_code = 409
