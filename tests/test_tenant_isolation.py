"""Tenant isolation, generated from the URL configuration.

Every URL pattern is walked (`get_resolver()`) and filled with the objects of tenant B, then
requested as tenant A with every method a route may take (GET, POST, PUT, PATCH, DELETE): a user of
workspace A on the screens, app A's API key on /v1/, app A's write key, webhook token and API key on
the inbound endpoints (Segment, webhooks, Metronome, Kable). Screens answer 404 (or 403/405), the
API never shows B's data, and a digest of every row that is not A's (B's and everyone else's) is
the same after the attack as before it.

A URL parameter the matrix does not know how to fill FAILS the suite (register it in PARAMETERS),
and so does a route that is neither in the matrix nor in EXCLUDED (by exact route, with a reason):
every new endpoint or screen is covered without anyone remembering to write its isolation test.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from hub.models import ApiKey, App, Workspace
from hub.services import accounts
from tests.factories import IntegrationFactory

pytestmark = pytest.mark.django_db


@dataclass
class Tenant:
    """A workspace with a member, an app, an API key, a customer and a usage event."""

    marker: str  # in every name this tenant has, so a leak of any of them is visible
    user: object
    workspace: Workspace
    app: App
    api_key: ApiKey
    secret: str
    customer_id: str
    customer_token: str

    def identifiers(self) -> list[str]:
        """What no other tenant may ever see."""
        return [
            self.marker,
            str(self.app.public_id),
            self.workspace.slug,
            self.api_key.prefix,
            self.secret,
            self.customer_id,
            self.customer_token,
        ]


# How to fill each URL parameter with a tenant's object (screens and API alike).
PARAMETERS: dict[str, Callable[[Tenant], object]] = {
    "slug": lambda t: t.workspace.slug,
    "app_id": lambda t: t.app.public_id,
    "key_id": lambda t: t.api_key.pk,
    "customer_id": lambda t: t.customer_id,
    "integration_id": lambda t: _integration_of(t).pk,
    "destination_id": lambda t: _destination_of(t).pk,
    "subscription_id": lambda t: _destination_of(t).subscriptions.order_by("id").first().pk,
    "kind": lambda t: "metronome",  # /integrations/<kind>/new/
    "source_id": lambda t: _source_of(t).public_id,
    "mapping_id": lambda t: _source_of(t).mappings.order_by("id").first().pk,
    "id": lambda t: _metric_of(t).public_id,  # /v1/usage_metrics/<id>, /v1/usage_events/<id>/report
    "metric_id": lambda t: _metric_of(t).public_id,
    "token": lambda t: _source_of(t).webhook_token,  # /hooks/<token>: the URL is the credential
    "plan_id": lambda t: _plan_of(t).public_id,
    "membership_id": lambda t: t.workspace.memberships.order_by("id").first().pk,
    "invitation_id": lambda t: _invitation_of(t).pk,
}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _metric_of(t: Tenant):
    """The tenant's usage metric (events/), made on first use, counting its usage event."""
    from events.metrics.definitions import definition_validate
    from events.metrics.services import metric_create

    return t.app.metrics.first() or metric_create(
        app=t.app, definition=definition_validate(name=f"Metric {t.marker}", event_name=f"event-{t.marker}")
    )


def _plan_of(t: Tenant):
    """The tenant's plan, made on first use."""
    from hub.services.plans import plan_upsert

    return plan_upsert(app=t.app, name=f"Plan {t.marker}", amount=9)[0]


def _invitation_of(t: Tenant):
    """An open invitation to the tenant's workspace, made on first use by its owner."""
    from hub.models import Invitation
    from hub.services.members import invitation_create

    open_one = Invitation.objects.filter(workspace=t.workspace, revoked_at__isnull=True).first()
    return (
        open_one
        or invitation_create(
            workspace=t.workspace, email=f"invited-{t.marker}@example.com", role="member", by=t.user
        )[0]
    )


def _source_of(t: Tenant):
    """The tenant's Segment source (integrations/sources), made on first use with the default mappings."""
    from integrations.sources.services import source_create

    return t.app.sources.first() or source_create(app=t.app, name=f"Source {t.marker}")


