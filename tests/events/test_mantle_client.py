"""The official npm package @heymantle/client, unmodified, against a live hub."""

from datetime import UTC, datetime

import pytest

from events.models import UsageEvent
from hub.models import Customer
from tests.factories import AppFactory, api_key_for
from tests.node_runner import run_node_script

pytestmark = [pytest.mark.node, pytest.mark.django_db(transaction=True)]


def test_mantle_client_identify_get_customer_and_usage_events(live_server):
    app = AppFactory()
    _, secret = api_key_for(app)
    out = run_node_script(
        "mantle_client.mjs",
        {"HUB_API_URL": f"{live_server.url}/v1", "HUB_APP_ID": str(app.public_id), "HUB_API_KEY": secret},
    )
    token = out["identify"]["apiToken"]
    assert token.startswith("hub_ct_")

    customer = Customer.objects.get(app=app)
    assert customer.platform_id == "gid-1001"
    assert customer.myshopify_domain == "client-shop.myshopify.com"
    assert customer.custom_fields == {"tier": "gold", "seats": 3}
    assert customer.tags == ["beta"]
    assert list(customer.contacts.values_list("email", "label", "phone")) == [
        ("ops@client-shop.test", "primary", "+1 555 0100")
    ]
    # The token is not stored in the clear.
    assert token not in str(Customer.objects.filter(pk=customer.pk).values().get())

    for key in ("customerByToken", "customerById"):
        assert out[key]["id"] == str(customer.public_id), out[key]
        assert out[key]["name"] == "Client Shop"

    assert out["single"] == {"success": True, "accepted": 1, "duplicates": 0}
    assert out["singleAgain"] == {"success": True, "accepted": 0, "duplicates": 1}
    assert out["bulk"] == {"success": True, "accepted": 2, "duplicates": 0}
    assert out["customerEvent"]["success"] is True
    assert "error" in out["invalid"]

    rows = {e.event_id: e for e in UsageEvent.objects.filter(app=app)}
    assert set(rows) == {"client-evt-1", "client-evt-2", "client-evt-3", "client-evt-4"}
    assert all(e.customer_id == customer.pk for e in rows.values())
    assert rows["client-evt-1"].timestamp == datetime(2024, 3, 1, 12, tzinfo=UTC)
    assert rows["client-evt-1"].properties == {"rows": 42}

    assert out["rotatedDiffers"] is True
    assert "error" in out["oldTokenAfterRotate"]
