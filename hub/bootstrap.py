"""First-run setup for a development hub: an admin user and a demo workspace with an app."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from .config_apply import config_apply
from .models import ApiKey, App
from .services.accounts import api_key_create

DEMO_KEY_NAME = "make run demo"


@dataclass(frozen=True)
class BootstrapResult:
    username: str
    email: str
    password: str | None  # set only when the user was created just now
    demo: dict
    demo_api_key: str  # the demo app's API key, kept in var/ so every run can print a working curl


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
    app = App.objects.get(public_id=demo["apps"][0]["id"])
    return BootstrapResult(
        username=user.username,
        email=user.email,
        password=new_password,
        demo=demo,
        demo_api_key=_demo_api_key(app=app, path=Path(settings.VAR_DIR) / "demo-api-key.txt"),
    )


def _demo_api_key(*, app: App, path: Path) -> str:
    """The demo app's API key: the one kept at `path` while it is active, else a new one kept there."""
    if path.exists():
        secret = path.read_text().strip()
        prefix = secret.rsplit("_", 1)[0]
        if ApiKey.objects.filter(app=app, prefix=prefix, revoked_at__isnull=True).exists():
            return secret
    _, secret = api_key_create(app=app, name=DEMO_KEY_NAME)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return secret


def demo_curl(*, url: str, app_id: str, api_key: str) -> str:
    """One curl command that sends a usage event to the hub at `url` (ends with /)."""
    body = '{"eventName": "report_generated", "customerId": "shop-1", "properties": {"rows": 42}}'
    return (
        f"curl -sS -X POST {url}v1/usage_events -H 'Content-Type: application/json' "
        f"-H 'X-Mantle-App-Id: {app_id}' -H 'X-Mantle-App-Api-Key: {api_key}' -d '{body}'"
    )
