"""JavaScript's reading of JSON values, as mapping-kit and actions-core's `get` see them: the
missing value `UNDEFINED`, truthiness, `String(value)`, member access and paths, `JSON.stringify`."""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any


class _Undefined:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Any = _Undefined()


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
