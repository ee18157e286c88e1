"""Differential tests: the hub's mapping engine and triggers against Segment's own packages.

Generated mappings (every directive, nested, missing paths, nulls, numbers written many ways,
unicode) run through the hub's `mapping_compile`/`mapping_values` and through `transform` of
`@segment/actions-core`; generated triggers through the hub's `trigger_parse` and through
`validate(parseFql(...))` of `@segment/destination-subscriptions` (tests/node/segment_reference.mjs).
Every difference must be one the hub documents: the mapping divergences are `MAPPING_DIVERGENCES`
(each shown on a case below), a trigger may differ only where the hub warns (`TRIGGER_WARNINGS`),
and docs/sources.md lists them all.

`HUB_DIFF_CASES` sets the number of cases of each kind (CI: 3,000; `make fuzz-mappings`: 100,000)
and `HUB_DIFF_SEED` the seed (`random` for a new one; printed on failure).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from integrations.sources.mapping_engine import (
    MappingError,
    MappingFailed,
    is_hub_spec,
    mapping_compile,
    mapping_values,
)
from integrations.sources.triggers import TriggerError, trigger_parse

pytestmark = pytest.mark.node

NODE_DIR = Path(__file__).resolve().parents[2] / "node"
DOCS = Path(__file__).resolve().parents[3] / "docs" / "sources.md"
CASES = int(os.environ.get("HUB_DIFF_CASES", "3000"))
_SEED = os.environ.get("HUB_DIFF_SEED", "19")
SEED = random.SystemRandom().randrange(10**6) if _SEED == "random" else int(_SEED)

# Where the hub's mapping-kit deliberately differs from Segment's (docs/sources.md says why).
MAPPING_DIVERGENCES = {
    "hub-spec": "a field whose value is exactly one of the hub's own specs ({\"path\": ...}) is the hub's spec",
    "liquid": "@liquid is refused on save",
    "prototype": "JavaScript's built-in properties (constructor, toString...) are not read",
    "big-integer": "integers beyond 2^53 keep their precision",
}
# Codes of Trigger.warnings: where Segment's parser reads a trigger differently (docs/sources.md).
TRIGGER_WARNINGS = ("not", "not-space", "nested", "field", "match", "escape", "quoted", "key", "spacing",
                    "number", "as-text", "and-or")  # fmt: skip


def segment(cases: list[dict]) -> list[dict]:
    """Segment's results for the cases (see tests/node/segment_reference.mjs)."""
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "@segment" / "destination-subscriptions").is_dir():
        pytest.fail("Node.js and tests/node/node_modules are required: run `make node-deps`.")
    proc = subprocess.run(
        [node, "segment_reference.mjs"], cwd=NODE_DIR, input=_dumps(cases), capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# --- Numbers written many ways: kept as their JSON text, parsed by each side from the same text ---


class Raw(str):
    """A number as written in the JSON text."""


NUMBERS = ["0", "-0", "1", "1.0", "1.50", "2e3", "2E+3", "1e-7", "0.1", "-12.5", "123456789", "1e21",
           "9007199254740991", "1.5e300", "0.000001", "100", "3", "-1", "0.5e1", "12345678901234567890e-10"]  # fmt: skip
TEXTS = ["", "a", "A b", "null", "true", "0", "3", "ünïcödé", "日本語", "😀x", "Ab$&c", "a.b", "{{a}}", "x*y",
         "ÇA", "ß", "ǅ", "İ", " padded ", "line\nbreak", "quote\"", "back\\slash", "[1,2]", '{"k": 1}',
         "not json{", "ΣΑΣ", "aaaa", "AbAb", "track", "x@company.com", "Order Completed"]  # fmt: skip
KEYS = ["a", "b", "c", "name", "items", "n", "s", "0", "1", "Ü", "x y", "id", "email", "$"]


def _dumps(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k) + ":" + _dumps(v) for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dumps(v) for v in value) + "]"
    return json.dumps(value)


def gen_leaf(r: random.Random) -> Any:
    roll = r.random()
    if roll < 0.1:
        return None
    if roll < 0.2:
        return r.random() < 0.5
    if roll < 0.5:
        return Raw(r.choice(NUMBERS))
    return r.choice(TEXTS)


