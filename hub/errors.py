"""Errors the core services raise; views turn them into HTTP answers."""


class HubError(Exception):
    """Base of the hub's domain errors: the message is safe to show to the caller."""

    status_code = 400

    def body(self) -> dict:
        """The JSON body of the error response."""
        return {"error": str(self)}


class AuthenticationError(HubError):
    """Credentials are missing, malformed, wrong or revoked."""

    status_code = 401


class NotFound(HubError):
    status_code = 404


class Conflict(HubError):
    """The request contradicts the current state (an illegal transition)."""

    status_code = 409


class RateLimited(HubError):
    """Over a rate limit; the answer carries `Retry-After: retry_after`."""

    status_code = 429

    def __init__(self, retry_after: int):
        self.retry_after = retry_after
        super().__init__(f"Rate limit exceeded. Try again in {retry_after} seconds.")


class PayloadTooLarge(HubError):
    status_code = 413


class UnsupportedMediaType(HubError):
    status_code = 415