def _integration_of(t: Tenant):
    """The tenant's Segment integration (integrations/), made on first use, pointing at a closed port."""
    return t.workspace.integrations.filter(name=f"Segment {t.marker}").first() or IntegrationFactory(
        workspace=t.workspace, name=f"Segment {t.marker}", write_key=f"wk_{t.marker}", apps=[t.app]
    )


def _destination_of(t: Tenant):
    """The tenant's Metronome destination (integrations/), made on first use with its default
    subscription, pointing at a closed port."""
    from integrations.destinations import destination_save
    from integrations.models import Integration

    found = Integration.objects.filter(workspace=t.workspace, kind="metronome").first()
    return found or destination_save(
        workspace=t.workspace, kind="metronome", name=f"Metronome {t.marker}", secret=f"mt_{t.marker}",
        url="http://127.0.0.1:9", apps=[t.app],
    )  # fmt: skip


# Routes left out of the matrix, each by its exact route, with the reason.
EXCLUDED: dict[str, str] = {
    "api/schema/": "the OpenAPI document: the API's shape, no tenant data",
    "api/docs/": "Swagger UI page: no tenant data",
    "api/redoc/": "ReDoc page: no tenant data",
    "healthz": "liveness probe: no tenant data",
    "readyz": "readiness probe: no tenant data",
    "metrics": "the operators' Prometheus figures (every tenant's sources and integrations by id, no "
    "names or data), Bearer HUB_METRICS_TOKEN only: tests/hub/test_metrics_endpoint.py",
    "login/": "the login form: no tenant data, throttled and tested in tests/hub/test_login_throttle.py",
    "logout/": "logs the caller out: no tenant data",
    "favicon.ico": "a redirect to the static icon: no tenant data",
    "invite/<str:token>/": "an invitation link: the token is the credential (only its hash is stored), "
    "not a workspace's object; tested in tests/hub/test_member_screens.py",
}
# Whole URL configurations that are not the project's own, by their include() prefix.
EXCLUDED_INCLUDES: dict[str, str] = {
    "admin/": "Django's admin site (one route per model and action): the operators' console, staff only, "
    "sees every tenant by design",
}

API_PREFIX = "v1/"
INBOUND_PREFIXES = ("segment/", "hooks/", "metronome/", "kable/")
_PARAM = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>\w+)>")


@dataclass(frozen=True)
class Route:
    route: str  # e.g. "apps/<str:app_id>/settings/"
    regex: bool  # a re_path: the matrix cannot build its URLs

    @property
    def params(self) -> list[str]:
        return [m["name"] for m in _PARAM.finditer(self.route)]

    @property
    def is_api(self) -> bool:
        return self.route.startswith(API_PREFIX)

    @property
    def is_inbound(self) -> bool:
        """Segment's tracking API, webhook URLs, Metronome's and Kable's ingest."""
        return self.route.startswith(INBOUND_PREFIXES)

    def url(self, values: dict[str, object]) -> str:
        return "/" + _PARAM.sub(lambda m: str(values[m["name"]]), self.route)

    def __str__(self) -> str:
        return "/" + self.route


def _walk(patterns, prefix: str = "") -> Iterator[Route]:
    for p in patterns:
        route = prefix + str(p.pattern)
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, route)
        elif isinstance(p, URLPattern):
            yield Route(route=route, regex=not hasattr(p.pattern, "_route"))


def _exclusion(route: Route) -> str | None:
    if route.route in EXCLUDED:
        return EXCLUDED[route.route]
    return next((why for prefix, why in EXCLUDED_INCLUDES.items() if route.route.startswith(prefix)), None)