def gen_data(r: random.Random, depth: int = 0) -> Any:
    roll = r.random()
    if depth >= 3 or roll < 0.55:
        return gen_leaf(r)
    if roll < 0.8:
        return {r.choice(KEYS): gen_data(r, depth + 1) for _ in range(r.randint(0, 4))}
    return [gen_data(r, depth + 1) for _ in range(r.randint(0, 3))]


def gen_event(r: random.Random) -> dict:
    event: dict[str, Any] = {"type": r.choice(["track", "identify", "group", "page", "null", "5"])}
    for key in ("event", "name", "userId"):
        if r.random() < 0.7:
            event[key] = r.choice(TEXTS) if r.random() < 0.8 else gen_leaf(r)
    for key in ("properties", "traits", "context"):
        if r.random() < 0.85:
            event[key] = {r.choice(KEYS): gen_data(r, 1) for _ in range(r.randint(0, 6))}
        elif r.random() < 0.3:
            event[key] = gen_leaf(r)
    if r.random() < 0.5:
        event["properties"] = {**(event.get("properties") if isinstance(event.get("properties"), dict) else {}),
                               "items": [{"id": gen_leaf(r), "n": gen_leaf(r)} for _ in range(r.randint(0, 3))]}  # fmt: skip
    return event


# --- Mappings -----------------------------------------------------------------------------------


def gen_path(r: random.Random) -> str:
    roll = r.random()
    if roll < 0.05:
        return r.choice(["$.", "", "$", "."])
    root = r.choice(["properties", "traits", "context", "event", "userId", "type", "properties.items"])
    parts = [root] + [r.choice(KEYS) for _ in range(r.randint(0, 2))]
    path = ".".join(parts)
    if r.random() < 0.2:
        path = f"properties.items[{r.randint(0, 3)}]" + r.choice(["", ".id", ".n", ".missing"])
    if r.random() < 0.05:
        path = path.replace(".", "['", 1) + "']" if "." in path else path
    return ("$." if r.random() < 0.7 else "") + path


def gen_template(r: random.Random) -> str:
    out = []
    for _ in range(r.randint(0, 3)):
        out.append(r.choice(["", "x", " - ", "日", "{", "}"]))
        style = r.random()
        path = gen_path(r).removeprefix("$.")
        out.append(
            f"{{{{{{{path}}}}}}}"
            if style < 0.1
            else f"{{{{ {path} }}}}"
            if style < 0.3
            else f"{{{{{path}}}}}"
        )
    return "".join(out)


def at_path(r: random.Random) -> dict:
    return {"@path": gen_path(r)}


def gen_value(r: random.Random, depth: int = 0) -> Any:
    roll = r.random()
    if depth >= 3 or roll < 0.15:
        return gen_leaf(r) if r.random() < 0.6 else at_path(r)
    if roll < 0.22:
        return {k: gen_value(r, depth + 1) for k in r.sample(["a", "b", "c", "d"], r.randint(0, 3))}
    if roll < 0.26:
        return [gen_value(r, depth + 1) for _ in range(r.randint(0, 3))]
    return gen_directive(r, depth)


def _maybe(r: random.Random, opts: dict, p: float = 0.8) -> dict:
    return {k: v for k, v in opts.items() if r.random() < p}


