"""Triggers: the subset of Segment's FQL that decides whether a mapping runs for a message.

Grammar (REFERENCE §4)::

    expr       := and ("or" and)*
    and        := unary ("and" unary)*
    unary      := "!" unary | "(" expr ")" | call | comparison
    call       := ("contains" | "match") "(" field "," string ")"
    comparison := field ("=" | "!=" | "<" | "<=" | ">" | ">=") value
    value      := string | number | "null" | "true" | "false"
    field      := type | event | name | userId | anonymousId | groupId | messageId
                | (properties | traits | context) ("." key)+

`trigger_parse` raises `TriggerError` (with the 0-based position) and nothing else; a parsed
`Trigger` evaluates any JSON value without raising. A missing field equals null; `<`, `>` and
friends compare numbers only (anything else is false); `match` is a glob (`*`, `?`).
"""

from __future__ import annotations

import fnmatch
import functools
import re
from dataclasses import dataclass
from typing import Any

FIELDS = ("type", "event", "name", "userId", "anonymousId", "groupId", "messageId")
OBJECT_FIELDS = ("properties", "traits", "context")
MAX_LENGTH = 2000
_MAX_DEPTH = 50


class TriggerError(ValueError):
    """A trigger that does not parse; `position` is where (0-based) in the text."""

    def __init__(self, message: str, *, position: int, text: str = ""):
        self.message = message
        self.position = position
        self.text = text
        super().__init__(f"{message} at position {position + 1}")

    def pointer(self) -> str:
        """The trigger and a caret under the offending position (for the screens)."""
        return f"{self.text}\n{' ' * self.position}^"


@dataclass(frozen=True)
class _Token:
    kind: str  # "name", "string", "number", "op", "(", ")", ",", "!", "end"
    value: Any
    position: int


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<op>!=|<=|>=|=|<|>)
  | (?P<punct>[(),!])
  | (?P<name>[A-Za-z_$][A-Za-z0-9_$\-]*(?:\.[A-Za-z0-9_$\-]+)*)
  | (?P<quoted>`(?:[^`\\]|\\.)*`)
    """,
    re.VERBOSE,
)
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "`": "`"}


def _unescape(body: str, position: int, text: str) -> str:
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1]  # the regex guarantees a character after a backslash
            if nxt not in _ESCAPES:
                raise TriggerError(f"Unknown escape \\{nxt}", position=position + i + 1, text=text)
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _tokenize(text: str) -> list[_Token]:
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            ch = text[pos]
            hint = "an unterminated string" if ch in '"`' else f"unexpected character {ch!r}"
            raise TriggerError(hint[0].upper() + hint[1:], position=pos, text=text)
        kind = m.lastgroup
        raw = m.group()
        if kind == "string":
            tokens.append(_Token("string", _unescape(raw[1:-1], pos + 1, text), pos))
        elif kind == "number":
            number = float(raw)
            if number != number or number in (float("inf"), float("-inf")):
                raise TriggerError("Number out of range", position=pos, text=text)
            tokens.append(
                _Token("number", int(number) if number.is_integer() and "." not in raw else number, pos)
            )
        elif kind == "op":
            tokens.append(_Token("op", raw, pos))
        elif kind == "punct":
            tokens.append(_Token(raw, raw, pos))
        elif kind == "name":
            tokens.append(_Token("name", raw, pos))
        elif kind == "quoted":
            tokens.append(_Token("name", _unescape(raw[1:-1], pos + 1, text), pos))
        pos = m.end()
    tokens.append(_Token("end", None, len(text)))
    return tokens


# --- The tree: small callables over the message ---------------------------------------------------

_MISSING = object()


def _lookup(message: Any, path: tuple[str, ...]) -> Any:
    value = message
    for key in path:
        if isinstance(value, dict) and key in value:
            value = value[key]
        else:
            return _MISSING
    return value


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _equal(a: Any, b: Any) -> bool:
    if a is _MISSING:
        a = None
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


