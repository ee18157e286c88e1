"""actions-core's placeholders: `{{path}}` (and `{{{path}}}`) in a `@template`, rendered with a
missing value as ''; `template_compile` finds a template's text and paths once."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .values import UNDEFINED, js_get, js_string, path_split

TRIPLE_BRACES = re.compile(r"\{\{\{([^}]+)\}\}\}")
DOUBLE_BRACES = re.compile(r"\{\{([^}]+)\}\}")


def render_template(template: str, data: Any) -> str:
    """actions-core's placeholders `render`: `{{path}}` (and `{{{path}}}`), a missing value as ''."""

    def replacer(m: re.Match) -> str:
        value = js_get(data, m.group(1).strip())
        return "" if value is None or value is UNDEFINED else js_string(value)

    if "{{" not in template:
        return template
    return DOUBLE_BRACES.sub(replacer, TRIPLE_BRACES.sub(replacer, template))


def template_compile(template: str) -> Callable[[Any], str]:
    """A template without `{{{`: its text and its paths, found once."""
    parts: list[Any] = []
    pos = 0
    for m in DOUBLE_BRACES.finditer(template):
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