def gen_directive(r: random.Random, depth: int) -> dict:
    name = r.choice(["@path", "@template", "@literal", "@if", "@arrayPath", "@case", "@replace", "@merge",
                     "@json", "@flatten", "@excludeWhenNull", "@if", "@replace", "@transform"])  # fmt: skip
    sub = lambda: gen_value(r, depth + 1)  # noqa: E731
    source = lambda: at_path(r) if r.random() < 0.7 else sub()  # noqa: E731
    if name == "@path":
        arg: Any = (
            gen_path(r) if r.random() < 0.9 else r.choice([{"@template": "$.properties.{{properties.s}}"}, 5])
        )
    elif name == "@template":
        arg = gen_template(r) if r.random() < 0.95 else at_path(r)
    elif name == "@literal":
        arg = sub()
    elif name == "@if":
        test = "exists" if r.random() < 0.6 else "blank"
        arg = {test: source(), "then": sub(), "else": sub()}
        arg = _maybe(r, arg, 0.85)
        if r.random() < 0.05:
            arg[r.choice(["exists", "blank"])] = r.choice([0, "", None, False, at_path(r)])
    elif name == "@arrayPath":
        shape = r.choice(
            [{"id": {"@path": "$.id"}, "k": {"@path": "$.n"}}, {}, {"x": "raw"}, at_path(r), "s"]
        )
        arg = [gen_path(r) if r.random() < 0.8 else at_path(r), shape][: r.choice([2, 2, 2, 1, 0])]
    elif name == "@case":
        arg = _maybe(r, {"operator": r.choice(["lower", "upper", "upper", "title"]), "value": source()}, 0.9)
    elif name == "@replace":
        chars = "aAbB.$&*+?()[]{}|^\\ 日ß-"
        arg = {
            "pattern": "".join(r.choice(chars) for _ in range(r.choice([1, 1, 2, 3, 11]))),
            "replacement": r.choice(["", "x", "$&", "$$", "$1", "$`", "$'", "[$&]", "0123456789ab"]),
            "value": r.choice([source(), r.choice(TEXTS)]),
            "ignorecase": r.random() < 0.4,
            "global": r.random() < 0.6,
        }
        arg = _maybe(r, arg, 0.9)
        if r.random() < 0.2:
            arg["pattern2"], arg["replacement2"] = r.choice(chars), r.choice(["", "_"])
    elif name == "@merge":
        objects = [
            r.choice([{"a": sub(), "b": 1}, at_path(r), {"@path": "$.properties"}])
            for _ in range(r.randint(0, 3))
        ]
        arg = _maybe(r, {"objects": objects, "direction": r.choice(["left", "right", "LEFT"])}, 0.9)
    elif name == "@json":
        value = r.choice([source(), r.choice(TEXTS), {"k": sub()}])
        arg = _maybe(r, {"mode": r.choice(["encode", "decode", "decode", "ENCODE"]), "value": value}, 0.95)
    elif name == "@flatten":
        arg = _maybe(r, {"separator": r.choice([".", "_", "", "/"]), "value": source(),
                         "omitArrays": r.random() < 0.4}, 0.9)  # fmt: skip
    elif name == "@excludeWhenNull":
        arg = r.choice([at_path(r), {"a": None, "b": {"c": None, "d": 1}}, sub()])
    else:
        arg = {
            "apply": {"x": at_path(r), "y": {"@path": "$.properties"}},
            "mapping": {"@path": r.choice(["$.x", "$.y.a"])},
        }
    if r.random() < 0.03:
        return {"_metadata": {"note": "x"}, name: arg}  # Segment lets `_metadata` stand beside a directive
    return {name: arg}


def gen_mapping(r: random.Random) -> dict:
    fields = {}
    for i in range(r.randint(1, 3)):
        value = gen_value(r)
        while is_hub_spec(value):  # a documented divergence ("hub-spec"): shown on its own below
            value = gen_value(r)
        fields[f"t{i}"] = value
    return fields


def hub_transform(mapping: dict, event: dict) -> dict:
    try:
        compiled = mapping_compile(name="d", trigger='type != "-"', action="a", fields=mapping)
        return {"ok": mapping_values(compiled, event)}
    except (MappingError, MappingFailed) as exc:
        return {"error": str(exc)}


def _same(hub: Any, seg: Any) -> bool:
    """Equal as JSON values (numbers by value, booleans never equal to numbers)."""
    if isinstance(hub, bool) or isinstance(seg, bool):
        return hub is seg
    if isinstance(hub, int | float) and isinstance(seg, int | float):
        return hub == seg
    if isinstance(hub, dict) and isinstance(seg, dict):
        return hub.keys() == seg.keys() and all(_same(hub[k], seg[k]) for k in hub)
    if isinstance(hub, list) and isinstance(seg, list):
        return len(hub) == len(seg) and all(_same(a, b) for a, b in zip(hub, seg, strict=True))
    return type(hub) is type(seg) and hub == seg


def _agree(hub: dict, seg: dict) -> bool:
    if "error" in hub or "error" in seg:
        return "error" in hub and "error" in seg
    return _same(hub["ok"], seg["ok"])


