"""A parsed trigger (`triggers.py` parses the text): small callables over a message.

A `Trigger` evaluates any JSON value without raising. A missing field equals null; `<`, `>` and
friends compare numbers only (anything else is false); `match` is a glob (`*`, `?`); `!` directly
before `contains()`/`match()` is Segment's `not_contains`/`not_starts_with`/`not_ends_with` (true
only for text). Fields are read as Segment's `validate` reads them (a path stops at a falsy value;
text and lists answer indexes and `length`).
"""

from __future__ import annotations

import fnmatch
import functools
import re
from dataclasses import dataclass, field
from typing import Any

from .mapping_kit import UNDEFINED, js_get


def _lookup(message: Any, path: tuple[str, ...]) -> Any:
    """The field as Segment's `validate` reads it (UNDEFINED when missing)."""
    if isinstance(message, dict):
        value = message.get(path[0], UNDEFINED)
        if len(path) == 1:
            return value
        if len(path) == 2 and isinstance(value, dict):
            return value.get(path[1], UNDEFINED)
        return js_get(value, list(path[1:]))
    return js_get(message, list(path))


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _equal(a: Any, b: Any) -> bool:
    if a is UNDEFINED:
        a = None
    if is_number(a) and is_number(b):
        return a == b
    return type(a) is type(b) and a == b


ORDER = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


@dataclass(frozen=True)
class Compare:
    path: tuple[str, ...]
    op: str
    value: Any

    def __call__(self, message: Any) -> bool:
        actual = _lookup(message, self.path)
        if self.op == "=":
            return _equal(actual, self.value)
        if self.op == "!=":
            return not _equal(actual, self.value)
        if not (is_number(actual) and is_number(self.value)):
            return False
        return ORDER[self.op](actual, self.value)


@dataclass(frozen=True)
class Contains:
    path: tuple[str, ...]
    needle: str
    negated: bool = False

    def __call__(self, message: Any) -> bool:
        actual = _lookup(message, self.path)
        return isinstance(actual, str) and (self.needle in actual) is not self.negated


@functools.lru_cache(maxsize=512)
def _glob(pattern: str) -> re.Pattern:
    return re.compile(fnmatch.translate(pattern), re.DOTALL)


@dataclass(frozen=True)
class Match:
    path: tuple[str, ...]
    pattern: str
    negated: bool = False

    def __call__(self, message: Any) -> bool:
        actual = _lookup(message, self.path)
        return isinstance(actual, str) and (_glob(self.pattern).match(actual) is not None) is not self.negated


@dataclass(frozen=True)
class Not:
    inner: Any

    def __call__(self, message: Any) -> bool:
        return not self.inner(message)


@dataclass(frozen=True)
class All:
    parts: tuple

    def __call__(self, message: Any) -> bool:
        return all(p(message) for p in self.parts)


@dataclass(frozen=True)
class AnyOf:
    parts: tuple

    def __call__(self, message: Any) -> bool:
        return any(p(message) for p in self.parts)


@dataclass(frozen=True)
class TriggerWarning:
    """Where Segment's parser reads a trigger differently: `code` (docs/sources.md) and why."""

    code: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Trigger:
    """A parsed trigger: call it with a message to know whether it matches. `warnings` say where
    Segment's own parser would read the text differently (empty when it reads it the same)."""

    text: str
    root: Any
    warnings: tuple[TriggerWarning, ...] = field(default=(), compare=False)

    def __call__(self, message: Any) -> bool:
        return bool(self.root(message))
