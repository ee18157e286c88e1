"""Customer references resolved through the per-process reference cache (hub.services.customers)."""

import pytest

from hub.errors import HubError
from hub.services.customer_refs import customer_ids_resolve
from hub.services.customers import customer_identify

pytestmark = pytest.mark.django_db


def test_a_stable_reference_is_served_from_the_cache_without_a_query(app, django_assert_num_queries):
    customer = customer_identify(app=app, platform_id="shop-1").customer
    assert customer_ids_resolve(app=app, references=["shop-1"]) == {"shop-1": customer.pk}
    with django_assert_num_queries(0):
        assert customer_ids_resolve(app=app, references=["shop-1"]) == {"shop-1": customer.pk}


def test_a_customer_token_is_never_cached_so_a_rotated_one_stops_resolving(app):
    old = customer_identify(app=app, platform_id="shop-1").api_token
    assert customer_ids_resolve(app=app, references=[old])
    customer_identify(app=app, platform_id="shop-1", rotate_api_token=True)
    with pytest.raises(HubError, match="Unknown customer API token"):
        customer_ids_resolve(app=app, references=[old])
