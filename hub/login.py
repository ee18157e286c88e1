"""The login screen, refusing with 429 after too many failed logins for a username or a client IP."""

from __future__ import annotations

import math

from django.contrib.auth import views as auth_views
from django.http import HttpResponse
from rest_framework.throttling import BaseThrottle

from . import rate_limits


def client_ip(request) -> str | None:
    """The client's address, honouring HUB_NUM_PROXIES like the API's throttle does."""
    return BaseThrottle().get_ident(request)


class LoginView(auth_views.LoginView):
    """Django's LoginView, counting failures per username and per IP (HUB_LOGIN_FAILURE_*).

    While locked out the password is not even checked, so guessing gains nothing.
    """

    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs) -> HttpResponse:
        wait = rate_limits.login_lockout_seconds(username=self._username(), ip=client_ip(request))
        if wait:
            return self._locked_out(wait)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form) -> HttpResponse:
        rate_limits.login_failure_record(username=self._username(), ip=client_ip(self.request))
        return super().form_invalid(form)

    def form_valid(self, form) -> HttpResponse:
        rate_limits.login_failures_clear(username=self._username())
        return super().form_valid(form)

    def _username(self) -> str:
        return self.request.POST.get("username", "")

    def _locked_out(self, wait: int) -> HttpResponse:
        minutes = max(1, math.ceil(wait / 60))
        form = self.get_form_class()(self.request, initial={"username": self._username()})
        context = self.get_context_data(
            form=form,
            locked_out=f"Too many failed logins. Try again in {minutes} minute{'s' if minutes > 1 else ''}.",
        )
        response = self.render_to_response(context, status=429)
        response["Retry-After"] = str(wait)
        return response
