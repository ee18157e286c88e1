import pytest

from integrations.sources.services import source_cache_clear, source_create


@pytest.fixture(autouse=True)
def _fresh_source_cache():
    source_cache_clear()
    yield
    source_cache_clear()


@pytest.fixture
def source(app):
    """A Segment source of `app` with the default presets (Mantle track, ChartMogul identify/group)."""
    return source_create(app=app, name="Segment")
