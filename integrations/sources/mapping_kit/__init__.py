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

One module per part of actions-core's `mapping-kit/`, each importing only the ones before it:
`values` (JavaScript's reading of JSON values, `get`), `validate` (`validate.js`), `placeholders`
(`{{path}}` templates), `resolve` (`index.js`: the directives, `resolve` and the compiled form).
"""

from .resolve import is_kit_directive, kit_clean, kit_compile, kit_resolve
from .validate import KitError, kit_validate
from .values import UNDEFINED, js_get

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
