"""The mapping engine: paths, literals, templates, renames, coalesce, objects; presets on real
messages; errors name the field; property-based tests that only MappingError/TriggerError come out."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.sources.mapping_engine import (
    MISSING,
    MappingError,
    TriggerError,
    mapping_compile,
    mappings_run,
    paths_of,
    value_compile,
)
from integrations.sources.presets import PRESETS, kable_track

MESSAGE = {
    "type": "track",
    "event": "Report Generated",
    "messageId": "m-1",
    "userId": "user-1",
    "timestamp": "2024-03-01T12:00:00Z",
    "properties": {
        "shop": "s.myshopify.com",
        "segmentX": "important",
        "nested": {"field": 7},
        "none": None,
        "items": [{"id": "a"}, {"id": "b"}],
    },
    "context": {"groupId": "g-1"},
    "traits": {"first_name": "Ann", "last_name": "Lee"},
}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"path": "$.event"}, "Report Generated"),
        ({"path": "event"}, "Report Generated"),
        ({"path": "$.properties.shop"}, "s.myshopify.com"),
        ({"path": "properties.nested.field"}, 7),
        ({"path": "properties.items[1].id"}, "b"),
        ({"path": "$.properties.items[5].id"}, MISSING),
        ({"path": "$.properties.missing"}, MISSING),
        ({"path": "$.properties.none"}, None),  # null stays null
        ({"path": "$.event.deeper"}, MISSING),
        ({"path": "$."}, MESSAGE),
        ({"literal": "fixed"}, "fixed"),
        ({"literal": {"a": [1, 2]}}, {"a": [1, 2]}),
        ({"literal": None}, None),
        ({"template": "{{traits.first_name}} {{ traits.last_name }}"}, "Ann Lee"),
        ({"template": "n={{properties.nested.field}};x={{properties.missing}}"}, "n=7;x="),
        ({"template": "plain"}, "plain"),
        ({"coalesce": [{"path": "$.properties.none"}, {"path": "$.context.groupId"}]}, "g-1"),
        ({"coalesce": [{"path": "$.nope"}, {"path": "$.nada"}]}, MISSING),
        ({"object": {"a": {"path": "$.event"}, "b": {"path": "$.nope"}}}, {"a": "Report Generated"}),
        (
            {"path": "$.properties", "rename": {"segmentX": "kableX", "nested.field": "dimension"}},
            {
                "shop": "s.myshopify.com",
                "kableX": "important",
                "nested": {},
                "dimension": 7,
                "none": None,
                "items": [{"id": "a"}, {"id": "b"}],
            },
        ),
    ],
)
def test_value_specs(spec, expected):
    assert value_compile(spec)(MESSAGE) == expected


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"@pth": "a"}, "invalid directive: @pth"),
        ({"@liquid": "{{ event | upcase }}"}, "does not run"),  # a documented divergence
        ({"@path": "a", "extra": 1}, "one @-prefixed key"),
        ({"a": {"@path": "$.x", "@literal": 1}}, "one @-prefixed key"),
        ({"@replace": {"pattern": "x" * 11, "value": "v"}}, "length"),
        ({"@if": {"exists": {"@path": 5}}}, "string or a mapping directive"),
        ({"path": 3}, "must be text"),
        ({"path": "a..b"}, "not a path"),
        ({"path": "a[x]"}, "not a path"),
        ({"template": 5}, "must be text"),
        ({"template": "{{a..b}}"}, "not a path"),
        ({"coalesce": []}, "non-empty list"),
        ({"literal": 1, "rename": {}}, '"rename" goes with "path"'),
        ({"path": "properties", "rename": {"a": 1}}, "rename"),
    ],
)
def test_bad_value_specs_name_the_field(spec, fragment):
    with pytest.raises(MappingError) as caught:
        value_compile(spec, field="customer_id")
    assert caught.value.field.startswith("customer_id")
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, {}),  # anything that is not exactly one of the hub's specs is mapping-kit: raw JSON here
        ({"path": "a", "literal": 1}, {"path": "a", "literal": 1}),
        ("properties.shop", "properties.shop"),
        ({"@path": "$.properties.shop"}, "s.myshopify.com"),
        ({"@path": "$.properties.none"}, None),
        ({"@path": "$.properties.missing"}, MISSING),
        ({"@template": "{{traits.first_name}} {{properties.nested.field}}"}, "Ann 7"),
        ({"@if": {"exists": {"@path": "$.properties.none"}, "then": "yes", "else": "no"}}, "no"),
        (
            {"@if": {"blank": {"@path": "$.properties.segmentX"}, "then": {"@path": "$.event"}}},
            "Report Generated",
        ),
        ({"@arrayPath": ["$.properties.items", {"sku": {"@path": "$.id"}}]}, [{"sku": "a"}, {"sku": "b"}]),
        ({"@case": {"operator": "upper", "value": {"@path": "$.traits.first_name"}}}, "ANN"),
        ({"@replace": {"pattern": ".", "replacement": "-", "value": "a.b.c"}}, "a-b-c"),
        ({"@merge": {"objects": [{"a": 1}, {"a": 2, "b": 3}], "direction": "left"}}, {"a": 1, "b": 3}),
        ({"@json": {"mode": "encode", "value": {"@path": "$.properties.nested"}}}, '{"field":7}'),
        ({"@json": {"mode": "decode", "value": "{oops"}}, "{oops"),
        ({"@flatten": {"separator": "_", "value": {"@path": "$.properties.nested"}}}, {"field": 7}),
        (  # a key flattened twice keeps its first place, as JavaScript's object spread keeps it
            {
                "@json": {
                    "mode": "encode",
                    "value": {"@flatten": {"separator": "_", "value": {"a_b": 1, "a": {"b": 2}, "c": 3}}},
                }
            },
            '{"a_b":2,"c":3}',
        ),
        ({"@excludeWhenNull": {"a": {"@path": "$.properties.none"}, "b": 1}}, {"b": 1}),
        (
            {"shop": {"@path": "$.properties.shop"}, "gone": {"@path": "$.nope"}, "n": None},
            {"shop": "s.myshopify.com", "n": None},
        ),
    ],
)
def test_mapping_kit_values(spec, expected):
    """Segment's directives and raw values, read as Segment reads them (undefined dropped, null kept)."""
    assert value_compile(spec)(MESSAGE) == expected


