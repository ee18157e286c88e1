"""Configuration as code: apply a JSON document describing workspaces, apps, keys and more.

The core applies `workspace`, `owner_email`, `members` and `apps` (with `api_keys`). Other
packages add sections with `section_register` from their AppConfig.ready(): workspace-level
sections (e.g. `integrations`) get the workspace, app-level ones (e.g. `plans`, `sources`,
`metrics`) get the app. Objects are matched by name, so applying a document twice changes
nothing and prints no secret the second time. A document changes only what it says: a field it
omits keeps the existing object's value (a new object gets the default), and `null` clears a
field where clearing makes sense (`declared_value`). The schema is in docs/hub_apply.md.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from django.db import transaction
from django.db.models import Model

from .errors import HubError
from .models import ApiKey, App, Membership, Workspace
from .services import accounts


class ConfigError(HubError):
    """The document is not valid; the message names the offending path."""


@dataclass(frozen=True)
class Section:
    key: str
    level: str  # "workspace" or "app"
    apply: Callable[..., object]


_SECTIONS: dict[tuple[str, str], Section] = {}


def section_register(*, level: str, key: str, apply: Callable[..., object]) -> None:
    """Let a package handle `key` in the document (workspace level) or in each app (app level).

    `apply(workspace=..., value=..., path=...)` or `apply(app=..., value=..., path=...)` returns
    what to print for the section.
    """
    if level not in ("workspace", "app"):
        raise ValueError(level)
    _SECTIONS[(level, key)] = Section(key=key, level=level, apply=apply)


_CORE_WORKSPACE_KEYS = {"workspace", "owner_email", "members", "apps"}
_CORE_APP_KEYS = {"name", "api_keys"}


NOT_CLEARABLE: Final = object()

_M = TypeVar("_M", bound=Model)


def declared_value(
    spec: dict[str, Any],
    key: str,
    *,
    obj: _M | None,
    default: Any,
    attr: str | Callable[[_M], Any] | None = None,
    cleared: Any = NOT_CLEARABLE,
    path: str,
) -> Any:
    """The value a document gives `key` of an object, for a section's apply function.

    Given: the document's value. Omitted: the existing object's current value (`attr` of `obj`, an
    attribute name or a function of the object; `key` by default), or `default` when `obj` is
    None (the object is being created). `null`: `cleared`, or a ConfigError naming `path.key` for
    a field that cannot be cleared.
    """
    if key in spec:
        if spec[key] is not None:
            return spec[key]
        _require(cleared is not NOT_CLEARABLE, f"{path}.{key}", "cannot be null")
        return cleared
    if obj is None:
        return default
    attr = attr or key
    return attr(obj) if callable(attr) else getattr(obj, attr)


def _require(cond: object, path: str, message: str) -> None:
    """A ConfigError naming `path` unless `cond` holds: a section's check of one value."""
    if not cond:
        raise ConfigError(f"{path}: {message}")


config_require = _require


def required_text(spec: dict[str, Any], key: str, *, path: str, message: str) -> str:
    """`spec[key]` when it is text that is not blank, else a ConfigError naming `path.key`."""
    value = spec.get(key)
    if not (isinstance(value, str) and value.strip()):
        raise ConfigError(f"{path}.{key}: {message}")
    return value


def section_entry(spec: object, *, path: str, what: str, keys: Collection[str]) -> dict[str, Any]:
    """`spec` as one `what` of a section: a ConfigError unless it is an object with only `keys`."""
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: each {what} must be an object")
    extra = set(spec) - set(keys)
    _require(not extra, path, f"unknown key(s) {', '.join(sorted(extra))}")
    return spec


