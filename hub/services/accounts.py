"""Write paths of the core: workspaces, members, apps and API keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from ..errors import AuthenticationError, HubError
from ..models import ApiKey, App, Membership, Workspace
from ..races import unique_race_safe
from ..raw_cursor import JoinedRows, raw_cursor
from ..ttl_cache import TTLCache

if TYPE_CHECKING:
    from django.contrib.auth.models import User

_ALPHABET = string.ascii_letters + string.digits
_LOOKUP_LENGTH = 12
_SECRET_LENGTH = 40


def _random_token(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def _hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _unique_slug(name: str) -> str:
    base = slugify(name)[:100] or "workspace"
    slug, n = base, 1
    while Workspace.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@unique_race_safe
@transaction.atomic
def workspace_create(*, name: str, owner: User | None = None) -> Workspace:
    """Create a workspace; `owner`, when given, becomes its first owner."""
    name = name.strip()
    if not name or len(name) > 100:
        raise HubError("A workspace needs a name of at most 100 characters.")
    if Workspace.objects.filter(name=name).exists():
        raise HubError(f"A workspace named {name!r} already exists.")
    workspace = Workspace.objects.create(name=name, slug=_unique_slug(name))
    if owner is not None:
        membership_set(workspace=workspace, user=owner, role=Membership.Role.OWNER)
    return workspace


def membership_set(*, workspace: Workspace, user: User, role: str) -> Membership:
    """Give `user` the `role` in `workspace`, adding them as a member if needed."""
    if role not in Membership.Role.values:
        raise HubError(f"Unknown role {role!r}.")
    membership, _ = Membership.objects.update_or_create(
        workspace=workspace, user=user, defaults={"role": role}
    )
    return membership


def user_get_or_create_by_email(*, email: str) -> tuple[User, bool]:
    """Return the user with this email (case-insensitive), creating one without a password."""
    User = get_user_model()
    email = email.strip().lower()
    user = User.objects.filter(email__iexact=email).order_by("pk").first()
    if user is not None:
        return user, False
    user = User(username=email[:150], email=email)
    user.set_unusable_password()
    user.save()
    return user, True


@unique_race_safe
def app_create(*, workspace: Workspace, name: str) -> App:
    """Create an app in `workspace`; names are unique within a workspace."""
    name = name.strip()
    if not name:
        raise HubError("An app needs a name.")
    if workspace.apps.filter(name__iexact=name).exists():
        raise HubError(f"An app named {name!r} already exists in this workspace.")
    return App.objects.create(workspace=workspace, name=name)


def api_key_create(*, app: App, name: str, created_by: User | None = None) -> tuple[ApiKey, str]:
    """Create an API key for `app`; return it with its secret, which is never available again."""
    name = name.strip()
    if not name:
        raise HubError("An API key needs a name.")
    if len(name) > 100:
        raise HubError("An API key name has at most 100 characters.")
    prefix = f"{settings.HUB_API_KEY_PREFIX}{_random_token(_LOOKUP_LENGTH)}"
    key = f"{prefix}_{_random_token(_SECRET_LENGTH)}"
    api_key = ApiKey.objects.create(
        app=app,
        name=name,
        prefix=prefix,
        secret_hash=_hash_key(key),
        created_by=created_by if created_by and created_by.is_authenticated else None,
    )
    return api_key, key


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke `api_key`; from now on it authenticates nothing. Revoking twice is harmless."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=api_key.revoked_at)
    _key_cache.pop(api_key.prefix)
    return api_key


def _api_key_cache_seconds() -> float:
    seconds: float = settings.HUB_API_KEY_CACHE_SECONDS
    return seconds


# Keys recently found valid, per process, by prefix. Saves the lookup on busy ingest paths; a
# revocation made in another process is seen within HUB_API_KEY_CACHE_SECONDS.
_key_cache: TTLCache[ApiKey] = TTLCache(ttl=_api_key_cache_seconds, maxsize=10_000)


def _cached_api_key(prefix: str) -> ApiKey | None:
    if _api_key_cache_seconds() <= 0:
        return _api_key_by_prefix(prefix)
    hit = _key_cache.get(prefix)
    if hit is not None:
        return hit
    api_key = _api_key_by_prefix(prefix)
    if api_key is not None and api_key.revoked_at is None:
        _key_cache.set(prefix, api_key)
    else:
        _key_cache.pop(prefix)
    return api_key


def api_key_cache_clear() -> None:
    """Forget this process's cached keys."""
    _key_cache.clear()


def api_key_authenticate(*, key: str, app_public_id: str | None = None) -> ApiKey:
    """Return the active key matching `key` (and the app id, when given) or raise AuthenticationError."""
    key = (key or "").strip()
    if not key:
        raise AuthenticationError("Missing API key.")
    prefix, sep, _secret = key.rpartition("_")
    if not sep or not prefix or len(key) > 200:
        raise AuthenticationError("Invalid API key.")
    app_uuid = None
    if app_public_id is not None:
        try:
            app_uuid = uuid.UUID(str(app_public_id).strip())
        except ValueError:
            raise AuthenticationError("Invalid app id.") from None
    api_key = _cached_api_key(prefix)
    # Compare even when no row matched, so timing does not tell whether a prefix exists.
    expected = api_key.secret_hash if api_key else _hash_key("")
    if not hmac.compare_digest(expected, _hash_key(key)) or api_key is None:
        raise AuthenticationError("Invalid API key.")
    if api_key.revoked_at is not None:
        raise AuthenticationError("This API key has been revoked.")
    if app_uuid is not None and api_key.app.public_id != app_uuid:
        raise AuthenticationError("This API key does not belong to that app.")
    api_key_touch(api_key=api_key)
    return api_key


_KEY_ROWS = JoinedRows(ApiKey, App, Workspace)


def _api_key_by_prefix(prefix: str) -> ApiKey | None:
    """The key with its app and workspace in one query (on every API request, so no ORM compile)."""
    # Only model metadata is interpolated; the prefix is a parameter.
    sql = (
        f"SELECT {_KEY_ROWS.columns('k', 'a', 'w')} FROM {ApiKey._meta.db_table} k "  # noqa: S608
        f"JOIN {App._meta.db_table} a ON a.id = k.app_id "
        f"JOIN {Workspace._meta.db_table} w ON w.id = a.workspace_id WHERE k.prefix = %s"
    )
    with raw_cursor() as cursor:
        cursor.execute(sql, [prefix])
        row = cursor.fetchone()
    if row is None:
        return None
    api_key: ApiKey
    app: App
    workspace: Workspace
    api_key, app, workspace = _KEY_ROWS.instances(row)
    app.workspace = workspace
    api_key.app = app
    return api_key


def api_key_touch(*, api_key: ApiKey) -> None:
    """Record use of the key, writing at most once per HUB_API_KEY_TOUCH_INTERVAL seconds."""
    now = timezone.now()
    interval = timedelta(seconds=settings.HUB_API_KEY_TOUCH_INTERVAL)
    if api_key.last_used_at is not None and now - api_key.last_used_at < interval:
        return
    updated = ApiKey.objects.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - interval), pk=api_key.pk
    ).update(last_used_at=now)
    if updated:
        api_key.last_used_at = now
