"""Customer references resolved through the per-process reference cache (hub.services.customers)."""

import pytest

from hub.errors import HubError
from hub.services.customer_refs import customer_ids_resolve
from hub.services.customers import customer_identify
from tests.query_plans import customers_with_lagging_statistics, rows_read, statements_with_params

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


def test_resolving_references_reads_only_their_index_entries_while_the_statistics_lag(app):
    customers_with_lagging_statistics(app, 2000)
    known = customer_identify(app=app, platform_id="shop-1", myshopify_domain="one.myshopify.com")
    references = ["shop-1", "lag7.myshopify.com", str(known.customer.public_id), known.api_token, "new-shop"]
    with statements_with_params() as sent:
        found = customer_ids_resolve(app=app, references=references)
    assert set(found) == set(references)
    lookups = [(q, p) for q, p in sent if q.lstrip().startswith("SELECT")]
    assert lookups, sent
    for query, params in lookups:
        read = rows_read(query, params, "hub_customer")
        assert read and all(n <= 4 for n in read), (query, read)
