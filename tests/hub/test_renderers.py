"""hub.renderers: the API's JSON renderer writes exactly DRF's bytes, through orjson or not."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework import renderers as drf

from hub.renderers import JSONRenderer

_plain_value = st.none() | st.booleans() | st.integers() | st.text()


def _both(data, media_type="application/json", context=None) -> tuple[bytes, bytes]:
    return (
        JSONRenderer().render(data, media_type, context),
        drf.JSONRenderer().render(data, media_type, context),
    )


@settings(deadline=None)
@given(st.dictionaries(st.text(), _plain_value))
def test_flat_plain_objects_are_drfs_bytes(data):
    ours, drfs = _both(data)
    assert ours == drfs


@pytest.mark.parametrize("text", ["\u2028", "\u2029", "a\u2028b\u2029c", "\x00\x1f\x7f", '"\\/', "é 😀"])
def test_strings_javascript_separators_and_controls_as_drf(text):
    ours, drfs = _both({"k": text, text: 1})
    assert ours == drfs


def test_every_code_point_as_drf():
    text = "".join(chr(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF)
    ours, drfs = _both({"k": text, text: 1})
    assert ours == drfs


def test_a_lone_surrogate_is_refused_as_drf_refuses_it():
    for renderer in (JSONRenderer(), drf.JSONRenderer()):
        with pytest.raises(UnicodeEncodeError):
            renderer.render({"k": "\ud800"}, "application/json")


@pytest.mark.parametrize(
    ("data", "media_type", "context"),
    [
        ({"n": 2**64}, "application/json", None),  # beyond 64 bits: orjson refuses, DRF writes it
        ({"f": 1e16, "g": 0.1}, "application/json", None),
        ({"nested": {"a": [1, "b", None]}}, "application/json", None),
        ({"when": datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC), "d": Decimal("1.50")}, None, None),
        ([1, 2, 3], "application/json", None),
        ({"a": 1}, "application/json; indent=4", None),
        ({"a": 1}, "application/json", {"indent": 2}),
        ({1: "int key"}, "application/json", None),
        (None, "application/json", None),
    ],
)
def test_everything_else_is_drfs_own(data, media_type, context):
    ours, drfs = _both(data, media_type, context)
    assert ours == drfs


def test_an_answer_is_written_by_orjson(monkeypatch):
    """The flat answers do not reach DRF's json.dumps (the point of the renderer)."""
    calls: list[object] = []
    monkeypatch.setattr(drf.json, "dumps", lambda *a, **k: calls.append(a) or "{}")
    assert JSONRenderer().render({"success": True, "accepted": 1, "duplicates": 0}, "application/json") == (
        b'{"success":true,"accepted":1,"duplicates":0}'
    )
    assert calls == []
    JSONRenderer().render({"f": 0.5}, "application/json")
    assert len(calls) == 1
