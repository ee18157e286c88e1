"""Tenant isolation, generated from the URL configuration.

Every URL pattern is walked (`get_resolver()`) and filled with the objects of tenant B, then
requested as tenant A: a user of workspace A on the screens, app A's API key on /v1/. Screens
answer 404 (or 403/405) and change nothing; the API never shows B's data. A URL parameter the
matrix does not know how to fill FAILS the suite: register it in PARAMETERS below, and every new
endpoint is covered without anyone remembering to write its isolation test.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from django.apps import apps
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from hub import services
from hub.models import ApiKey, App, Workspace

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
    "source_id": lambda t: _source_of(t).public_id,
    "mapping_id": lambda t: _source_of(t).mappings.order_by("id").first().pk,
    "id": lambda t: _metric_of(t).public_id,  # /v1/usage_metrics/<id>, /v1/usage_events/<id>/report
    "metric_id": lambda t: _metric_of(t).public_id,
}


def _metric_of(t: Tenant):
    """The tenant's usage metric (events/), made on first use, counting its usage event."""
    from events.metric_services import metric_create
    from events.metrics import definition_validate

    return t.app.metrics.first() or metric_create(
        app=t.app, definition=definition_validate(name=f"Metric {t.marker}", event_name=f"event-{t.marker}")
    )


def _source_of(t: Tenant):
    """The tenant's Segment source (integrations/sources), made on first use with the default mappings."""
    from integrations.sources.services import source_create

    return t.app.sources.first() or source_create(app=t.app, name=f"Source {t.marker}")


def _integration_of(t: Tenant):
    """The tenant's Segment integration (integrations/), made on first use, pointing at a closed port."""
    from integrations.models import Integration

    integration, _ = Integration.objects.get_or_create(
        workspace=t.workspace,
        name=f"Segment {t.marker}",
        defaults={"write_key": f"wk_{t.marker}", "region": "custom", "custom_host": "http://127.0.0.1:9"},
    )
    integration.apps.add(t.app)
    return integration


