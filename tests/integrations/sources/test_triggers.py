"""The trigger parser (Segment's FQL subset): every operator, errors that point at the position,
and property-based tests that nothing but TriggerError ever comes out of parsing or evaluation."""

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.sources.triggers import TriggerError, trigger_parse

MESSAGE = {
    "type": "track",
    "event": "Order Completed",
    "name": "Home",
    "userId": "ann@example.com",
    "properties": {"total": 12.5, "count": 3, "plan": "pro", "nested": {"flag": True}, "empty": None},
    "traits": {"email": "ann@example.com"},
    "context": {"groupId": "shop-1"},
}


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        ('type = "track"', True),
        ('type = "identify"', False),
        ('type != "identify"', True),
        ('event = "Order Completed"', True),
        ('name = "Home"', True),
        ("properties.count = 3", True),
        ("properties.count = 3.0", True),
        ('properties.count = "3"', False),
        ("properties.total > 12", True),
        ("properties.total >= 12.5", True),
        ("properties.total < 12.5", False),
        ("properties.total <= 12.5", True),
        ("properties.plan > 1", False),  # ordering compares numbers only
        ("properties.missing < 1", False),
        ("properties.nested.flag = true", True),
        ("properties.nested.flag = false", False),
        ("properties.empty = null", True),
        ("properties.missing = null", True),
        ("properties.plan = null", False),
        ("properties.plan != null", True),
        ("properties.missing != null", False),
        ('traits.email = "ann@example.com"', True),
        ('context.groupId = "shop-1"', True),
        ('contains(userId, "@example.com")', True),
        ('contains(userId, "@company.com")', False),
        ('contains(properties.count, "3")', False),  # contains looks into text only
        ('match(event, "Order*")', True),
        ('match(event, "order*")', False),
        ('match(event, "Order Complete?")', True),
        ('match(properties.missing, "*")', False),
        ('!contains(userId, "@company.com")', True),
        ('!(type = "track")', False),
        ('!!(type = "track")', True),
        ('type = "track" and !contains(userId, "@company.com")', True),  # seed 001
        ('type = "identify" or event = "Order Completed"', True),
        ('type = "identify" or type = "group"', False),
        ('type = "track" and (event = "x" or properties.count = 3)', True),
        ('type = "track" and event = "x" or properties.count = 3', True),  # and binds tighter
        ('type = "identify" and event = "x" or properties.count = 4', False),
        ('`properties.plan` = "pro"', True),
        ('properties.plan = "p\\"ro"', False),
    ],
)
def test_operators(trigger, expected):
    assert trigger_parse(trigger)(MESSAGE) is expected


@pytest.mark.parametrize(
    ("trigger", "position", "fragment"),
    [
        ("", 0, "empty"),
        ("type", 4, "Expected an operator"),
        ("type =", 6, "Expected a value"),
        ('type == "track"', 6, "Expected a value"),
        ('typo = "track"', 0, "Unknown field `typo`"),
        ('properties = "x"', 0, "Name a key of properties"),
        ('type = "track', 7, "unterminated string"),
        ('(type = "track"', 15, "Expected `)`"),
        ('type = "track")', 14, "Expected `and`, `or` or the end"),
        ('type = "track" and', 18, "Expected a field"),
        ('type = "track" xor event = "a"', 15, "Expected `and`"),
        ('contains(userId "x")', 16, "Expected `,`"),
        ("contains(userId, 3)", 17, "takes a string"),
        ('match(event, "a"', 16, "Expected `)` to close match()"),
        ('properties.total < "5"', 19, "compares numbers"),
        ("type = track", 7, "Expected a value"),
        ('type = "a" @', 11, "Unexpected character '@'"),
        ('type = "\\q"', 9, "Unknown escape"),
    ],
)
def test_errors_point_at_the_position(trigger, position, fragment):
    with pytest.raises(TriggerError) as caught:
        trigger_parse(trigger)
    assert caught.value.position == position, str(caught.value)
    assert fragment in str(caught.value)
    assert caught.value.pointer().splitlines()[-1] == " " * position + "^"


