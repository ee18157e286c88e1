"""The mapping engine: value specs evaluated against a message, in the hub's format or Segment's.

A field's value is either Segment's mapping-kit (raw JSON mixed with `@path`, `@template`, `@if`...
directives, read exactly as Segment's `transform` reads it: see the `mapping_kit` package), or one
of the hub's own specs::

    {"path": "$.properties.shop"}          # also "properties.shop", "items[0].id", "$." (everything)
    {"path": "properties", "rename": {"segmentX": "kableX", "nested.field": "dimension"}}
    {"literal": "anything JSON"}
    {"template": "{{traits.first_name}} {{traits.last_name}}"}
    {"coalesce": [spec, spec, ...]}          # the first that yields a value other than null
    {"object": {"website": spec, ...}}       # an object of values (keys whose value is missing left out)

An object with exactly one of the hub's keys (`path`, `literal`, `template`, `coalesce`, `object`,
and `rename` beside `path`) is the hub's spec; anything else is mapping-kit. A missing path yields
nothing (the target is left out); null stays null. `mapping_compile` raises `MappingError` (or
`TriggerError` for the trigger) and nothing else; evaluating a mapping raises `MappingFailed` when a
directive fails on the message (as Segment's would); `mappings_run` never raises.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .mapping_kit import UNDEFINED, KitError, kit_clean, kit_compile, kit_validate
from .trigger_tree import Trigger
from .triggers import TriggerError, trigger_compile

__all__ = [
    "MISSING",
    "CompiledMapping",
    "MappingError",
    "MappingFailed",
    "MappingOutput",
    "TriggerError",
    "mapping_compile",
    "mappings_run",
    "paths_of",
    "value_compile",
]

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING", "__bool__": lambda self: False})()
_MAX_SPEC_DEPTH = 10


class MappingError(ValueError):
    """A mapping that cannot be compiled; `field` names the target (or "" for the whole mapping)."""

    def __init__(self, message: str, *, field: str = ""):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class MappingFailed(ValueError):
    """A mapping-kit directive that fails on a message (Segment's `transform` throws there too)."""


# --- Paths --------------------------------------------------------------------------------------

_PATH_PART = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")


@functools.lru_cache(maxsize=2048)
def path_compile(text: str) -> tuple[str | int, ...]:
    """`$.a.b[0]` → ("a", "b", 0); raise MappingError for what is not a path."""
    if not isinstance(text, str):
        raise MappingError("a path must be text")
    body = text.strip()
    if body.startswith("$"):
        body = body[1:]
    if body in ("", "."):
        return ()
    parts: list[str | int] = []
    pos = 0
    while pos < len(body):
        m = _PATH_PART.match(body, pos)
        if m is None or (m.group(1) is not None and pos > 0 and body[pos] != "."):
            raise MappingError(f"{text!r} is not a path (like properties.shop or items[0].id)")
        parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if body.startswith(".") and len(parts) == 0:
        raise MappingError(f"{text!r} is not a path")
    return tuple(parts)


def path_get(message: Any, path: tuple[str | int, ...]) -> Any:
    """The value at `path`, or MISSING."""
    value = message
    for key in path:
        if isinstance(key, int):
            if isinstance(value, list) and 0 <= key < len(value):
                value = value[key]
            else:
                return MISSING
        elif isinstance(value, dict) and key in value:
            value = value[key]
        else:
            return MISSING
    return value


def paths_of(message: Any, *, limit: int = 200, prefix: str = "") -> list[str]:
    """Every leaf and object path of a message (for the editor's suggestions), depth-first."""
    out: list[str] = []

    def walk(value: Any, path: str, depth: int) -> None:
        if len(out) >= limit or depth > 6:
            return
        if path:
            out.append(path)
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(k, str) and re.fullmatch(r"[^.\[\]]+", k):
                    walk(v, f"{path}.{k}" if path else k, depth + 1)
        elif isinstance(value, list) and value:
            walk(value[0], f"{path}[0]", depth + 1)

    walk(message, prefix, 0)
    return out


# --- Value specs --------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"{{\s*([^{}]*?)\s*}}")


@dataclass(frozen=True)
class Value:
    """A compiled value spec: call it with a message."""

    kind: str
    path: tuple = ()
    literal: Any = None
    template: tuple = ()  # alternating text and path tuples
    rename: tuple = ()  # ((from_path, to_key), ...)
    options: tuple = ()
    members: tuple = ()  # ((key, Value), ...) of an object
    spec: Any = None
    run: Any = None  # a mapping-kit value, compiled (see mapping_kit.kit_compile)

    def __call__(self, message: Any) -> Any:
        if self.kind == "literal":
            return copy.deepcopy(self.literal)
        if self.kind == "path":
            value = path_get(message, self.path)
            if self.rename and isinstance(value, dict):
                value = _renamed(value, self.rename)
            return value
        if self.kind == "template":
            return "".join(
                part if isinstance(part, str) else _as_text(path_get(message, part)) for part in self.template
            )
        if self.kind == "object":
            out = {}
            for key, member in self.members:
                value = member(message)
                if value is not MISSING:
                    out[key] = value
            return out
        if self.kind == "kit":
            try:
                result = self.run(message)
            except KitError as exc:
                raise MappingFailed(str(exc)) from None
            return MISSING if result is UNDEFINED else kit_clean(result)
        for option in self.options:  # coalesce
            value = option(message)
            if value is not MISSING and value is not None:
                return value
        return MISSING


def _as_text(value: Any) -> str:
    if value is MISSING or value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    import orjson

    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


def _renamed(value: dict, rename: tuple) -> dict:
    """Kable's Properties Mappings: move each `from` (dot path) to the key `to`; keep the rest."""
    out = copy.deepcopy(value)
    for source, target in rename:
        found = path_get(out, source)
        if found is MISSING:
            continue
        parent = path_get(out, source[:-1]) if len(source) > 1 else out
        if isinstance(parent, dict):
            parent.pop(source[-1], None)
        out[target] = found
    return out


_KINDS = frozenset({"path", "literal", "template", "coalesce", "object"})
_HUB_KEYS = _KINDS | {"rename"}


def is_hub_spec(spec: Any) -> bool:
    """Whether a field's value is the hub's own spec (else it is Segment's mapping-kit)."""
    return isinstance(spec, dict) and len(_KINDS & spec.keys()) == 1 and spec.keys() <= _HUB_KEYS


def value_compile(spec: Any, *, field: str = "", depth: int = 0) -> Value:
    """Compile a value (the hub's spec or mapping-kit, see the module doc); raise MappingError
    naming `field`."""
    if depth > _MAX_SPEC_DEPTH:
        raise MappingError("the value is nested too deeply", field=field)
    if not is_hub_spec(spec):
        try:
            kit_validate(spec)
        except KitError as exc:
            raise MappingError(str(exc), field=field) from None
        except RecursionError:
            raise MappingError("the value is nested too deeply", field=field) from None
        spec = copy.deepcopy(spec)
        try:
            return Value("kit", run=kit_compile(spec), spec=spec)
        except RecursionError:
            raise MappingError("the value is nested too deeply", field=field) from None
    if "rename" in spec and "path" not in spec:
        raise MappingError('"rename" goes with "path"', field=field)
    try:
        if "literal" in spec:
            return Value("literal", literal=copy.deepcopy(spec["literal"]), spec=spec)
        if "path" in spec:
            rename = ()
            if "rename" in spec:
                if not isinstance(spec["rename"], dict) or not all(
                    isinstance(k, str) and isinstance(v, str) and k and v for k, v in spec["rename"].items()
                ):
                    raise MappingError(
                        '"rename" maps property paths to new names (text to text)', field=field
                    )
                rename = tuple((path_compile(k) or ("",), v) for k, v in spec["rename"].items())
                if any(p == ("",) for p, _ in rename):
                    raise MappingError('"rename" needs property paths, not "$"', field=field)
            return Value("path", path=path_compile(spec["path"]), rename=rename, spec=spec)
        if "template" in spec:
            text = spec["template"]
            if not isinstance(text, str):
                raise MappingError("a template must be text", field=field)
            parts: list[Any] = []
            pos = 0
            for m in _PLACEHOLDER.finditer(text):
                parts.append(text[pos : m.start()])
                parts.append(path_compile(m.group(1)))
                pos = m.end()
            parts.append(text[pos:])
            return Value("template", template=tuple(p for p in parts if p != ""), spec=spec)
        if "object" in spec:
            members = spec["object"]
            if not isinstance(members, dict) or not all(isinstance(k, str) for k in members):
                raise MappingError('"object" maps keys to value specs', field=field)
            return Value(
                "object",
                members=tuple(
                    (k, value_compile(v, field=f"{field}.{k}", depth=depth + 1)) for k, v in members.items()
                ),
                spec=spec,
            )
        options = spec["coalesce"]
        if not isinstance(options, list) or not options:
            raise MappingError('"coalesce" is a non-empty list of value specs', field=field)
        return Value(
            "coalesce",
            options=tuple(value_compile(o, field=field, depth=depth + 1) for o in options),
            spec=spec,
        )
    except MappingError as exc:
        if exc.field:
            raise
        raise MappingError(exc.message, field=field) from None


# --- Mappings -----------------------------------------------------------------------------------


def _getter(value: Value) -> Callable[[Any], Any]:
    """The quickest callable that gives what `value(message)` gives: the common specs (a path of
    one or two keys, or `$`) read the message directly instead of dispatching on the spec's kind;
    any other is the Value itself."""
    if value.kind != "path" or value.rename or not all(isinstance(k, str) for k in value.path):
        return value
    path = value.path
    if not path:
        return lambda message: message
    if len(path) == 1:
        (key,) = path

        def one(message: Any) -> Any:
            return message.get(key, MISSING) if isinstance(message, dict) else MISSING

        return one
    if len(path) == 2:
        first, second = path

        def two(message: Any) -> Any:
            inner = message.get(first, MISSING) if isinstance(message, dict) else MISSING
            return inner.get(second, MISSING) if isinstance(inner, dict) else MISSING

        return two
    return value


@dataclass(frozen=True)
class CompiledMapping:
    name: str
    action: str
    trigger: Trigger
    fields: dict[str, Value]
    id: int | None = None
    # (target, callable giving the field's value): `fields` made quick to evaluate (`_getter`).
    getters: tuple[tuple[str, Callable[[Any], Any]], ...] = field(default=(), compare=False, repr=False)


@dataclass
class MappingOutput:
    """What one matched mapping made of a message: the target values, or why not."""

    mapping: CompiledMapping
    values: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def mapping_compile(
    *,
    name: str,
    trigger: str,
    action: str,
    fields: Any,
    targets: Iterable[str] | None = None,
    id: int | None = None,
) -> CompiledMapping:
    """Compile a mapping; raise TriggerError or MappingError (naming the field) on a bad one."""
    if not isinstance(trigger, str):
        raise TriggerError("The trigger must be text", position=0)
    compiled_trigger = trigger_compile(trigger)
    if not isinstance(fields, dict):
        raise MappingError("fields must map target names to value specs")
    allowed = set(targets) if targets is not None else None
    compiled = {}
    for target, spec in fields.items():
        if (
            not isinstance(target, str)
            or target.startswith("@")
            or (allowed is not None and target not in allowed)
        ):
            raise MappingError(
                f"unknown target {target!r}" + (f" (one of {', '.join(sorted(allowed))})" if allowed else ""),
                field=str(target),
            )
        compiled[target] = value_compile(spec, field=target)
    return CompiledMapping(
        name=name,
        action=action,
        trigger=compiled_trigger,
        fields=compiled,
        id=id,
        getters=tuple((target, _getter(value)) for target, value in compiled.items()),
    )


def mapping_values(mapping: CompiledMapping, message: Any) -> dict[str, Any]:
    """The target values of a mapping for a message (targets whose value is missing left out);
    raise MappingFailed when a directive fails on the message."""
    values = {}
    for target, value in mapping.getters or mapping.fields.items():
        try:
            result = value(message)
        except MappingFailed as exc:
            raise MappingFailed(f"{target}: {exc}") from None
        if result is not MISSING:
            values[target] = result
    return values


def mappings_run(mappings: Iterable[CompiledMapping], message: Any) -> list[MappingOutput]:
    """The outputs of every mapping whose trigger matches, in order. Never raises."""
    outputs = []
    for mapping in mappings:
        try:
            if not mapping.trigger(message):
                continue
            outputs.append(MappingOutput(mapping, values=mapping_values(mapping, message)))
        except MappingFailed as exc:
            outputs.append(MappingOutput(mapping, errors=[f"the mapping failed on this message: {exc}"]))
        except RecursionError:
            outputs.append(MappingOutput(mapping, errors=["the message is nested too deeply"]))
    return outputs
