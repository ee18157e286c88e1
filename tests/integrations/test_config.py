"""hub_apply declares Segment integrations (matched by name; the write key never printed)."""

import pytest

from hub.config_apply import ConfigError, config_apply
from integrations.models import Integration

pytestmark = pytest.mark.django_db


def test_hub_apply_declares_integrations_idempotently():
    doc = {
        "workspace": "Seg Co",
        "apps": [{"name": "Upsell"}],
        "integrations": [
            {"name": "Prod", "write_key": "wk_secret_1", "region": "eu", "apps": ["Upsell"],
             "activities": ["installed", "upgraded"], "user_id_field": "crm"},
        ],
    }  # fmt: skip
    first = config_apply(document=doc)
    assert first["integrations"][0]["created"] is True and "wk_secret_1" not in str(first)
    second = config_apply(document={**doc, "integrations": [{**doc["integrations"][0], "write_key": None}]})
    assert second["integrations"][0]["created"] is False
    integration = Integration.objects.get(name="Prod")
    assert integration.write_key == "wk_secret_1" and integration.region == "eu"
    assert integration.activities == ["installed", "upgraded"] and integration.user_id_field == "crm"
    assert [a.name for a in integration.apps.all()] == ["Upsell"]
    with pytest.raises(ConfigError, match=r"integrations\[0\]\.apps"):
        config_apply(
            document={
                "workspace": "Seg Co",
                "integrations": [{"name": "X", "write_key": "k", "apps": ["Nope"]}],
            }
        )