def test_a_directive_that_fails_on_a_message_fails_the_mapping_not_the_run():
    mapping = mapping_compile(
        name="m", trigger='type = "track"', action="usage_event",
        fields={"event_name": {"@case": {"operator": "title", "value": {"@path": "$.event"}}}},
    )  # fmt: skip
    [output] = mappings_run([mapping], MESSAGE)
    assert output.values == {}
    assert "event_name: " in output.errors[0] and "lower" in output.errors[0]


def test_mappings_run_in_order_several_may_match_and_missing_paths_are_left_out():
    first = mapping_compile(
        name="a",
        trigger='type = "track"',
        action="usage_event",
        fields={"event_name": {"path": "$.event"}, "customer_id": {"path": "$.nope"}},
    )
    second = mapping_compile(name="b", trigger='event = "Report Generated"', action="usage_event", fields={})
    never = mapping_compile(name="c", trigger='type = "identify"', action="contact", fields={})
    outputs = mappings_run([first, never, second], MESSAGE)
    assert [o.mapping.name for o in outputs] == ["a", "b"]
    assert outputs[0].values == {"event_name": "Report Generated"}


def test_unknown_targets_and_bad_triggers_are_refused():
    with pytest.raises(MappingError, match="unknown target 'shop'"):
        mapping_compile(
            name="x",
            trigger='type = "track"',
            action="usage_event",
            fields={"shop": {"path": "a"}},
            targets=["event_name"],
        )
    with pytest.raises(TriggerError):
        mapping_compile(name="x", trigger="type = ", action="usage_event", fields={})


def _run(preset, message):
    mapping = mapping_compile(
        name=preset.name, trigger=preset.trigger, action=preset.action, fields=preset.fields
    )
    outputs = mappings_run([mapping], message)
    return outputs[0].values if outputs else None