_ORDER = {
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
        if not (_is_number(actual) and _is_number(self.value)):
            return False
        return _ORDER[self.op](actual, self.value)


@dataclass(frozen=True)
class Contains:
    path: tuple[str, ...]
    needle: str

    def __call__(self, message: Any) -> bool:
        actual = _lookup(message, self.path)
        return isinstance(actual, str) and self.needle in actual


@functools.lru_cache(maxsize=512)
def _glob(pattern: str) -> re.Pattern:
    return re.compile(fnmatch.translate(pattern), re.DOTALL)


@dataclass(frozen=True)
class Match:
    path: tuple[str, ...]
    pattern: str

    def __call__(self, message: Any) -> bool:
        actual = _lookup(message, self.path)
        return isinstance(actual, str) and _glob(self.pattern).match(actual) is not None


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
class Trigger:
    """A parsed trigger: call it with a message to know whether it matches."""

    text: str
    root: Any

    def __call__(self, message: Any) -> bool:
        return bool(self.root(message))


# --- The parser ---------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0

    def error(self, message: str, token: _Token | None = None) -> TriggerError:
        token = token or self.peek()
        return TriggerError(message, position=token.position, text=self.text)

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        return token.kind == "name" and token.value == word

    def parse(self):
        if self.peek().kind == "end":
            raise self.error('The trigger is empty: expected a condition such as type = "track"')
        node = self.expr()
        if self.peek().kind != "end":
            raise self.error(f"Expected `and`, `or` or the end, found {self.describe(self.peek())}")
        return node

    def describe(self, token: _Token) -> str:
        if token.kind == "end":
            return "the end"
        if token.kind == "string":
            return f'"{token.value}"'
        return f"`{token.value}`"

    def expr(self):
        parts = [self.conjunction()]
        while self.keyword("or"):
            self.take()
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))

    def conjunction(self):
        parts = [self.unary()]
        while self.keyword("and"):
            self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else All(tuple(parts))

    def unary(self):
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise self.error("The trigger is nested too deeply")
        try:
            token = self.peek()
            if token.kind == "!":
                self.take()
                return Not(self.unary())
            if token.kind == "(":
                self.take()
                node = self.expr()
                if self.peek().kind != ")":
                    raise self.error(f"Expected `)`, found {self.describe(self.peek())}")
                self.take()
                return node
            if (
                token.kind == "name"
                and token.value in ("contains", "match")
                and self.tokens[self.i + 1].kind == "("
            ):
                return self.call()
            return self.comparison()
        finally:
            self.depth -= 1

    def call(self):
        name = self.take().value
        self.take()  # "("
        path = self.field()
        if self.peek().kind != ",":
            raise self.error(f"Expected `,` after the field of {name}(), found {self.describe(self.peek())}")
        self.take()
        arg = self.peek()
        if arg.kind != "string":
            raise self.error(f"{name}() takes a string as its second argument, found {self.describe(arg)}")
        self.take()
        if self.peek().kind != ")":
            raise self.error(f"Expected `)` to close {name}(), found {self.describe(self.peek())}")
        self.take()
        return Contains(path, arg.value) if name == "contains" else Match(path, arg.value)

    def field(self) -> tuple[str, ...]:
        token = self.peek()
        if token.kind != "name" or token.value in ("and", "or"):
            raise self.error(
                f"Expected a field (such as type, event or properties.plan), found {self.describe(token)}"
            )
        path = tuple(token.value.split("."))
        if path[0] in OBJECT_FIELDS:
            if len(path) < 2 or not all(path[1:]):
                raise self.error(f"Name a key of {path[0]}, such as {path[0]}.plan")
        elif path[0] not in FIELDS or len(path) > 1:
            raise self.error(
                f"Unknown field `{token.value}`: use {', '.join(FIELDS)}, "
                "or properties.*, traits.*, context.*"
            )
        self.take()
        return path

    def comparison(self):
        path = self.field()
        op = self.peek()
        if op.kind != "op":
            raise self.error(
                f"Expected an operator (= != < <= > >=) after the field, found {self.describe(op)}"
            )
        self.take()
        value_token = self.take()
        if value_token.kind in ("string", "number"):
            value = value_token.value
        elif value_token.kind == "name" and value_token.value in ("null", "true", "false"):
            value = {"null": None, "true": True, "false": False}[value_token.value]
        else:
            raise self.error(
                'Expected a value (a "string", a number, null, true or false), '
                f"found {self.describe(value_token)}",
                value_token,
            )
        if op.value in _ORDER and not _is_number(value):
            raise self.error(f"`{op.value}` compares numbers: put a number after it", value_token)
        return Compare(path, op.value, value)


def trigger_parse(text: Any) -> Trigger:
    """Parse a trigger; raise TriggerError pointing at the first problem."""
    if not isinstance(text, str):
        raise TriggerError("The trigger must be text", position=0)
    if len(text) > MAX_LENGTH:
        raise TriggerError(f"The trigger is over {MAX_LENGTH} characters", position=MAX_LENGTH, text=text)
    return Trigger(text=text, root=_Parser(text).parse())


@functools.lru_cache(maxsize=1024)
def trigger_compile(text: str) -> Trigger:
    """trigger_parse, cached: mappings are compiled once per process and text."""
    return trigger_parse(text)
