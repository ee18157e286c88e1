"""DRF throttle of the API: HUB_RATE_LIMIT requests per window for each API key (see rate_limits)."""

from __future__ import annotations

from rest_framework.throttling import BaseThrottle

from .authentication import AppCaller
from .rate_limits import api_rate_limit_exceeded


class ApiKeyRateThrottle(BaseThrottle):
    """One budget per API key; per customer for customer-token calls; per client IP otherwise.

    Over the limit DRF answers 429 with `Retry-After` (our exception handler makes the body
    `{"error": ...}`).
    """

    def __init__(self) -> None:
        self._wait: int | None = None

    def caller_key(self, request) -> str:
        """The budget this request counts against."""
        caller = request.user
        if isinstance(caller, AppCaller):
            if caller.api_key is not None:
                return f"key:{caller.api_key.pk}"
            if caller.customer is not None:
                return f"customer:{caller.customer.pk}"
            return f"app:{caller.app.pk}"
        return f"ip:{self.get_ident(request)}"

    def allow_request(self, request, view) -> bool:
        over = api_rate_limit_exceeded(caller_key=self.caller_key(request))
        if over is None:
            return True
        self._wait = over.retry_after
        return False

    def wait(self) -> int | None:
        return self._wait
