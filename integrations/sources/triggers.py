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

`trigger_parse` raises `TriggerError` (with the 0-based position) and nothing else; it gives a
`Trigger` (`trigger_tree.py`: what a parsed trigger is and how it reads a message).

Segment's published parser (`parseFql` of `@segment/destination-subscriptions`) reads some
triggers differently from this grammar; `Trigger.warnings` says where, so the editor can warn (the
list is in docs/sources.md, "Triggers: where Segment's parser differs").
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from .trigger_tree import (
    ORDER,
    All,
    AnyOf,
    Compare,
    Contains,
    Match,
    Not,
    Trigger,
    TriggerWarning,
    is_number,
)

FIELDS = ("type", "event", "name", "userId", "anonymousId", "groupId", "messageId")
OBJECT_FIELDS = ("properties", "traits", "context")
MAX_LENGTH = 2000
# What Segment's published parser reads (see docs/sources.md): other fields are ignored there.
SEGMENT_FIELDS = ("type", "event", "name", "userId", *OBJECT_FIELDS)
SEGMENT_CALL_FIELDS = ("event", "name", "userId", *OBJECT_FIELDS)
_SEGMENT_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_SEGMENT_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_SEGMENT_MATCH = re.compile(r"\*[^*?\[]*|[^*?\[]*\*")
_SEGMENT_WHITESPACE = re.compile(r"[^\S \t\n]")
_SEGMENT_TERMINATORS = ("", " ", "\t", "\n", ",", ")", "]")
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|`(?:[^`\\]|\\.)*`')
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
    raw: str = ""
    quoted: bool = False


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<number>-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)
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
            tokens.append(_Token("string", _unescape(raw[1:-1], pos + 1, text), pos, raw))
        elif kind == "number":
            number = float(raw)
            if number != number or number in (float("inf"), float("-inf")):
                raise TriggerError("Number out of range", position=pos, text=text)
            tokens.append(
                _Token("number", int(number) if number.is_integer() and "." not in raw else number, pos, raw)
            )
        elif kind == "op":
            tokens.append(_Token("op", raw, pos))
        elif kind == "punct":
            tokens.append(_Token(raw, raw, pos))
        elif kind == "name":
            tokens.append(_Token("name", raw, pos, raw))
        elif kind == "quoted":
            tokens.append(_Token("name", _unescape(raw[1:-1], pos + 1, text), pos, raw, quoted=True))
        pos = m.end()
    tokens.append(_Token("end", None, len(text)))
    return tokens


# --- The parser ---------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0
        self.parens = 0
        self.grouped: set[int] = set()  # conjunctions written in parentheses (no `and-or` warning)
        self.warnings: dict[str, TriggerWarning] = {}

    def warn(self, code: str, message: str) -> None:
        self.warnings.setdefault(code, TriggerWarning(code, message))

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
            self.check_keyword(self.take())
            parts.append(self.conjunction())
        if len(parts) > 1 and any(isinstance(p, All) and id(p) not in self.grouped for p in parts):
            self.warn(
                "and-or",
                "Segment does not give `and` precedence over `or`: it applies the last of them to every "
                "condition at the same level. Add parentheses.",
            )
        return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))

    def conjunction(self):
        parts = [self.unary()]
        while self.keyword("and"):
            self.check_keyword(self.take())
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
                after = self.peek()
                if after.position > token.position + 1:
                    self.warn("not-space", "Segment's parser refuses a space after `!`.")
                if self.is_call():
                    return self.call(negated=True)
                self.warn(
                    "not",
                    "Segment ignores `!` unless it stands right before contains() or match(): "
                    "write the opposite comparison instead (`!=` for `=`).",
                )
                return Not(self.unary())
            if token.kind == "(":
                self.take()
                if self.parens:
                    self.warn("nested", "Segment's parser does not read nested parentheses.")
                self.parens += 1
                node = self.expr()
                if self.peek().kind != ")":
                    raise self.error(f"Expected `)`, found {self.describe(self.peek())}")
                self.take()
                self.parens -= 1
                self.grouped.add(id(node))
                return node
            if self.is_call():
                return self.call()
            return self.comparison()
        finally:
            self.depth -= 1

    def is_call(self) -> bool:
        token = self.peek()
        return (
            token.kind == "name"
            and token.value in ("contains", "match")
            and self.tokens[self.i + 1].kind == "("
        )

    def call(self, negated: bool = False):
        name = self.take().value
        self.take()  # "("
        if self.parens:
            self.warn("nested", "Segment's parser does not read contains() or match() inside parentheses.")
        path = self.field()
        if path[0] not in SEGMENT_CALL_FIELDS:
            self.warn("field", f"Segment's parser ignores {name}() on `{path[0]}`.")
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
        self.check_string(arg)
        if name == "contains":
            return Contains(path, arg.value, negated)
        if not _SEGMENT_MATCH.fullmatch(arg.value):
            self.warn(
                "match",
                'Segment\'s match() only reads "text*" (starts with) and "*text" (ends with) patterns.',
            )
        return Match(path, arg.value, negated)

    def check_keyword(self, token: _Token) -> None:
        if (
            self.text[token.position + len(token.raw) : token.position + len(token.raw) + 1]
            not in _SEGMENT_TERMINATORS
        ):
            self.warn("spacing", f"Segment's parser needs a space after `{token.raw}`.")

    def check_string(self, token: _Token) -> None:
        if "\\" in token.raw:
            self.warn("escape", "Segment's parser keeps backslashes in text as written (no escapes).")

    def field(self) -> tuple[str, ...]:
        token = self.peek()
        if token.kind != "name" or token.value in ("and", "or"):
            raise self.error(
                f"Expected a field (such as type, event or properties.plan), found {self.describe(token)}"
            )
        path = tuple(token.value.split("."))
        if token.quoted:
            self.warn("quoted", "Segment's parser does not read back-quoted fields.")
        elif path[0] not in SEGMENT_FIELDS:
            self.warn("field", f"Segment's parser ignores conditions on `{path[0]}`.")
        if any(not _SEGMENT_KEY.fullmatch(key) or key in ("and", "or", "null") for key in path[1:]):
            self.warn("key", "Segment's parser reads only keys that start with a letter or `_` and hold "
                             "letters, digits, `_` and `-` (not and, or, null).")  # fmt: skip
        nxt = self.text[token.position + len(token.raw) : token.position + len(token.raw) + 1]
        if nxt in ("<", ">"):
            self.warn("spacing", "Segment's parser needs a space between a field and `<` or `>`.")
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
        if len(op.value) == 2 and self.text[op.position + 2 : op.position + 3] not in _SEGMENT_TERMINATORS:
            self.warn("spacing", f"Segment's parser needs a space after `{op.value}`.")
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
        if op.value in ORDER and not is_number(value):
            raise self.error(f"`{op.value}` compares numbers: put a number after it", value_token)
        if value_token.kind == "string":
            self.check_string(value_token)
        if value_token.kind == "number" and not _SEGMENT_NUMBER.fullmatch(value_token.raw):
            self.warn("number", "Segment's parser reads numbers only as digits with an optional `.` inside "
                                "(no exponent, no leading or trailing `.`).")  # fmt: skip
        if op.value in ("=", "!=") and value_token.kind != "string":
            self.check_as_text(path[0], op.value, value)
        return Compare(path, op.value, value)

    def check_as_text(self, root: str, op: str, value: Any) -> None:
        """Where Segment compares `= null/true/false/number` as text (or `!=` loosely)."""
        as_text = (
            root in ("type", "event")
            or (root == "name" and value is not None)
            or (root == "userId" and (is_number(value) or (op == "!=" and isinstance(value, bool))))
            or (root in OBJECT_FIELDS and op == "!=" and value is not None)
        )
        if as_text:
            shown = "null" if value is None else str(value).lower() if isinstance(value, bool) else value
            self.warn(
                "as-text",
                f"Segment reads `{root} {op} {shown}` differently: it compares with the text "
                f'"{shown}", or for `!=` with a number or a boolean is false when the field is not one.',
            )


def trigger_parse(text: Any) -> Trigger:
    """Parse a trigger; raise TriggerError pointing at the first problem."""
    if not isinstance(text, str):
        raise TriggerError("The trigger must be text", position=0)
    if len(text) > MAX_LENGTH:
        raise TriggerError(f"The trigger is over {MAX_LENGTH} characters", position=MAX_LENGTH, text=text)
    parser = _Parser(text)
    root = parser.parse()
    if _SEGMENT_WHITESPACE.search(_STRINGS.sub("", text)):
        parser.warn("spacing", "Segment's parser takes only spaces, tabs and newlines between words.")
    return Trigger(text=text, root=root, warnings=tuple(parser.warnings.values()))


@functools.lru_cache(maxsize=1024)
def trigger_compile(text: str) -> Trigger:
    """trigger_parse, cached: mappings are compiled once per process and text."""
    return trigger_parse(text)
