"""Evaluation of a mapping-kit value (mapping-kit/index.js): `kit_resolve` runs the directives
over a payload, `kit_compile` makes a (validated) value a function of the payload once, and
`kit_clean` drops what is undefined."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from .placeholders import TRIPLE_BRACES, render_template, template_compile
from .validate import MAX_DEPTH, MAX_PATTERN_LENGTH, MAX_REPLACEMENT_LENGTH, KitError, kit_validate
from .values import (
    UNDEFINED,
    js_get,
    js_json,
    js_json_parse,
    js_keys,
    js_member,
    js_string,
    js_truthy,
    js_type,
    path_split,
    utf16_length,
)


def is_kit_directive(value: Any) -> bool:
    """An object of `@` keys (and `_metadata`) only: what `resolve` runs as a directive."""
    if not isinstance(value, dict) or not any(k.startswith("@") for k in value):
        return False
    return all(k.startswith("@") or k == "_metadata" for k in value)


def kit_resolve(mapping: Any, payload: Any, depth: int = 0) -> Any:
    """Segment's `resolve`: the value of a (validated) mapping-kit value for `payload`."""
    if isinstance(mapping, dict):
        if depth > MAX_DEPTH:
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
            if name == "@template" and isinstance(arg, str) and not TRIPLE_BRACES.search(arg):
                return template_compile(arg)
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