def test_mappings_match_segments_transform():
    """Thousands of generated mappings and events give what Segment's `transform` gives."""
    r = random.Random(SEED)
    cases = [{"mapping": gen_mapping(r), "event": gen_event(r)} for _ in range(CASES)]
    results = segment(cases)
    differences, errors = [], 0
    for case, seg in zip(cases, results, strict=True):
        text = _dumps(case)
        parsed = json.loads(text)
        hub = hub_transform(parsed["mapping"], parsed["event"])
        errors += "error" in seg
        if not _agree(hub, seg):
            differences.append({"case": text, "hub": hub, "segment": seg})
    assert not differences, (
        f"{len(differences)} of {CASES} cases differ (HUB_DIFF_SEED={SEED}); the first:\n"
        + "\n".join(json.dumps(d, ensure_ascii=False, default=str) for d in differences[:5])
    )
    assert errors < CASES * 0.5, "the generator should mostly make mappings that run"


# --- Triggers -----------------------------------------------------------------------------------


def gen_field(r: random.Random) -> str:
    roll = r.random()
    if roll < 0.45:
        return r.choice(["type", "event", "name", "userId"])
    if roll < 0.47:
        return r.choice(
            ["anonymousId", "messageId", "properties.items.0.id", "properties.s.length", "properties.0"]
        )
    key = r.choice(["a", "b", "c", "name", "n", "s", "id", "email"])
    path = f"{r.choice(['properties', 'traits', 'context'])}.{key}"
    return path + (f".{r.choice(['a', 'b', 'n'])}" if r.random() < 0.2 else "")


def gen_fql_value(r: random.Random) -> str:
    roll = r.random()
    if roll < 0.5:
        text = r.choice(TEXTS)
        while json.dumps(text, ensure_ascii=False).count("\\") and r.random() < 0.8:
            text = r.choice(TEXTS)
        return json.dumps(text, ensure_ascii=False)
    if roll < 0.8:
        return r.choice(
            ["0", "1", "3", "-1", "1.5", "100", "0.1", "-0", "1e3", "5."][: 8 if r.random() < 0.9 else 10]
        )
    return r.choice(["null", "true", "false"])


def gen_condition(r: random.Random, depth: int = 0) -> str:
    roll = r.random()
    if depth < 2 and roll < 0.1:
        inner = gen_fql(r, depth + 1)
        return ("!" if r.random() < 0.1 else "") + f"({inner})"
    if roll < 0.35:
        fn = r.choice(["contains", "match"])
        field = gen_field(r)
        text = r.choice([*TEXTS[:12], "Order", "Completed", "x@company", "@company.com", "tra", "ack"])
        if fn == "match":
            text = r.choice(
                [f"{text}*", f"*{text}", "*", f"{text}*", f"*{text}"]
                + [text, f"*{text}*", f"{text}?", ""] * (r.random() < 0.3)
            )
        call = f"{fn}({field}, {json.dumps(text, ensure_ascii=False)})"
        return (r.choice(["!", "!", "!", "! ", "!!"]) if r.random() < 0.3 else "") + call
    field = gen_field(r)
    op = r.choice(["=", "=", "!=", "<", "<=", ">", ">="])
    value = gen_fql_value(r)
    while field in ("type", "event", "name", "userId") and not value.startswith('"') and r.random() < 0.8:
        value = gen_fql_value(r)
    if op in ("<", "<=", ">", ">=") and not value[0].isdigit() and not value.startswith("-"):
        value = r.choice(["0", "1", "3", "2.5"])
    space = " " if r.random() < 0.96 else ""
    prefix = "!" if r.random() < 0.02 else ""
    return f"{prefix}{field}{space}{op}{space}{value}"


def gen_fql(r: random.Random, depth: int = 0) -> str:
    parts = [gen_condition(r, depth)]
    joiner = r.choice(["and", "and", "or"])
    for _ in range(r.choice([0, 0, 1, 1, 2, 3])):
        parts.append(joiner if r.random() < 0.9 else r.choice(["and", "or"]))
        parts.append(gen_condition(r, depth))
    gaps = [" "] * 20 + ["\t", "\n", "  ", "\r\n"]  # spaces of all kinds between the words
    return "".join(part + (r.choice(gaps) if i < len(parts) - 1 else "") for i, part in enumerate(parts))


def gen_fql_event(r: random.Random) -> dict:
    event = gen_event(r)
    for key in ("properties", "traits", "context"):
        if isinstance(event.get(key), dict) and r.random() < 0.7:
            event[key].update({k: gen_leaf(r) for k in r.sample(["a", "b", "c", "n", "s", "email"], 3)})
    return event