# URLs left out of the matrix, by route prefix, each with the reason.
EXCLUDED: dict[str, str] = {
    "admin/": "Django admin: the operators' console, staff only, sees every tenant by design",
    "static/": "static files (served by WhiteNoise, not views): no tenant data",
    "api/schema/": "the OpenAPI document: the API's shape, no tenant data",
    "api/docs/": "Swagger UI page: no tenant data",
    "api/redoc/": "ReDoc page: no tenant data",
    "healthz": "liveness probe: no tenant data",
    "readyz": "readiness probe: no tenant data",
    "login/": "the login form: no tenant data, throttled and tested in tests/hub/test_login_throttle.py",
    "logout/": "logs the caller out: no tenant data",
    "segment/": "Segment tracking API: the write key picks the source; tests/integrations/sources",
    "hooks/": "webhook URLs: the token in the URL picks the source; tests/integrations/sources",
    "metronome/": "Metronome-compatible ingest: the Bearer API key picks the app; tests/integrations/sources",
    "kable/": "Kable-compatible ingest: KABLE-CLIENT-ID/SECRET pick the app; tests/integrations/sources",
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
    return next((why for prefix, why in EXCLUDED.items() if route.route.startswith(prefix)), None)


ALL_ROUTES = sorted(set(_walk(get_resolver().url_patterns)), key=str)
ROUTES = sorted({r for r in _walk(get_resolver().url_patterns) if not _exclusion(r)}, key=str)
SCREENS_WITH_OBJECTS = [r for r in ROUTES if not r.is_api and r.params]
SCREENS_WITHOUT_OBJECTS = [r for r in ROUTES if not r.is_api and not r.params]
API_ROUTES = [r for r in ROUTES if r.is_api]


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


def _cases(routes: list[Route], methods=("GET", "POST")) -> list:
    return [
        pytest.param(r, owners, method, id=f"{method} {r} {owners}")
        for r in routes
        for owners in _owner_combinations(r)
        for method in methods
    ]


# --- The tenants --------------------------------------------------------------------------------


def _tenant(label: str) -> Tenant:
    marker = f"tenant{label}{secrets.token_hex(4)}"
    user, _ = services.user_get_or_create_by_email(email=f"{marker}@example.com")  # no password hashing
    workspace = services.workspace_create(name=f"Workspace {marker}", owner=user)
    app = services.app_create(workspace=workspace, name=f"App {marker}")
    api_key, secret = services.api_key_create(app=app, name=f"Key {marker}")
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


def _snapshot() -> dict:
    """Every row of the project's own models: a foreign request must not change any."""
    rows = {}
    for label in ("hub", "events", "integrations", "sources"):
        for model in apps.get_app_config(label).get_models():
            rows[model._meta.label] = sorted(map(repr, model._base_manager.values()))
    return rows


def _assert_no_leak(body: bytes, other: Tenant, what: str) -> None:
    text = body.decode(errors="replace")
    for identifier in other.identifiers():
        assert identifier not in text, f"{what} shows tenant B's {identifier!r}"


# --- The matrix ---------------------------------------------------------------------------------


def test_every_url_is_in_the_matrix_or_excluded_with_a_reason():
    problems = [msg for r in ROUTES if (msg := _unfillable(r))]
    assert not problems, "\n".join(problems)
    assert SCREENS_WITH_OBJECTS and API_ROUTES  # the walk found the URL configuration
    assert all(why.strip() for why in EXCLUDED.values())


@pytest.mark.parametrize(("route", "owners", "method"), _cases(SCREENS_WITH_OBJECTS))
def test_screens_answer_not_found_for_another_workspace_objects(route, owners, method, tenants):
    a, b = tenants
    if problem := _unfillable(route):
        pytest.fail(problem)
    url = route.url(_values(route, owners, a, b))
    client = Client()
    client.force_login(a.user)
    before = _snapshot()
    response = client.generic(method, url)
    assert response.status_code in (403, 404, 405), f"{method} {url} as A: {response.status_code}"
    _assert_no_leak(response.content, b, f"{method} {url}")
    assert _snapshot() == before, f"{method} {url} as A changed data"


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


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("route", API_ROUTES, ids=str)
def test_api_with_app_a_key_never_shows_app_b_data(route, method, tenants):
    a, b = tenants
    if problem := _unfillable(route):
        pytest.fail(problem)
    client = Client(headers={"X-Mantle-App-Id": str(a.app.public_id), "X-Mantle-App-Api-Key": a.secret})
    for owners in _owner_combinations(route) or [{}]:
        url = route.url(_values(route, owners, a, b))
        for variant, request in _api_variants(a, b).items():
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


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("route", API_ROUTES, ids=str)
def test_api_refuses_another_app_customer_token(route, method, tenants):
    a, b = tenants
    if problem := _unfillable(route):
        pytest.fail(problem)
    url = route.url(_values(route, {}, a, b))
    for headers in (
        {"X-Mantle-App-Id": str(a.app.public_id), "X-Mantle-Customer-Api-Token": b.customer_token},
        {"Authorization": f"Bearer {a.secret}", "X-Mantle-Customer-Api-Token": b.customer_token},
    ):
        response = Client(headers=headers).generic(method, url, data="{}", content_type="application/json")
        assert response.status_code in (401, 405), (
            f"{method} {url} with {list(headers)}: {response.status_code}"
        )
        _assert_no_leak(response.content, b, f"{method} {url}")


def test_the_leak_check_sees_identifiers_where_the_api_shows_them(tenants):
    """The control: A's own identifiers do appear in A's answers, so their absence above means something."""
    a, _ = tenants
    client = Client(headers={"Authorization": f"Bearer {a.secret}"})
    with pytest.raises(AssertionError):
        _assert_no_leak(client.get("/v1/app").content, a, "GET /v1/app")
    with pytest.raises(AssertionError):
        _assert_no_leak(client.get("/v1/customer", {"id": a.customer_id}).content, a, "GET /v1/customer")
