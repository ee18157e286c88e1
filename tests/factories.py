"""factory_boy factories for the rows tests need as a given, one per model, grouped by package.

`XFactory()` makes a valid row with every required field filled (and its parents made too);
pass only what the test is about: `PlanFactory(app=app, amount=50)`. A factory writes the row
directly, as a fixture would: when the way a row comes about is what a test checks (an identify
that records an activity, a source whose write key is hashed), call the service instead. See
docs/architecture.md, Testing.
"""

from datetime import UTC, datetime

import factory
from django.contrib.auth import get_user_model

from events.models import Metric, PlanUsageLimit, UsageEvent
from hub.models import App, Contact, Customer, Membership, Plan, Workspace
from hub.services import accounts
from integrations.models import Attempt, Integration
from integrations.sources.models import Source

# --- hub: the core -----------------------------------------------------------------------------


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}@example.com")
    email = factory.LazyAttribute(lambda o: o.username)
    password = factory.django.Password("correct-horse-battery")


class WorkspaceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Workspace

    name = factory.Sequence(lambda n: f"Workspace {n}")
    slug = factory.Sequence(lambda n: f"workspace-{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    workspace = factory.SubFactory(WorkspaceFactory)
    user = factory.SubFactory(UserFactory)
    role = Membership.Role.OWNER


class AppFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = App

    workspace = factory.SubFactory(WorkspaceFactory)
    name = factory.Sequence(lambda n: f"App {n}")


def api_key_for(app, name="test key"):
    """Create a key through the service (it hashes the secret); return (ApiKey, secret)."""
    return accounts.api_key_create(app=app, name=name)


class CustomerFactory(factory.django.DjangoModelFactory):
    """A customer row as is (no installation, no activity: `customer_identify` records those).
    `placeholder=True` makes one that only a usage event has named so far."""

    class Meta:
        model = Customer

    class Params:
        placeholder = factory.Trait(is_placeholder=True, name="")

    app = factory.SubFactory(AppFactory)
    platform_id = factory.Sequence(lambda n: f"shop-{n}")
    name = factory.Sequence(lambda n: f"Shop {n}")


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    customer = factory.SubFactory(CustomerFactory)
    email = factory.Sequence(lambda n: f"contact{n}@example.com")


class PlanFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Plan

    app = factory.SubFactory(AppFactory)
    name = factory.Sequence(lambda n: f"Plan {n}")
    amount = 10


# --- events: usage events and metrics ----------------------------------------------------------


class UsageEventFactory(factory.django.DjangoModelFactory):
    """A stored usage event, written directly (no rollup batch: `usage_events_ingest` makes those)."""

    class Meta:
        model = UsageEvent

    app = factory.SubFactory(AppFactory)
    customer = factory.SubFactory(CustomerFactory, app=factory.SelfAttribute("..app"))
    event_id = factory.Sequence(lambda n: f"event-{n}")
    event_name = "api_call"
    timestamp = factory.LazyFunction(lambda: datetime.now(UTC))


class MetricFactory(factory.django.DjangoModelFactory):
    """A metric row (status `building`, never built: `metric_create` also enqueues its build)."""

    class Meta:
        model = Metric

    app = factory.SubFactory(AppFactory)
    name = factory.Sequence(lambda n: f"Metric {n}")
    event_name = "api_call"
    aggregation = Metric.Aggregation.COUNT


class PlanUsageLimitFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PlanUsageLimit

    plan = factory.SubFactory(PlanFactory)
    metric = factory.SubFactory(MetricFactory, app=factory.SelfAttribute("..plan.app"))
    limit = 100
    thresholds = factory.LazyFunction(lambda: [80, 100])


# --- integrations: destinations and sources ----------------------------------------------------


class IntegrationFactory(factory.django.DjangoModelFactory):
    """A Segment integration of a workspace; `apps=[...]` subscribes apps. The default host is a
    closed local port: point `custom_host` at a stand-in to receive what it sends."""

    class Meta:
        model = Integration
        skip_postgeneration_save = True

    workspace = factory.SubFactory(WorkspaceFactory)
    kind = Integration.Kind.SEGMENT
    name = factory.Sequence(lambda n: f"Segment {n}")
    write_key = factory.Sequence(lambda n: f"wk_{n}")
    region = Integration.Region.CUSTOM
    custom_host = "http://127.0.0.1:9"

    @factory.post_generation
    def apps(self, create, extracted, **kwargs):
        if create and extracted:
            self.apps.add(*extracted)


class AttemptFactory(factory.django.DjangoModelFactory):
    """One recorded request to a destination."""

    class Meta:
        model = Attempt

    integration = factory.SubFactory(IntegrationFactory)
    url = "http://127.0.0.1:9/v1/batch"
    outcome = Attempt.Outcome.DELIVERED


class SourceFactory(factory.django.DjangoModelFactory):
    """A `sources.Source` row as is, without credentials (the `metronome` and `kable` kind's shape).
    A Segment source with a working write key and webhook URL comes from `source_create` (the
    `source` fixture)."""

    class Meta:
        model = Source

    app = factory.SubFactory(AppFactory)
    kind = Source.Kind.METRONOME
    name = factory.Sequence(lambda n: f"Source {n}")
