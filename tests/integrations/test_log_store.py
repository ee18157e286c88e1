"""The delivery log's per-database reads (integrations.log_store) answer alike."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from integrations.log_store import PortableLogStore, PostgresLogStore, log_store
from integrations.models import Attempt

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("store", [PostgresLogStore(), PortableLogStore()], ids=["postgres", "portable"])
def test_the_attempts_that_carried_a_delivery_newest_first_up_to_the_limit(segment, store):
    wanted, other = str(uuid.uuid4()), str(uuid.uuid4())
    now = timezone.now()
    carried = [
        Attempt.objects.create(
            integration=segment,
            url="x",
            outcome="retry",
            delivery_ids=[other, wanted],
            created_at=now - timedelta(seconds=s),
        )
        for s in (3, 2, 1)
    ]
    Attempt.objects.create(
        integration=segment, url="x", outcome="delivered", delivery_ids=[other], created_at=now
    )
    attempts = Attempt.objects.filter(integration=segment).order_by("-created_at")
    found = store.attempts_carrying(attempts=attempts, delivery_id=wanted, limit=2)
    assert found == [carried[2], carried[1]]


def test_postgresql_gets_its_own_store():
    assert isinstance(log_store(), PostgresLogStore)
