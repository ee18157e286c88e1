"""Segment's mapping-kit (`transform` of `@segment/actions-core` 3.170), read the way it reads it.

A mapping-kit value mixes raw JSON with directives, objects of exactly one `@` key (beside which
only `_metadata` may stand): `@path`, `@template`, `@literal`, `@if`, `@arrayPath`, `@case`,
`@replace`, `@merge`, `@json`, `@flatten`, `@excludeWhenNull`, `@transform`. `kit_validate` is
Segment's `validate` (run when a mapping is saved: it raises `KitError`); `kit_resolve` is its
`resolve`, whose runtime errors (the same as Segment throws) are `KitError` too.

Values follow JavaScript: a missing value is `UNDEFINED` (dropped from objects by `kit_clean`,
`null` in arrays), paths read like JavaScript's `a && a[key]` (a falsy value stops the walk and is
the result; strings and arrays answer indexes and `length`), and numbers become text as
JavaScript's `String(n)` writes them. What the hub does not copy is listed in docs/sources.md
("Mapping-kit: where the hub differs") and held by tests/integrations/sources/test_segment_differential.py.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

__all__ = [
    "UNDEFINED",
    "KitError",
    "is_kit_directive",
    "js_get",
    "kit_clean",
    "kit_compile",
    "kit_resolve",
    "kit_validate",
]


class _Undefined:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Any = _Undefined()
MAX_PATTERN_LENGTH = 10
MAX_REPLACEMENT_LENGTH = 10
DIRECTIVES = (
    "@if", "@case", "@replace", "@arrayPath", "@path", "@template", "@literal", "@flatten", "@json",
    "@merge", "@transform", "@excludeWhenNull",
)  # fmt: skip
_MAX_DEPTH = 64


class KitError(ValueError):
    """A mapping-kit value Segment refuses (on save) or a directive that fails on a message."""


# --- JavaScript's reading of values ---------------------------------------------------------------


def js_type(value: Any) -> str:
    """JavaScript's `Object.prototype.toString` type name, for JSON values."""
    if value is None:
        return "null"
    if value is UNDEFINED:
        return "undefined"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def js_truthy(value: Any) -> bool:
    if value is None or value is UNDEFINED or value is False:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value != 0 and value == value
    if isinstance(value, str):
        return value != ""
    return True


def utf16_length(text: str) -> int:
    """JavaScript's `string.length`: UTF-16 code units."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def js_number(value: int | float) -> str:
    """JavaScript's `String(number)`."""
    if isinstance(value, int) and abs(value) < 10**21:
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    _, digit_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    k, n = len(digits), exponent + len(digits)  # type: ignore[operator]
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    return sign + digits[0] + ("." + digits[1:] if k > 1 else "") + ("e+" if e >= 0 else "e-") + str(abs(e))


