"""First-run setup for a development hub: an admin user and a demo workspace with an app."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction

from .config_apply import config_apply


@dataclass(frozen=True)
class BootstrapResult:
    username: str
    email: str
    password: str | None  # set only when the user was created just now
    demo: dict


@transaction.atomic
def hub_bootstrap(*, email: str, password: str | None = None) -> BootstrapResult:
    """Ensure a superuser `email` exists and owns the Demo workspace with a Demo app."""
    User = get_user_model()
    user = User.objects.filter(email__iexact=email).first()
    new_password = None
    if user is None:
        new_password = password or secrets.token_urlsafe(12)
        username = email if User.objects.filter(username="admin").exists() else "admin"
        user = User.objects.create_superuser(username=username, email=email, password=new_password)
    elif password:
        user.set_password(password)
        user.save(update_fields=["password"])
        new_password = password
    demo = config_apply(
        document={"workspace": "Demo", "owner_email": user.email, "apps": [{"name": "Demo app"}]}
    )
    return BootstrapResult(username=user.username, email=user.email, password=new_password, demo=demo)