def test_presets_follow_the_seeds():
    assert _run(PRESETS["mantle_track"], MESSAGE) == {
        "event_name": "Report Generated",
        "customer_id": "s.myshopify.com",
        "event_id": "m-1",
        "timestamp": "2024-03-01T12:00:00Z",
        "properties": MESSAGE["properties"],
    }
    assert _run(PRESETS["metronome_track"], MESSAGE)["customer_id"] == "g-1"
    kable = _run(
        kable_track(client_id_field="context.groupId", properties_mappings={"segmentX": "kableX"}), MESSAGE
    )
    assert kable["customer_id"] == "g-1"
    assert kable["properties"]["kableX"] == "important" and "segmentX" not in kable["properties"]
    assert _run(PRESETS["kable_track"], MESSAGE)["customer_id"] == "user-1"  # default userId
    identify = {
        "type": "identify",
        "userId": "u",
        "traits": {"email": "a@b.c", "first_name": "Ann", "last_name": "Lee", "title": "CTO"},
        "context": {"groupId": "g-2"},
    }
    assert _run(PRESETS["chartmogul_contact"], identify) == {
        "customer_id": "g-2",
        "email": "a@b.c",
        "name": "Ann Lee",
        "label": "CTO",
    }
    group = {"type": "group", "groupId": "g-3", "traits": {"name": "Shop", "website": "https://s.test"}}
    assert _run(PRESETS["chartmogul_customer"], group) == {
        "platform_id": "g-3",
        "name": "Shop",
        "custom_fields": {"website": "https://s.test"},
    }
    assert _run(PRESETS["mantle_track"], identify) is None


def test_paths_of_lists_suggestions():
    paths = paths_of(MESSAGE)
    assert "properties.shop" in paths and "properties.items[0].id" in paths and "context.groupId" in paths


SPEC = st.deferred(
    lambda: st.one_of(
        st.fixed_dictionaries(
            {"path": st.text(max_size=12) | st.sampled_from(["$.a", "a.b[0]", "$.", "[0]"])}
        ),
        st.fixed_dictionaries({"literal": JSON}),
        st.fixed_dictionaries({"template": st.text(max_size=20) | st.just("{{a.b}}-{{c}}")}),
        st.fixed_dictionaries({"coalesce": st.lists(SPEC, max_size=3)}),
        st.fixed_dictionaries({"object": st.dictionaries(st.text(max_size=3), SPEC, max_size=2)}),
        st.fixed_dictionaries(
            {
                "path": st.just("a"),
                "rename": st.dictionaries(
                    st.text(max_size=4), st.text(max_size=3) | st.integers(), max_size=2
                ),
            }
        ),
        JSON,
    )
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(st.text(max_size=10), SPEC, max_size=3),
    JSON | st.dictionaries(st.sampled_from(["a", "b", "c", "type"]), JSON),
)
def test_compiling_and_running_anything_only_raises_the_engines_own_errors(fields, message):
    try:
        mapping = mapping_compile(name="m", trigger='type != "x"', action="usage_event", fields=fields)
    except MappingError as exc:
        assert isinstance(exc.field, str)
        return
    for output in mappings_run([mapping], message):
        assert set(output.values) <= set(fields)


QUICK_PATHS = ["$", "$.", "event", "$.context.groupId", "properties.nested", "properties.none",
               "properties.items", "nested.field", "missing", "missing.deeper", "event.length",
               "properties.nested.field", "properties.items[1].id"]  # fmt: skip
ODD_MESSAGES = [MESSAGE, {}, {"context": None}, {"context": "text"}, {"event": ["a"]}, [1, 2], "text", None]


@pytest.mark.parametrize("path", QUICK_PATHS)
@pytest.mark.parametrize("message", ODD_MESSAGES)
def test_quick_getters_give_what_the_value_gives(path, message):
    """A compiled mapping's quick getters (what forwarding evaluates) give exactly what the value
    specs give, also where a step is missing, null or not an object."""
    compiled = mapping_compile(name="m", trigger='type = "track"', action="a", fields={"out": {"path": path}})
    ((target, getter),) = compiled.getters
    assert target == "out"
    assert getter(message) == compiled.fields["out"](message)
    assert (getter(message) is MISSING) == (compiled.fields["out"](message) is MISSING)