def js_string(value: Any) -> str:
    """JavaScript's `String(value)` (arrays joined by commas, objects "[object Object]")."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if value is UNDEFINED:
        return "undefined"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return js_number(value)
    if isinstance(value, list):
        return ",".join("" if v is None or v is UNDEFINED else js_string(v) for v in value)
    return "[object Object]"


def _is_index(key: str) -> bool:
    return key.isdigit() and key.isascii() and (key == "0" or key[0] != "0") and int(key) < 2**32 - 1


def js_keys(obj: dict) -> list[str]:
    """An object's keys in JavaScript's order: array-index keys ascending, then the others."""
    keys = list(obj)
    if not any(_is_index(k) for k in keys):
        return keys
    return sorted((k for k in keys if _is_index(k)), key=int) + [k for k in keys if not _is_index(k)]


def js_member(value: Any, key: str) -> Any:
    """`value[key]` for a JSON value (no prototype properties: see the documented divergences)."""
    if isinstance(value, dict):
        return value.get(key, UNDEFINED)
    if isinstance(value, list):
        if key == "length":
            return len(value)
        return value[int(key)] if _is_index(key) and int(key) < len(value) else UNDEFINED
    if isinstance(value, str):
        if key == "length":
            return utf16_length(value)
        if not _is_index(key):
            return UNDEFINED
        i = int(key)
        if value.isascii():
            return value[i] if i < len(value) else UNDEFINED
        units = value.encode("utf-16-le", "surrogatepass")  # JavaScript indexes UTF-16 code units
        if i >= len(units) // 2:
            return UNDEFINED
        return units[2 * i : 2 * i + 2].decode("utf-16-le", "surrogatepass")
    return UNDEFINED


_SPLIT = re.compile(r"""\[(?=["'\d])|\.|(?<=["'\d])\]+""")


def path_split(path: str) -> list[str]:
    """actions-core's `get` path: `a.b[0]["c"]` → ["a", "b", "0", "c"]."""
    return [part.replace("'", "").replace('"', "") for part in _SPLIT.split(path) if part]


def js_get(obj: Any, path: str | list[str]) -> Any:
    """actions-core's `get`: `path.reduce((o, k) => o && o[k], obj)`."""
    if path == "" or path == ".":
        return obj
    parts = path_split(path) if isinstance(path, str) else path
    value = obj
    for key in parts:
        if not js_truthy(value):
            return value
        value = js_member(value, key)
    return value


def js_json(value: Any) -> Any:
    """JavaScript's `JSON.stringify` (UNDEFINED when it gives undefined)."""
    if value is UNDEFINED:
        return UNDEFINED
    return _js_json(value)


def _js_json(value: Any) -> str:
    if value is None or value is UNDEFINED:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return js_number(value) if math.isfinite(value) else "null"
    if isinstance(value, str):
        return _js_json_string(value)
    if isinstance(value, list):
        return "[" + ",".join(_js_json(v) for v in value) + "]"
    return (
        "{"
        + ",".join(
            _js_json_string(k) + ":" + _js_json(value[k]) for k in js_keys(value) if value[k] is not UNDEFINED
        )
        + "}"
    )


_SURROGATE = re.compile("[\ud800-\udfff]")


def _js_json_string(text: str) -> str:
    """A JSON string as JavaScript writes it: a lone surrogate (text cut inside an emoji) escaped."""
    out = json.dumps(text, ensure_ascii=False)
    if not _SURROGATE.search(out):
        return out
    out = out.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")  # pairs joined
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", out)


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def js_json_parse(text: str) -> Any:
    """JavaScript's `JSON.parse` (raises ValueError where it throws)."""
    return json.loads(text, parse_constant=_no_constant)


# --- Validation (mapping-kit/validate.js) ---------------------------------------------------------


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
    if len(stack) > _MAX_DEPTH:
        raise _fail("is nested too deeply", stack)
    kind = _type_or_directive(value)
    if kind == "directive":
        _validate_directive(value, stack)
    elif kind == "object":
        _validate_object(value, stack)


# --- Evaluation (mapping-kit/index.js) ------------------------------------------------------------


def is_kit_directive(value: Any) -> bool:
    """An object of `@` keys (and `_metadata`) only: what `resolve` runs as a directive."""
    if not isinstance(value, dict) or not any(k.startswith("@") for k in value):
        return False
    return all(k.startswith("@") or k == "_metadata" for k in value)


def kit_resolve(mapping: Any, payload: Any, depth: int = 0) -> Any:
    """Segment's `resolve`: the value of a (validated) mapping-kit value for `payload`."""
    if isinstance(mapping, dict):
        if depth > _MAX_DEPTH:
            raise KitError("the mapping is nested too deeply")
        if is_kit_directive(mapping):
            name = next(k for k in mapping if k.startswith("@"))
            run = _RUN.get(name)
            if run is None:
                raise KitError(f"{name} is not a valid directive")
            return run(mapping[name], payload, depth + 1)
        return {k: kit_resolve(v, payload, depth + 1) for k, v in mapping.items()}
    if isinstance(mapping, list):
        return [kit_resolve(v, payload, depth + 1) for v in mapping]
    return mapping


def kit_compile(mapping: Any) -> Callable[[Any], Any]:
    """A validated mapping-kit value as a function of the payload, equal to `kit_resolve` on it:
    paths are split and templates parsed once, raw objects and lists resolved member by member,
    the other directives interpreted (they are rarer, and their options resolve as they go)."""
    if isinstance(mapping, dict):
        if is_kit_directive(mapping):
            name = next(k for k in mapping if k.startswith("@"))
            arg = mapping[name]
            if name == "@path" and isinstance(arg, str):
                path = arg.replace("$.", "", 1)
                if path in ("", "."):
                    return lambda payload: payload
                parts = path_split(path)
                return lambda payload: js_get(payload, parts)
            if name == "@template" and isinstance(arg, str) and not _TRIPLE.search(arg):
                return _template_compile(arg)
            run = _RUN.get(name)
            if run is None:
                return functools.partial(_fail_at_run, f"{name} is not a valid directive")
            return lambda payload: run(arg, payload, 1)
        members = [(k, kit_compile(v)) for k, v in mapping.items()]
        return lambda payload: {k: fn(payload) for k, fn in members}
    if isinstance(mapping, list):
        items = [kit_compile(v) for v in mapping]
        return lambda payload: [fn(payload) for fn in items]
    return lambda payload: mapping


def _fail_at_run(message: str, payload: Any) -> Any:
    raise KitError(message)


def _template_compile(template: str) -> Callable[[Any], str]:
    """A template without `{{{`: its text and its paths, found once."""
    parts: list[Any] = []
    pos = 0
    for m in _DOUBLE.finditer(template):
        parts.append(template[pos : m.start()])
        path = m.group(1).strip()
        parts.append(None if path in ("", ".") else path_split(path))
        pos = m.end()
    parts.append(template[pos:])
    if len(parts) == 1:
        return lambda payload: template

    def render(payload: Any) -> str:
        out = []
        for part in parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = payload if part is None else js_get(payload, part)
            out.append("" if value is None or value is UNDEFINED else js_string(value))
        return "".join(out)

    return render


def kit_clean(value: Any) -> Any:
    """actions-core's `removeUndefined`, then as JSON: undefined dropped from objects, null in arrays."""
    if isinstance(value, dict):
        return {k: kit_clean(value[k]) for k in js_keys(value) if value[k] is not UNDEFINED}
    if isinstance(value, list):
        return [None if v is UNDEFINED else kit_clean(v) for v in value]
    return value


def _opts(name: str, opts: Any, what: str) -> dict:
    if not isinstance(opts, dict):
        raise KitError(f"{name} requires an object with {what}")
    return opts


def _run_if(opts: Any, payload: Any, depth: int) -> Any:
    opts = _opts("@if", opts, 'an "exists" key')
    exists, blank = opts.get("exists", UNDEFINED), opts.get("blank", UNDEFINED)
    if not js_truthy(exists) and not js_truthy(blank):
        raise KitError('@if requires an "exists" key or a "blank" key')
    if exists is not UNDEFINED:
        value = kit_resolve(exists, payload, depth)
        condition = value is not UNDEFINED and value is not None
    else:
        value = kit_resolve(blank, payload, depth)
        condition = value is not UNDEFINED and value is not None and not _loosely_empty(value)
    then, otherwise = opts.get("then", UNDEFINED), opts.get("else", UNDEFINED)
    if condition and then is not UNDEFINED:
        return kit_resolve(then, payload, depth)
    if not condition and js_truthy(otherwise):
        return kit_resolve(otherwise, payload, depth)
    return UNDEFINED


def _loosely_empty(value: Any) -> bool:
    """JavaScript's `value == ''` (0, false, [] and "" are all loosely equal to '')."""
    if isinstance(value, str):
        return value == ""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value == 0
    if isinstance(value, list):
        return js_string(value) == ""
    return False


def _run_case(opts: Any, payload: Any, depth: int) -> Any:
    opts = _opts("@case", opts, 'a "operator" key')
    operator = opts.get("operator", UNDEFINED)
    if not js_truthy(operator):
        raise KitError('@case requires a "operator" key')
    if not js_truthy(opts.get("value", UNDEFINED)):
        return UNDEFINED
    value = kit_resolve(opts["value"], payload, depth)
    if isinstance(value, str):
        if operator == "lower":
            return value.lower()
        if operator == "upper":
            return value.upper()
        raise KitError('operator key should have a value of "lower" or "upper"')
    return value


def _canonical(ch: str) -> str:
    """A character as a JavaScript (non-unicode) case-insensitive regular expression compares it."""
    if ord(ch) > 0xFFFF:
        return ch
    upper = ch.upper()
    if len(upper) != 1 or (ord(ch) >= 128 and ord(upper) < 128):
        return ch
    return upper


def _replace(value: str, pattern: str, replacement: str, *, globally: bool, ignorecase: bool) -> str:
    if utf16_length(pattern) > MAX_PATTERN_LENGTH:
        raise KitError(f'@replace requires a "pattern" less than {MAX_PATTERN_LENGTH} characters')
    if utf16_length(replacement) > MAX_REPLACEMENT_LENGTH:
        raise KitError(f'@replace requires a "replacement" less than {MAX_REPLACEMENT_LENGTH} characters')
    out, i, n = [], 0, len(pattern)
    wanted = [_canonical(c) for c in pattern] if ignorecase else None
    while i <= len(value) - n:
        piece = value[i : i + n]
        hit = piece == pattern if wanted is None else [_canonical(c) for c in piece] == wanted
        if not hit:
            out.append(value[i])
            i += 1
            continue
        out.append(_expand(replacement, piece, value[:i], value[i + n :]))
        i += n
        if not globally:
            break
    out.append(value[i:])
    return "".join(out)


def _expand(replacement: str, match: str, before: str, after: str) -> str:
    """JavaScript's replacement patterns: $$, $&, $` and $' (no groups: $1 stays as written)."""
    if "$" not in replacement:
        return replacement
    out, i = [], 0
    while i < len(replacement):
        ch = replacement[i]
        nxt = replacement[i + 1] if i + 1 < len(replacement) else ""
        if ch == "$" and nxt in ("$", "&", "`", "'"):
            out.append({"$": "$", "&": match, "`": before, "'": after}[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _run_replace(opts: Any, payload: Any, depth: int) -> Any:
    opts = _opts("@replace", opts, 'a "pattern" key')
    if not js_truthy(opts.get("pattern", UNDEFINED)):
        raise KitError('@replace requires a "pattern" key')
    pattern = opts["pattern"]
    replacement = opts.get("replacement")
    replacement = "" if replacement is None else replacement
    ignorecase = opts.get("ignorecase")
    ignorecase = False if ignorecase is None else ignorecase
    globally = opts.get("global")
    globally = True if globally is None else globally
    if not js_truthy(opts.get("value", UNDEFINED)):
        return UNDEFINED
    value = kit_resolve(opts["value"], payload, depth)
    if isinstance(value, bool | int | float):
        value = js_string(value)
    if not (
        isinstance(value, str) and isinstance(pattern, str) and isinstance(replacement, str)
        and isinstance(ignorecase, bool) and isinstance(globally, bool)
    ):  # fmt: skip
        return ""
    out = _replace(value, pattern, replacement, globally=globally, ignorecase=ignorecase)
    pattern2 = opts.get("pattern2", UNDEFINED)
    replacement2 = opts.get("replacement2")
    replacement2 = "" if replacement2 is None and js_truthy(pattern2) else replacement2
    if js_truthy(pattern2) and isinstance(pattern2, str) and isinstance(replacement2, str):
        out = _replace(out, pattern2, replacement2, globally=globally, ignorecase=ignorecase)
    return out


def _run_array_path(data: Any, payload: Any, depth: int) -> Any:
    if not isinstance(data, list):
        raise KitError(f"@arrayPath expected array, got {js_type(data)}")
    path = data[0] if data else UNDEFINED
    shape = data[1] if len(data) > 1 else UNDEFINED
    root = (
        js_get(payload, path.replace("$.", "", 1))
        if isinstance(path, str)
        else kit_resolve(path, payload, depth)
    )
    if js_type(root) in ("object", "array") and isinstance(shape, dict) and shape:
        items = root if isinstance(root, list) else [root]
        return [kit_resolve(shape, item, depth) for item in items]
    return root


def _string_directive(name: str, fn):
    def run(value: Any, payload: Any, depth: int) -> Any:
        text = kit_resolve(value, payload, depth)
        if not isinstance(text, str):
            raise KitError(f"{name}: expected string, got {js_type(text)}")
        return fn(text, payload)

    return run


_TRIPLE = re.compile(r"\{\{\{([^}]+)\}\}\}")
_DOUBLE = re.compile(r"\{\{([^}]+)\}\}")


def render_template(template: str, data: Any) -> str:
    """actions-core's placeholders `render`: `{{path}}` (and `{{{path}}}`), a missing value as ''."""

    def replacer(m: re.Match) -> str:
        value = js_get(data, m.group(1).strip())
        return "" if value is None or value is UNDEFINED else js_string(value)

    if "{{" not in template:
        return template
    return _DOUBLE.sub(replacer, _TRIPLE.sub(replacer, template))


def _run_flatten(opts: Any, payload: Any, depth: int) -> Any:
    opts = _opts("@flatten", opts, 'a "separator" key')
    if not js_truthy(opts.get("separator", UNDEFINED)):
        raise KitError('@flatten requires a "separator" key')
    separator = kit_resolve(opts["separator"], payload, depth)
    if not isinstance(separator, str):
        raise KitError("@flatten requires a string separator")
    value = kit_resolve(opts.get("value", UNDEFINED), payload, depth)
    out: dict[str, Any] = {}
    _flatten(value, "", separator, js_truthy(opts.get("omitArrays", UNDEFINED)), out)
    return out


def _flatten(value: Any, prefix: str, separator: str, omit_arrays: bool, out: dict) -> None:
    if isinstance(value, dict) or (not omit_arrays and isinstance(value, list)):
        items = (
            [(k, value[k]) for k in js_keys(value)]
            if isinstance(value, dict)
            else [(str(i), v) for i, v in enumerate(value)]
        )
        for key, item in items:
            _flatten(item, f"{prefix}{separator}{key}" if prefix else key, separator, omit_arrays, out)
        return
    out[prefix] = value  # a key set again keeps its place, as with object spread


def _run_json(opts: Any, payload: Any, depth: int) -> Any:
    opts = _opts("@json", opts, 'a "value" key')
    if not js_truthy(opts.get("mode", UNDEFINED)):
        raise KitError('@json requires a "mode" key')
    if not js_truthy(opts.get("value", UNDEFINED)):
        raise KitError('@json requires a "value" key')
    value = kit_resolve(opts["value"], payload, depth)
    if opts["mode"] == "encode":
        return js_json(value)
    if opts["mode"] == "decode":
        if isinstance(value, str):
            try:
                return js_json_parse(value)
            except ValueError:
                return value
        return value
    return UNDEFINED


def _assign_source(value: Any) -> list[tuple[str, Any]]:
    """The own enumerable properties `Object.assign` copies from a value."""
    if isinstance(value, dict):
        return [(k, value[k]) for k in js_keys(value)]
    if isinstance(value, list):
        return [(str(i), v) for i, v in enumerate(value)]
    if isinstance(value, str):
        return [(str(i), js_member(value, str(i))) for i in range(utf16_length(value))]
    return []


def _run_merge(opts: Any, payload: Any, depth: int) -> Any:
    opts = _opts("@merge", opts, 'an "objects" key and a "direction" key')
    if not js_truthy(opts.get("direction", UNDEFINED)):
        raise KitError('@merge requires a "direction" key')
    direction = kit_resolve(opts["direction"], payload, depth)
    if not js_truthy(opts.get("objects", UNDEFINED)):
        raise KitError('@merge requires a "objects" key')
    if not isinstance(opts["objects"], list):
        raise KitError("@merge: expected opts.array")
    objects = [kit_resolve(v, payload, depth) for v in opts["objects"]]
    if direction == "left":
        objects.reverse()
    out: dict[str, Any] = {}
    for obj in objects:
        out.update(_assign_source(obj))
    return {k: out[k] for k in js_keys(out)}


def _run_transform(opts: Any, payload: Any, depth: int) -> Any:
    opts = _opts("@transform", opts, 'an "apply" key and a "mapping" key')
    if not js_truthy(opts.get("mapping", UNDEFINED)):
        raise KitError('@transform requires a "mapping" key')
    if not js_truthy(opts.get("apply", UNDEFINED)):
        raise KitError('@transform requires a "apply" key')
    if not isinstance(opts["apply"], dict):
        raise KitError('@transform "apply" key should be an object')
    if not isinstance(payload, dict):
        raise KitError(f"data must be an object, got {js_type(payload)}")
    kit_validate(opts["apply"])
    applied = kit_clean(kit_resolve(opts["apply"], payload, depth))
    return kit_resolve(opts["mapping"], applied, depth)


def _run_exclude_when_null(value: Any, payload: Any, depth: int) -> Any:
    resolved = kit_resolve(value, payload, depth)
    if resolved is None:
        return UNDEFINED
    return _clean_nulls(resolved)


def _clean_nulls(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    return {
        k: UNDEFINED if v is None else _clean_nulls(v) if isinstance(v, dict) else v for k, v in value.items()
    }


def _run_literal(value: Any, payload: Any, depth: int) -> Any:
    return kit_resolve(value, payload, depth)


_RUN = {
    "@if": _run_if,
    "@case": _run_case,
    "@replace": _run_replace,
    "@arrayPath": _run_array_path,
    "@path": _string_directive("@path", lambda path, payload: js_get(payload, path.replace("$.", "", 1))),
    "@template": _string_directive("@template", render_template),
    "@literal": _run_literal,
    "@flatten": _run_flatten,
    "@json": _run_json,
    "@merge": _run_merge,
    "@transform": _run_transform,
    "@excludeWhenNull": _run_exclude_when_null,
}