ALL_ROUTES = sorted(set(_walk(get_resolver().url_patterns)), key=str)
ROUTES = sorted({r for r in _walk(get_resolver().url_patterns) if not _exclusion(r)}, key=str)
SCREENS_WITH_OBJECTS = [r for r in ROUTES if not (r.is_api or r.is_inbound) and r.params]
SCREENS_WITHOUT_OBJECTS = [r for r in ROUTES if not (r.is_api or r.is_inbound) and not r.params]
API_ROUTES = [r for r in ROUTES if r.is_api]
INBOUND_ROUTES = [r for r in ROUTES if r.is_inbound]
MATRIX = {
    "screens with objects": SCREENS_WITH_OBJECTS,
    "screens without objects": SCREENS_WITHOUT_OBJECTS,
    "API": API_ROUTES,
    "inbound": INBOUND_ROUTES,
}


def _unfillable(route: Route) -> str | None:
    if route.regex:
        return f"{route} is a regular-expression route: use path(), or add it to EXCLUDED with a reason."
    unknown = [p for p in route.params if p not in PARAMETERS]
    if unknown:
        return (
            f"{route} has URL parameter(s) {', '.join(unknown)} that the tenant-isolation matrix cannot "
            f"fill. Register each in PARAMETERS in {__name__.replace('.', '/')}.py (how to get a "
            "tenant's value), or add the URL to EXCLUDED with a reason."
        )
    return None


def _owner_combinations(route: Route) -> list[dict[str, str]]:
    """Every mix of A's and B's objects in which at least one is B's: {param: "A" | "B"}."""
    combos = itertools.product("AB", repeat=len(route.params))
    return [dict(zip(route.params, c, strict=True)) for c in combos if "B" in c]


# --- The tenants --------------------------------------------------------------------------------


def _tenant(label: str) -> Tenant:
    marker = f"tenant{label}{secrets.token_hex(4)}"
    user, _ = accounts.user_get_or_create_by_email(email=f"{marker}@example.com")  # no password hashing
    workspace = accounts.workspace_create(name=f"Workspace {marker}", owner=user)
    app = accounts.app_create(workspace=workspace, name=f"App {marker}")
    api_key, secret = accounts.api_key_create(app=app, name=f"Key {marker}")
    # The rest through the public API, as a client would make it.
    client = Client(headers={"Authorization": f"Bearer {secret}"})
    identified = client.post(
        "/v1/identify",
        {"platformId": f"shop-{marker}", "name": f"Customer {marker}", "email": f"{marker}@example.com"},
        content_type="application/json",
    )
    assert identified.status_code == 200, identified.content
    customer = client.get("/v1/customer", {"id": f"shop-{marker}"}).json()["customer"]
    event = client.post(
        "/v1/usage_events",
        {"eventName": f"event-{marker}", "eventId": f"evt-{marker}", "customerId": f"shop-{marker}"},
        content_type="application/json",
    )
    assert event.status_code < 300, event.content
    return Tenant(
        marker, user, workspace, app, api_key, secret, customer["id"], identified.json()["apiToken"]
    )


@pytest.fixture
def tenants() -> tuple[Tenant, Tenant]:
    return _tenant("A"), _tenant("B")


def _values(route: Route, owners: dict[str, str], a: Tenant, b: Tenant) -> dict[str, object]:
    return {p: PARAMETERS[p](a if owners.get(p, "A") == "A" else b) for p in route.params}


def _workspace_lookup(model, depth: int = 4) -> str | None:
    """The ORM path from `model` to its Workspace ("app__workspace"), "pk" for Workspace, or None."""
    if model is Workspace:
        return "pk"
    paths = [("", model)]
    for _ in range(depth):
        further = []
        for prefix, current in paths:
            for f in current._meta.concrete_fields:
                if f.is_relation and f.related_model is not None:
                    path = f"{prefix}{f.name}"
                    if f.related_model is Workspace:
                        return path
                    further.append((path + "__", f.related_model))
        paths = further
    return None


_OWN_MODELS = [
    model
    for label in ("hub", "events", "integrations", "sources")
    for model in apps.get_app_config(label).get_models(include_auto_created=True)
]