def test_non_text_and_overlong_triggers_are_errors():
    with pytest.raises(TriggerError):
        trigger_parse(None)
    with pytest.raises(TriggerError):
        trigger_parse('type = "a" or ' * 500 + 'type = "b"')
    with pytest.raises(TriggerError, match="nested too deeply"):
        trigger_parse("(" * 60 + 'type = "a"' + ")" * 60)


_ALPHABET = st.sampled_from(
    [
        *list('()!,=<>" \\`.tyepvnamusrIdcolhkfq*?0123'),
        "type",
        "event",
        "and",
        "or",
        "null",
        "contains(",
        "match(",
        "properties.",
        "traits.x",
        "context.groupId",
        '"track"',
        "3.5",
    ]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_ALPHABET, max_size=25).map("".join))
def test_parsing_any_text_gives_a_trigger_or_a_trigger_error(text):
    try:
        trigger = trigger_parse(text)
    except TriggerError as exc:
        assert 0 <= exc.position <= len(text)
    else:
        assert trigger(MESSAGE) in (True, False)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_parsing_random_unicode_never_raises_anything_else(text):
    with contextlib.suppress(TriggerError):
        trigger_parse(text)


TRIGGERS = [
    'type = "track" and !contains(userId, "@company.com")',
    "properties.a >= 1 or traits.b = null",
    'match(context.c, "x*") and properties.a.b != "y"',
    "!(properties.n < 0)",
]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(TRIGGERS),
    st.dictionaries(st.sampled_from(["type", "userId", "properties", "traits", "context"]), JSON, max_size=5)
    | JSON,
)
def test_evaluating_any_message_returns_a_boolean(trigger, message):
    assert trigger_parse(trigger)(message) in (True, False)


@pytest.mark.parametrize(
    "trigger",
    [
        'type = "track" and !contains(userId, "@company.com")',  # seed 001
        'event = "Order Completed" or event = "Order Refunded"',
        'type = "track" and (event = "Order Completed" or properties.total >= 10)',
        "properties.plan = null and traits.email != null and properties.flag = true",
        'match(userId, "*@example.com")',
    ],
)
def test_triggers_segment_reads_the_same_have_no_warnings(trigger):
    assert trigger_parse(trigger).warnings == ()


@pytest.mark.parametrize(
    ("trigger", "code"),
    [
        ('!(event = "a")', "not"),
        ('!event = "a"', "not"),
        ('anonymousId = "x"', "field"),
        ('contains(type, "tr")', "field"),
        ('type = "a" and event = "b" or event = "c"', "and-or"),
        ('match(event, "Ord?r")', "match"),
        ('match(event, "Order")', "match"),
        ("event = null", "as-text"),
        ("properties.count != 3", "as-text"),
        ('event = "a" and (event = "b" or (event = "c"))', "nested"),
        ('properties.plan!="pro"', "spacing"),
    ],
)
def test_triggers_segment_reads_differently_warn(trigger, code):
    """The editor warns where Segment's parser would read the trigger differently."""
    assert code in {w.code for w in trigger_parse(trigger).warnings}


def test_not_before_a_call_is_segments_not_contains():
    """`!contains(...)` is true only for text without the needle (Segment's not_contains)."""
    trigger = trigger_parse('!contains(userId, "@company.com")')
    assert trigger({"userId": "ann@example.com"}) is True
    assert trigger({"userId": "bob@company.com"}) is False
    assert trigger({}) is False


def test_fields_are_read_as_segment_reads_them():
    assert trigger_parse("properties.items.1.n = 2")({"properties": {"items": [{}, {"n": 2}]}})
    assert trigger_parse("properties.s.length = 3")({"properties": {"s": "abc"}})
    assert trigger_parse("properties.a.b = 0")({"properties": {"a": 0}})  # a falsy value stops the path
