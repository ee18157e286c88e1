"""Segment's `validate` of a mapping-kit value (mapping-kit/validate.js), run when a mapping is
saved; `KitError` is what it raises (and what a directive that fails on a message raises)."""

from __future__ import annotations

import json
from typing import Any

from .values import UNDEFINED, js_type, utf16_length

MAX_PATTERN_LENGTH = 10
MAX_REPLACEMENT_LENGTH = 10
DIRECTIVES = (
    "@if", "@case", "@replace", "@arrayPath", "@path", "@template", "@literal", "@flatten", "@json",
    "@merge", "@transform", "@excludeWhenNull",
)  # fmt: skip
MAX_DEPTH = 64


class KitError(ValueError):
    """A mapping-kit value Segment refuses (on save) or a directive that fails on a message."""


def _type_or_directive(value: Any) -> str:
    kind = js_type(value)
    if kind == "object" and any(k.startswith("@") for k in value):
        return "directive"
    return kind


def _fail(message: str, stack: list[str]) -> KitError:
    return KitError(f"/{'/'.join(stack)} {message}.")


def _article(kind: str) -> str:
    return "an" if kind[:1] in "aeiou" else "a"


def _validate_directive(obj: dict, stack: list[str]) -> None:
    keys = list(obj)
    at_keys = [k for k in keys if k.startswith("@")]
    if len(at_keys) > 1:
        raise _fail(f"should only have one @-prefixed key but it has {len(at_keys)} keys", stack)
    if any(not k.startswith("@") and k != "_metadata" for k in keys):
        raise _fail(f"should only have one @-prefixed key but it has {len(keys)} keys", stack)
    name = at_keys[0]
    check = _CHECKS.get(name)
    if name == "@liquid":
        raise _fail("uses @liquid, which the hub does not run (use @template, @if, @case or @replace)", stack)
    if check is None:
        raise _fail(f"has an invalid directive: {name}", stack)
    check(obj[name], [*stack, name])


def _directive_or_raw(value: Any, stack: list[str]) -> None:
    kind = _type_or_directive(value)
    if kind == "directive":
        _validate_directive(value, stack)
    elif kind == "undefined":
        raise _fail("should be a mapping directive or a JSON value but it is an undefined", stack)


def _directive_or_string(value: Any, stack: list[str]) -> None:
    kind = _type_or_directive(value)
    if kind == "directive":
        _validate_directive(value, stack)
    elif kind != "string":
        raise _fail(f"should be a string or a mapping directive but it is {_article(kind)} {kind}", stack)


def _directive_or_object(value: Any, stack: list[str]) -> None:
    kind = _type_or_directive(value)
    if kind == "directive":
        _validate_directive(value, stack)
    elif kind == "object":
        _validate_object(value, stack)
    else:
        raise _fail(f"should be a object or a mapping directive but it is {_article(kind)} {kind}", stack)


def _string(value: Any, stack: list[str]) -> None:
    kind = _type_or_directive(value)
    if kind != "string":
        raise _fail(f"should be a string but it is {_article(kind)} {kind}", stack)


def _length(low: int, high: int):
    def check(value: Any, stack: list[str]) -> None:
        _string(value, stack)
        if not low <= utf16_length(value) <= high:
            raise _fail(f"should be a string of length {low} to {high}", stack)

    return check


def _one_of(*allowed: str):
    def check(value: Any, stack: list[str]) -> None:
        _string(value, stack)
        if value.lower() not in allowed:
            raise _fail(f"should be one of {', '.join(allowed)} but it is {json.dumps(value)}", stack)

    return check


def _boolean(value: Any, stack: list[str]) -> None:
    if not isinstance(value, bool):
        raise _fail("should be a boolean", stack)


def _array(value: Any, stack: list[str]) -> None:
    if not isinstance(value, list):
        kind = js_type(value)
        raise _fail(f"should be an array but it is {_article(kind)} {kind}", stack)


def _validate_object(value: Any, stack: list[str]) -> None:
    kind = _type_or_directive(value)
    if kind != "object":
        raise _fail(f"should be an object but it is {_article(kind)} {kind}", stack)
    for key in value:
        kit_validate(value[key], [*stack, key])


def _with_fields(value: Any, stack: list[str], required: dict, optional: dict) -> None:
    _validate_object(value, stack)
    for name, check in required.items():
        if name not in value:
            raise _fail(f'should have field "{name}" but it doesn\'t', stack)
        check(value[name], [*stack, name])
    for name, check in optional.items():
        if name in value:
            check(value[name], [*stack, name])


def _check_array_path(value: Any, stack: list[str]) -> None:
    _array(value, stack)
    _directive_or_string(value[0] if value else UNDEFINED, stack)
    if len(value) > 1:
        kit_validate(value[1], stack)


def _check_merge(value: Any, stack: list[str]) -> None:
    _with_fields(value, stack, {"objects": _array}, {"direction": _one_of("left", "right")})
    for item in value["objects"]:
        _directive_or_object(item, [])


_CHECKS = {
    "@if": lambda v, s: _with_fields(v, s, {}, {"exists": _directive_or_raw, "then": _directive_or_raw,
                                                "else": _directive_or_raw}),
    "@case": lambda v, s: _with_fields(v, s, {}, {"operator": _string, "value": _directive_or_string}),
    "@replace": lambda v, s: _with_fields(
        v, s, {"pattern": _length(1, MAX_PATTERN_LENGTH), "value": _directive_or_string},
        {"replacement": _length(0, MAX_REPLACEMENT_LENGTH), "ignorecase": _boolean, "global": _boolean},
    ),
    "@arrayPath": _check_array_path,
    "@path": _directive_or_string,
    "@template": _directive_or_string,
    "@literal": _directive_or_raw,
    "@json": lambda v, s: _with_fields(
        v, s, {"value": _directive_or_raw, "mode": _one_of("encode", "decode")}, {}
    ),
    "@flatten": lambda v, s: _with_fields(v, s, {"value": _directive_or_raw}, {"separator": _string}),
    "@merge": _check_merge,
    "@transform": lambda v, s: _with_fields(
        v, s, {"apply": _directive_or_object, "mapping": _directive_or_object}, {}
    ),
    "@excludeWhenNull": _directive_or_raw,
}  # fmt: skip


def kit_validate(value: Any, stack: list[str] | None = None) -> None:
    """Segment's `validate` of a mapping value: raise KitError naming where it is wrong."""
    stack = stack or []
    if len(stack) > MAX_DEPTH:
        raise _fail("is nested too deeply", stack)
    kind = _type_or_directive(value)
    if kind == "directive":
        _validate_directive(value, stack)
    elif kind == "object":
        _validate_object(value, stack)