def _digest_not_of(a: Tenant) -> dict[str, str]:
    """A digest per model of every row that is not tenant A's: B's, and everyone else's.

    A's rows are those of the workspaces A's user belongs to (A may change its own data), and A's
    user; all the rest must stay the same whatever A sends.
    """
    own = list(Workspace.objects.filter(memberships__user=a.user).values_list("pk", flat=True))
    digest = {}
    for model in [*_OWN_MODELS, get_user_model()]:
        rows = model._base_manager.all()
        if model is get_user_model():
            rows = rows.exclude(pk=a.user.pk)
        elif (lookup := _workspace_lookup(model)) is not None:
            rows = rows.exclude(**{f"{lookup}__in": own})
        values = sorted(map(repr, rows.values()))
        digest[model._meta.label] = (
            f"{len(values)} rows, " + hashlib.sha256("\n".join(values).encode()).hexdigest()
        )
    return digest


def _assert_unchanged(before: dict[str, str], after: dict[str, str], what: str) -> None:
    changed = {label: (before[label], after[label]) for label in before if before[label] != after[label]}
    assert not changed, f"{what} changed data that is not A's: {changed}"


def _assert_no_leak(body: bytes, other: Tenant, what: str) -> None:
    text = body.decode(errors="replace")
    for identifier in other.identifiers():
        assert identifier not in text, f"{what} shows tenant B's {identifier!r}"


# --- The matrix ---------------------------------------------------------------------------------


def test_every_url_is_in_the_matrix_or_excluded_with_a_reason():
    """A new route is either attacked by the matrix (its parameters fillable) or excluded by name."""
    problems = [msg for r in ROUTES if (msg := _unfillable(r))]
    assert not problems, "\n".join(problems)
    in_matrix = [r for routes in MATRIX.values() for r in routes]
    assert len(in_matrix) == len(set(in_matrix)) == len(ROUTES)
    uncovered = [str(r) for r in ALL_ROUTES if r not in in_matrix and not _exclusion(r)]
    assert not uncovered, f"routes neither in the matrix nor in EXCLUDED: {uncovered}"
    assert all(routes for routes in MATRIX.values())  # the walk found the URL configuration
    assert all(why.strip() for why in [*EXCLUDED.values(), *EXCLUDED_INCLUDES.values()])
    stale = [route for route in EXCLUDED if not any(r.route == route for r in ALL_ROUTES)]
    assert not stale, f"EXCLUDED names routes that no longer exist: {stale}"


def test_the_digest_sees_a_change_to_another_tenant_and_ignores_a_change_to_ones_own(tenants):
    """The control: the digest is not blind to B's rows, nor does it flag A changing its own."""
    a, b = tenants
    before = _digest_not_of(a)
    App.objects.filter(pk=a.app.pk).update(name="renamed by A")
    assert _digest_not_of(a) == before
    App.objects.filter(pk=b.app.pk).update(name="renamed")
    assert _digest_not_of(a)["hub.App"] != before["hub.App"]


@pytest.mark.parametrize("route", SCREENS_WITH_OBJECTS, ids=str)
def test_screens_answer_not_found_for_another_workspace_objects(route, tenants):
    """Every method, every mix of A's and B's objects in the URL: 403/404/405, nothing shown, nothing changed."""
    a, b = tenants
    if problem := _unfillable(route):
        pytest.fail(problem)
    urls = [route.url(_values(route, owners, a, b)) for owners in _owner_combinations(route)]
    client = Client()
    client.force_login(a.user)
    before = _digest_not_of(a)
    for url, method in itertools.product(urls, METHODS):
        response = client.generic(method, url)
        assert response.status_code in (403, 404, 405), f"{method} {url} as A: {response.status_code}"
        _assert_no_leak(response.content, b, f"{method} {url}")
        _assert_unchanged(before, _digest_not_of(a), f"{method} {url} as A")


@pytest.mark.parametrize("route", SCREENS_WITH_OBJECTS, ids=str)
def test_screens_are_found_with_own_objects(route, tenants):
    """The control: the same URLs built from A's own objects are not 404, so the 404s above are isolation."""
    a, b = tenants
    if problem := _unfillable(route):
        pytest.fail(problem)
    url = route.url(_values(route, {}, a, b))
    client = Client()
    client.force_login(a.user)
    statuses = [client.get(url).status_code]
    if statuses[0] == 405:
        statuses.append(client.post(url).status_code)
    assert statuses[-1] in (200, 302), f"{url} as its owner: {statuses}"


