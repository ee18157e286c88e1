"""Finding a source by its write key: each process reuses what it found for
HUB_SOURCE_CACHE_SECONDS, and a change made in the process itself is seen at once."""

import pytest

from hub.errors import AuthenticationError
from integrations.sources.models import Source
from integrations.sources.services import source_by_write_key, source_rotate_credentials, source_update

pytestmark = pytest.mark.django_db


def test_a_source_disabled_elsewhere_is_still_found_within_the_cache_time(source, settings):
    """Another process's change (a direct UPDATE here) is not seen while the cache holds the source."""
    settings.HUB_SOURCE_CACHE_SECONDS = 60
    assert source_by_write_key(source.write_key).pk == source.pk
    Source.objects.filter(pk=source.pk).update(enabled=False)

    assert source_by_write_key(source.write_key).pk == source.pk


def test_with_the_cache_off_every_request_sees_a_source_disabled_elsewhere(source, settings):
    settings.HUB_SOURCE_CACHE_SECONDS = 0
    assert source_by_write_key(source.write_key).pk == source.pk
    Source.objects.filter(pk=source.pk).update(enabled=False)

    with pytest.raises(AuthenticationError, match="Invalid write key"):
        source_by_write_key(source.write_key)


def test_a_change_made_in_this_process_is_seen_at_once(source, settings):
    settings.HUB_SOURCE_CACHE_SECONDS = 60
    old_key = source.write_key
    assert source_by_write_key(old_key).pk == source.pk

    source_rotate_credentials(source=source)
    with pytest.raises(AuthenticationError, match="Invalid write key"):
        source_by_write_key(old_key)
    assert source_by_write_key(source.write_key).pk == source.pk

    source_update(source=source, enabled=False)
    with pytest.raises(AuthenticationError, match="Invalid write key"):
        source_by_write_key(source.write_key)
