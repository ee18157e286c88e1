"""hub_apply changes only what a document says: in every section, re-applying an entry with only
its name (or a few fields) keeps what it omits, and `null` clears only what can be cleared."""

import pytest

from events.models import Metric, PlanUsageLimit
from hub.config_apply import ConfigError, config_apply
from hub.models import Membership, Plan
from integrations.models import Integration
from integrations.sources.models import Source

pytestmark = pytest.mark.django_db


def test_a_member_listed_by_email_only_keeps_their_role():
    config_apply(document={"workspace": "Acme", "members": [{"email": "lead@example.com", "role": "owner"}]})
    config_apply(document={"workspace": "Acme", "members": [{"email": "lead@example.com"}]})
    assert Membership.objects.get(user__email="lead@example.com").role == "owner"
    config_apply(document={"workspace": "Acme", "members": [{"email": "new@example.com"}]})
    assert Membership.objects.get(user__email="new@example.com").role == "member"
    with pytest.raises(ConfigError, match=r"\$\.members\[0\]\.role: cannot be null"):
        config_apply(document={"workspace": "Acme", "members": [{"email": "lead@example.com", "role": None}]})


def test_a_plan_named_alone_keeps_its_price_currency_and_interval():
    full = {"name": "Pro", "price": 99, "currency": "EUR", "interval": "ANNUAL"}
    config_apply(document={"workspace": "Acme", "apps": [{"name": "Upsell", "plans": [full]}]})
    config_apply(document={"workspace": "Acme", "apps": [{"name": "Upsell", "plans": [{"name": "Pro"}]}]})
    plan = Plan.objects.get(name="Pro")
    assert (plan.amount, plan.currency, plan.interval) == (99, "EUR", "ANNUAL")
    config_apply(
        document={"workspace": "Acme", "apps": [{"name": "Upsell", "plans": [{"name": "Pro", "price": 79}]}]}
    )
    plan.refresh_from_db()
    assert (plan.amount, plan.currency, plan.interval) == (79, "EUR", "ANNUAL")
    config_apply(document={"workspace": "Acme", "apps": [{"name": "Upsell", "plans": [{"name": "Free"}]}]})
    free = Plan.objects.get(name="Free")
    assert (free.amount, free.currency, free.interval) == (0, "USD", "EVERY_30_DAYS")


def _metrics_doc(*metrics):
    return {
        "workspace": "Acme",
        "apps": [{"name": "Upsell", "plans": [{"name": "Basic"}], "metrics": list(metrics)}],
    }


def test_a_metric_named_alone_keeps_its_definition_and_limits():
    full = {
        "name": "GPU", "event_name": "gpu_used", "aggregation": "sum", "property": "seconds",
        "group_by": "region", "filters": [{"property": "tier", "op": "eq", "value": "pro"}],
        "limits": [{"plan": "Basic", "limit": 1000, "thresholds": [50, 90]}],
    }  # fmt: skip
    config_apply(document=_metrics_doc(full))
    before = Metric.objects.get(name="GPU")
    config_apply(document=_metrics_doc({"name": "GPU"}))
    metric = Metric.objects.get(name="GPU")
    assert (metric.event_name, metric.aggregation, metric.property, metric.group_by) == (
        "gpu_used", "sum", "seconds", "region",
    )  # fmt: skip
    assert metric.filters == before.filters and metric.filters[0]["value"] == "pro"
    assert metric.version == before.version  # nothing changed: no rebuild
    limit = PlanUsageLimit.objects.get(metric=metric)
    assert (limit.limit, limit.thresholds) == (1000, [50, 90])

    # A limit's omitted thresholds are kept; `"limit": null` removes it; null clears group_by.
    config_apply(document=_metrics_doc({"name": "GPU", "limits": [{"plan": "Basic", "limit": 2000}]}))
    limit.refresh_from_db()
    assert (limit.limit, limit.thresholds) == (2000, [50, 90])
    config_apply(
        document=_metrics_doc({"name": "GPU", "group_by": None, "limits": [{"plan": "Basic", "limit": None}]})
    )
    metric.refresh_from_db()
    assert metric.group_by == "" and metric.property == "seconds"
    assert not PlanUsageLimit.objects.filter(metric=metric).exists()
    with pytest.raises(ConfigError, match=r"metrics\[0\]\.event_name: cannot be null"):
        config_apply(document=_metrics_doc({"name": "GPU", "event_name": None}))