@pytest.mark.parametrize("route", SCREENS_WITHOUT_OBJECTS, ids=str)
def test_screens_without_objects_show_nothing_of_another_workspace(route, tenants):
    a, b = tenants
    client = Client()
    client.force_login(a.user)
    before = _digest_not_of(a)
    for method in METHODS:
        response = client.generic(method, route.url({}))
        assert response.status_code < 500, f"{method} {route}"
        _assert_no_leak(response.content, b, f"{method} {route}")
        _assert_unchanged(before, _digest_not_of(a), f"{method} {route} as A")
    response = client.get(route.url({}), follow=True)
    assert response.status_code == 200
    _assert_no_leak(response.content, b, f"GET {route}")


def _api_variants(a: Tenant, b: Tenant) -> dict[str, dict]:
    """Requests with A's key that name B's objects every way the API takes a reference."""
    refs = {
        "id": b.customer_id,
        "customerId": b.customer_id,
        "customer_id": b.customer_id,
        "appId": str(b.app.public_id),
    }
    return {
        "plain": {},
        "query naming B": {"query": refs},
        "body naming B": {
            "body": {
                **refs,
                "eventName": "x",
                "eventId": f"probe-{a.marker}",
                "platformId": f"probe-{a.marker}",
            }
        },
        "batch naming B": {"body": {"events": [{**refs, "eventName": "x", "eventId": f"probe2-{a.marker}"}]}},
    }


@pytest.mark.parametrize("route", API_ROUTES, ids=str)
def test_api_with_app_a_key_never_shows_or_changes_app_b_data(route, tenants):
    a, b = tenants
    if problem := _unfillable(route):
        pytest.fail(problem)
    client = Client(headers={"X-Mantle-App-Id": str(a.app.public_id), "X-Mantle-App-Api-Key": a.secret})
    requests = [
        (owners, route.url(_values(route, owners, a, b)), method, variant, request)
        for owners in _owner_combinations(route) or [{}]
        for method in METHODS
        for variant, request in _api_variants(a, b).items()
    ]
    before = _digest_not_of(a)
    for owners, url, method, variant, request in requests:
        what = f"{method} {url} ({variant})"
        query = (
            "?" + "&".join(f"{k}={v}" for k, v in request.get("query", {}).items())
            if request.get("query")
            else ""
        )
        response = client.generic(
            method, url + query, data=json.dumps(request.get("body", {})), content_type="application/json"
        )
        assert response.status_code < 500, what
        if owners:  # the path names one of B's objects
            assert response.status_code in (401, 403, 404, 405), f"{what}: {response.status_code}"
        _assert_no_leak(response.content, b, what)
        _assert_unchanged(before, _digest_not_of(a), f"{what} as A")


@pytest.mark.parametrize("route", API_ROUTES, ids=str)
def test_api_refuses_another_app_customer_token(route, tenants):
    a, b = tenants
    if problem := _unfillable(route):
        pytest.fail(problem)
    url = route.url(_values(route, {}, a, b))
    before = _digest_not_of(a)
    for method in METHODS:
        for headers in (
            {"X-Mantle-App-Id": str(a.app.public_id), "X-Mantle-Customer-Api-Token": b.customer_token},
            {"Authorization": f"Bearer {a.secret}", "X-Mantle-Customer-Api-Token": b.customer_token},
        ):
            response = Client(headers=headers).generic(
                method, url, data="{}", content_type="application/json"
            )
            assert response.status_code in (401, 405), (
                f"{method} {url} with {list(headers)}: {response.status_code}"
            )
            _assert_no_leak(response.content, b, f"{method} {url}")
    _assert_unchanged(before, _digest_not_of(a), f"{route} with B's customer token")