def test_triggers_match_segments_parser_or_warn():
    """A generated trigger the hub reads without warnings means for generated events what
    `validate(parseFql(...))` says; where it differs, the hub warns (the editor shows it)."""
    r = random.Random(SEED + 1)
    cases = []
    while len(cases) < CASES:
        text = gen_fql(r)
        try:
            trigger_parse(text)
        except TriggerError:
            continue  # the hub refuses it, with where: nothing means something different
        cases.append({"fql": text, "event": gen_fql_event(r)})
    results = segment(cases)
    differences, warned, unwarned = [], 0, 0
    for case, seg in zip(cases, results, strict=True):
        parsed = json.loads(_dumps(case))
        trigger = trigger_parse(parsed["fql"])
        if trigger.warnings:
            warned += 1
            continue
        unwarned += 1
        if trigger(parsed["event"]) is not seg["match"]:
            differences.append({"fql": case["fql"], "event": _dumps(case["event"]), "hub": not seg["match"],
                                "segment": seg})  # fmt: skip
    assert not differences, (
        f"{len(differences)} of {unwarned} unwarned triggers differ (HUB_DIFF_SEED={SEED}); the first:\n"
        + "\n".join(json.dumps(d, ensure_ascii=False) for d in differences[:5])
    )
    assert unwarned > CASES * 0.4, f"the generator should make plain triggers too ({warned} warned)"


# --- The documented divergences, each shown ---------------------------------------------------


DIVERGENCE_CASES = {
    "hub-spec": ({"t": {"path": "$.event"}}, {"event": "e"}),
    "liquid": ({"t": {"@liquid": "{{ event }}"}}, {"event": "e"}),
    "prototype": ({"t": {"@template": "{{properties.constructor}}"}}, {"properties": {}}),
    "big-integer": ({"t": {"@path": "$.n"}}, {"n": Raw("9007199254740993")}),
}

TRIGGER_CASES = {
    "not": ('!(event = "a")', {"event": "a"}),
    "not-space": ('! contains(event, "a")', {"event": "b"}),
    "nested": ('type = "track" and (event = "a" or (event = "b"))', {"type": "track", "event": "b"}),
    "field": ('anonymousId = "x"', {"anonymousId": "x"}),
    "match": ('match(event, "a?c")', {"event": "abc"}),
    "escape": ('event = "a\\\\b"', {"event": "a\\b"}),
    "quoted": ('`event` = "a"', {"event": "a"}),
    "key": ("properties.0 = 1", {"properties": {"0": 1}}),
    "spacing": ("properties.n>1", {"properties": {"n": 2}}),
    "number": ("properties.n = 1e3", {"properties": {"n": 1000}}),
    "as-text": ("properties.n != 5", {"properties": {}}),
    "and-or": ('event = "a" or event = "b" and type = "track"', {"type": "identify", "event": "a"}),
}


def test_each_documented_divergence_is_real_and_documented():
    """The lists above are the documented ones: each is in docs/sources.md, and each example
    differs between the hub and Segment's packages (so a fixed one leaves the list)."""
    docs = DOCS.read_text()
    for name in [*MAPPING_DIVERGENCES, *TRIGGER_WARNINGS]:
        assert f"`{name}`" in docs, f"docs/sources.md does not list {name}"
    assert set(DIVERGENCE_CASES) == set(MAPPING_DIVERGENCES)
    assert set(TRIGGER_CASES) == set(TRIGGER_WARNINGS)
    mapping_cases = [{"mapping": m, "event": e} for m, e in DIVERGENCE_CASES.values()]
    fql_cases = [{"fql": f, "event": e} for f, e in TRIGGER_CASES.values()]
    results = segment(mapping_cases + fql_cases)
    for name, case, seg in zip(DIVERGENCE_CASES, mapping_cases, results, strict=False):
        parsed = json.loads(_dumps(case))
        assert not _agree(hub_transform(parsed["mapping"], parsed["event"]), seg), name
    for (code, (text, event)), seg in zip(TRIGGER_CASES.items(), results[len(mapping_cases) :], strict=True):
        trigger = trigger_parse(text)
        assert code in {w.code for w in trigger.warnings}, (code, trigger.warnings)
        assert trigger(event) is not seg["match"], code