def section_entries(
    value: object, *, path: str, what: str, keys: Collection[str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """A section's list of `what`s, each with its path (`path[i]`), checked as `section_entry` does
    when its turn comes; a ConfigError unless `value` is a list."""
    if not isinstance(value, list):
        raise ConfigError(f"{path}: must be a list of {what}s")
    for i, spec in enumerate(value):
        here = f"{path}[{i}]"
        yield here, section_entry(spec, path=here, what=what, keys=keys)


def _check_keys(obj: dict, allowed: set[str], level: str, path: str) -> None:
    extra = [k for k in obj if k not in allowed and (level, k) not in _SECTIONS]
    _require(not extra, path, f"unknown key(s) {', '.join(sorted(extra))}")


@transaction.atomic
def config_apply(*, document: object) -> dict[str, Any]:
    """Apply `document` (parsed JSON) in one transaction; return what exists, with secrets created
    just now."""
    if not isinstance(document, dict):
        raise ConfigError("$: the document must be a JSON object")
    _check_keys(document, _CORE_WORKSPACE_KEYS, "workspace", "$")
    name = required_text(document, "workspace", path="$", message="a workspace name is required")
    found = Workspace.objects.filter(name=name.strip()).first()
    created = found is None
    workspace = found or accounts.workspace_create(name=name)
    out: dict[str, Any] = {"workspace": {"name": workspace.name, "slug": workspace.slug, "created": created}}

    if "owner_email" in document:
        email = document["owner_email"]
        _require(isinstance(email, str) and "@" in email, "$.owner_email", "must be an email")
        user, _ = accounts.user_get_or_create_by_email(email=email)
        accounts.membership_set(workspace=workspace, user=user, role=Membership.Role.OWNER)
        out["owner"] = {"email": user.email}

    members = document.get("members", [])
    _require(isinstance(members, list), "$.members", "must be a list")
    out_members = []
    for i, member in enumerate(members):
        path = f"$.members[{i}]"
        _require(isinstance(member, dict) and isinstance(member.get("email"), str), path, "needs an email")
        _check_keys(member, {"email", "role"}, "member", path)
        user, _ = accounts.user_get_or_create_by_email(email=member["email"])
        membership = Membership.objects.filter(workspace=workspace, user=user).first()
        role = declared_value(member, "role", obj=membership, default=Membership.Role.MEMBER, path=path)
        _require(role in Membership.Role.values, f"{path}.role", "must be owner or member")
        accounts.membership_set(workspace=workspace, user=user, role=role)
        out_members.append({"email": user.email, "role": role})
    if out_members:
        out["members"] = out_members

    apps = document.get("apps", [])
    _require(isinstance(apps, list), "$.apps", "must be a list")
    out["apps"] = [_apply_app(workspace, spec, f"$.apps[{i}]") for i, spec in enumerate(apps)]

    for (level, key), section in _SECTIONS.items():
        if level == "workspace" and key in document:
            out[key] = section.apply(workspace=workspace, value=document[key], path=f"$.{key}")
    return out


def _apply_app(workspace: Workspace, spec: Any, path: str) -> dict[str, Any]:
    _require(isinstance(spec, dict), path, "each app must be an object")
    _check_keys(spec, _CORE_APP_KEYS, "app", path)
    name = required_text(spec, "name", path=path, message="an app name is required")
    found = App.objects.filter(workspace=workspace, name=name.strip()).first()
    created = found is None
    app = found or accounts.app_create(workspace=workspace, name=name)
    out: dict[str, Any] = {"name": app.name, "id": str(app.public_id), "created": created}

    keys = spec.get("api_keys", [])
    _require(isinstance(keys, list), f"{path}.api_keys", "must be a list of key names")
    out_keys = []
    for j, key_name in enumerate(keys):
        _require(
            isinstance(key_name, str) and key_name.strip(),
            f"{path}.api_keys[{j}]",
            "must be a key name",
        )
        existing = ApiKey.objects.filter(app=app, name=key_name.strip(), revoked_at__isnull=True).first()
        if existing is not None:
            out_keys.append({"name": existing.name, "prefix": existing.prefix, "created": False})
            continue
        api_key, secret = accounts.api_key_create(app=app, name=key_name)
        out_keys.append({"name": api_key.name, "prefix": api_key.prefix, "created": True, "secret": secret})
    out["api_keys"] = out_keys

    for (level, key), section in _SECTIONS.items():
        if level == "app" and key in spec:
            out[key] = section.apply(app=app, value=spec[key], path=f"{path}.{key}")
    return out