def _inbound_requests(route: Route, a: Tenant, b: Tenant) -> list[tuple[dict, object]]:
    """A's credentials for `route`, and bodies naming B's customer, app and shop every way they can."""
    source = _source_of(a)
    names_b = {"shop": b.customer_id, "customerId": b.customer_id, "appId": str(b.app.public_id)}
    message = {
        "type": "track", "event": f"event-{b.marker}", "userId": b.customer_id, "messageId": f"m-{a.marker}",
        "properties": names_b, "context": {"groupId": b.customer_id}, "traits": names_b,
        "groupId": b.customer_id, "previousId": b.customer_id,
    }  # fmt: skip
    if route.route.startswith("segment/"):
        basic = base64.b64encode(f"{source.write_key}:".encode()).decode()
        body = {"batch": [message]} if route.route.endswith("batch") else message
        return [({"Authorization": f"Basic {basic}"}, body)]
    if route.route.startswith("hooks/"):
        contact = {"type": "Send Contact", "message_id": f"c-{a.marker}", "user_id": b.customer_id,
                   "email": f"{b.marker}@example.com", "company": {"id": b.customer_id}}  # fmt: skip
        return [({}, [message]), ({}, contact)]
    if route.route.startswith("metronome/"):
        event = {"transaction_id": f"t-{a.marker}", "customer_id": b.customer_id, "event_type": f"event-{b.marker}",
                 "timestamp": "2024-03-01T12:00:00Z", "properties": names_b}  # fmt: skip
        return [({"Authorization": f"Bearer {a.secret}"}, [event])]
    if route.route.startswith("kable/"):
        event = {"clientId": b.customer_id, "transactionId": f"k-{a.marker}", "timestamp": "2024-03-01T12:00:00Z",
                 "data": {"eventName": f"event-{b.marker}", **names_b}}  # fmt: skip
        return [
            ({"KABLE-CLIENT-ID": str(a.app.public_id), "KABLE-CLIENT-SECRET": a.secret}, [event]),
            ({"KABLE-CLIENT-ID": str(b.app.public_id), "KABLE-CLIENT-SECRET": a.secret}, [event]),
        ]
    pytest.fail(f"{route}: an inbound route the matrix has no credentials for; add it to _inbound_requests")


@pytest.mark.parametrize("route", INBOUND_ROUTES, ids=str)
def test_inbound_endpoints_with_a_credentials_never_store_into_b(route, tenants):
    """A's write key, webhook token or API key, with bodies naming B's objects, store only into A's app,
    once the inbox is processed too."""
    from integrations.sources.processing import inbox_process_pending
    from integrations.sources.services import source_cache_clear

    a, b = tenants
    if problem := _unfillable(route):
        pytest.fail(problem)
    source_cache_clear()
    url = route.url(_values(route, {}, a, b))
    _source_of(b)
    before = _digest_not_of(a)
    rows_before = sum(m._base_manager.count() for m in _OWN_MODELS)
    statuses = []
    for headers, body in _inbound_requests(route, a, b):
        for method in METHODS:
            response = Client(headers=headers).generic(
                method, url, data=json.dumps(body), content_type="application/json"
            )
            what = f"{method} {url} with A's credentials"
            assert response.status_code < 500, what
            statuses.append(response.status_code)
            _assert_no_leak(response.content, b, what)
    inbox_process_pending()
    _assert_unchanged(before, _digest_not_of(a), f"{route} with A's credentials")
    # The controls: A's credentials were accepted, and what they sent was stored (so, into A's app).
    assert 200 in statuses, f"{route}: A's own credentials were never accepted, so the check proves nothing"
    assert sum(m._base_manager.count() for m in _OWN_MODELS) > rows_before, f"{route} stored nothing"


def test_the_leak_check_sees_identifiers_where_the_api_shows_them(tenants):
    """The control: A's own identifiers do appear in A's answers, so their absence above means something."""
    a, _ = tenants
    client = Client(headers={"Authorization": f"Bearer {a.secret}"})
    with pytest.raises(AssertionError):
        _assert_no_leak(client.get("/v1/app").content, a, "GET /v1/app")
    with pytest.raises(AssertionError):
        _assert_no_leak(client.get("/v1/customer", {"id": a.customer_id}).content, a, "GET /v1/customer")
