import pytest

from integrations.sources.services import source_cache_clear


@pytest.fixture(autouse=True)
def _fresh_source_cache():
    source_cache_clear()
    yield
    source_cache_clear()