def _sources_doc(*sources):
    return {"workspace": "Acme", "apps": [{"name": "Upsell", "sources": list(sources)}]}


def test_a_source_and_its_mapping_named_alone_keep_their_secret_state_and_rule():
    gpu = {
        "name": "GPU", "trigger": 'type = "track"', "action": "usage_event", "enabled": False,
        "fields": {"event_name": {"literal": "gpu_used"}, "customer_id": {"path": "$.userId"}},
    }  # fmt: skip
    config_apply(
        document=_sources_doc(
            {"name": "Segment", "shared_secret": "s3cret", "enabled": False, "mappings": [gpu]}
        )
    )
    config_apply(document=_sources_doc({"name": "Segment"}))
    source = Source.objects.get(name="Segment")
    assert (source.shared_secret, source.enabled) == ("s3cret", False)
    mapping = source.mappings.get(name="GPU")
    assert (mapping.trigger, mapping.action, mapping.enabled) == (gpu["trigger"], "usage_event", False)

    # A mapping named with one field changes that field only; null clears the shared secret.
    config_apply(
        document=_sources_doc(
            {"name": "Segment", "shared_secret": None, "mappings": [{"name": "GPU", "enabled": True}]}
        )
    )
    source.refresh_from_db()
    mapping.refresh_from_db()
    assert (source.shared_secret, source.enabled) == ("", False)
    assert (mapping.trigger, mapping.fields, mapping.enabled) == (gpu["trigger"], gpu["fields"], True)
    with pytest.raises(ConfigError, match=r"mappings\[0\]\.trigger"):  # a new mapping needs its rule
        config_apply(
            document=_sources_doc({"name": "Segment", "mappings": [{"name": "New", "enabled": True}]})
        )


def _integrations_doc(*integrations):
    return {
        "workspace": "Acme",
        "apps": [{"name": "Upsell"}, {"name": "Other"}],
        "integrations": list(integrations),
    }


def test_an_integration_with_only_name_and_write_key_keeps_apps_activities_field_state_and_region():
    """The issue's case: re-applying `{name, write_key}` used to reset all of these (and send an
    EU customer's data to the US host)."""
    full = {
        "name": "Prod", "write_key": "wk_first", "region": "eu", "apps": ["Upsell"],
        "activities": ["installed", "upgraded"], "user_id_field": "crm_id", "enabled": False,
    }  # fmt: skip
    config_apply(document=_integrations_doc(full))
    config_apply(document=_integrations_doc({"name": "Prod", "write_key": "wk_second"}))
    integration = Integration.objects.get(name="Prod")
    assert integration.write_key == "wk_second"
    assert (integration.region, integration.custom_host) == ("eu", "")
    assert [a.name for a in integration.apps.all()] == ["Upsell"]
    assert integration.activities == ["installed", "upgraded"]
    assert (integration.user_id_field, integration.enabled) == ("crm_id", False)

    # null clears what can be cleared; a region cannot be.
    config_apply(document=_integrations_doc({"name": "Prod", "apps": None, "user_id_field": None}))
    integration.refresh_from_db()
    assert list(integration.apps.all()) == [] and integration.user_id_field == ""
    assert integration.region == "eu" and integration.activities == ["installed", "upgraded"]
    with pytest.raises(ConfigError, match=r"integrations\[0\]\.region: cannot be null"):
        config_apply(document=_integrations_doc({"name": "Prod", "region": None}))

    # A new integration gets the defaults: US, every activity, enabled, no apps.
    config_apply(document=_integrations_doc({"name": "Fresh", "write_key": "wk_fresh"}))
    fresh = Integration.objects.get(name="Fresh")
    assert (fresh.region, fresh.enabled, list(fresh.apps.all())) == ("us", True, [])
    assert len(fresh.activities) == 15
