"""Screens of the mapping editor: a source's mapping with its fields as inputs (or JSON), Send test
event on a sample message, and the mappings' order and deletion."""

from __future__ import annotations

import json
import re
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from hub.selectors import app_get_for_user
from integrations.vendors.segment import TYPES

from . import selectors, services
from .actions import action_for, actions_all
from .dry_run import message_test
from .models import Mapping
from .presets import PRESETS
from .triggers import TriggerError, trigger_parse
from .views import sources_context

_FIELD_KINDS = ("path", "literal", "template")

# Segment's directives the editor builds without JSON (the others, and anything pasted from
# Segment, go in as JSON): each is read back into its inputs when it has exactly this shape.
_DIRECTIVE_KINDS = ("if", "case", "replace")


def _operand(text: str) -> Any:
    """An editor operand: `$.a.b` is a path, text with `{{...}}` a template, anything else text."""
    text = text.strip()
    if text.startswith("$."):
        return {"@path": text}
    if "{{" in text:
        return {"@template": text}
    return text


def _operand_text(value: Any) -> str | None:
    if isinstance(value, str) and not value.startswith("$.") and "{{" not in value:
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if isinstance(arg, str) and (
            (key == "@path" and arg.startswith("$.")) or (key == "@template" and "{{" in arg)
        ):
            return arg
    return None


def _directive_inputs(spec: Any) -> tuple[str, dict[str, Any]] | None:
    """The editor's inputs for an @if, @case or @replace it can build, or None."""
    if not isinstance(spec, dict) or len(spec) != 1:
        return None
    ((name, opts),) = spec.items()
    if not isinstance(opts, dict):
        return None
    path = opts.get("exists", opts.get("blank", opts.get("value")))
    if not (isinstance(path, dict) and list(path) == ["@path"] and isinstance(path["@path"], str)):
        return None
    inputs: dict[str, Any] = {"value": path["@path"]}
    if name == "@if" and opts.keys() - {"then", "else"} in ({"exists"}, {"blank"}):
        then, otherwise = _operand_text(opts.get("then", "")), _operand_text(opts.get("else", ""))
        if then is None or otherwise is None or "" in (opts.get("then"), opts.get("else")):
            return None
        return "if", {
            **inputs,
            "test": "exists" if "exists" in opts else "blank",
            "then": then,
            "else": otherwise,
        }
    if name == "@case" and opts.keys() == {"operator", "value"} and opts["operator"] in ("lower", "upper"):
        return "case", {**inputs, "operator": opts["operator"]}
    replace_keys = {"pattern", "replacement", "global", "ignorecase", "value"}
    texts = isinstance(opts.get("pattern"), str) and isinstance(opts.get("replacement"), str)
    if name == "@replace" and opts.keys() == replace_keys and texts:
        return "replace", {
            **inputs,
            "pattern": opts["pattern"],
            "replacement": opts["replacement"],
            "global": opts["global"] is True,
            "ignorecase": opts["ignorecase"] is True,
        }
    return None


def _field_rows(action: str, fields: dict[str, Any]) -> list[dict]:
    rows = []
    for target in action_for(action).targets:
        spec = fields.get(target.name)
        kind, value, options = "", "", {}
        directive = _directive_inputs(spec)
        if isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in _FIELD_KINDS:
            kind = next(iter(spec))
            raw = spec[kind]
            value = raw if isinstance(raw, str) and kind != "literal" else json.dumps(raw)
            if kind == "literal" and isinstance(raw, str):
                value = raw
        elif directive is not None:
            kind, options = directive
            value = options["value"]
        elif spec is not None:
            kind, value = "json", json.dumps(spec)
        shown = json.dumps(spec, indent=2, ensure_ascii=False) if spec is not None else ""
        rows.append({"target": target, "kind": kind, "value": value, "options": options, "json": shown})
    return rows


def _fields_from_post(post, action: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for target in action_for(action).targets:
        name = target.name
        kind = post.get(f"kind_{name}", "")
        value = post.get(f"value_{name}", "")
        if not kind:
            continue
        if kind == "json":
            try:
                fields[name] = json.loads(value)
            except ValueError:
                raise services.MappingInvalid(f"{name}: not valid JSON", field=name) from None
        elif kind == "literal":
            try:
                fields[name] = {"literal": json.loads(value)}
            except ValueError:
                fields[name] = {"literal": value}
        elif kind in _FIELD_KINDS:
            fields[name] = {kind: value}
        elif kind in _DIRECTIVE_KINDS:
            path = {"@path": value.strip()}
            if kind == "if":
                test = "blank" if post.get(f"if_test_{name}") == "blank" else "exists"
                opts: dict[str, Any] = {test: path}
                for branch in ("then", "else"):
                    if post.get(f"if_{branch}_{name}", "").strip():
                        opts[branch] = _operand(post[f"if_{branch}_{name}"])
                fields[name] = {"@if": opts}
            elif kind == "case":
                operator = "upper" if post.get(f"case_operator_{name}") == "upper" else "lower"
                fields[name] = {"@case": {"operator": operator, "value": path}}
            else:
                fields[name] = {"@replace": {
                    "pattern": post.get(f"replace_pattern_{name}", ""),
                    "replacement": post.get(f"replace_replacement_{name}", ""),
                    "global": post.get(f"replace_global_{name}") == "on",
                    "ignorecase": post.get(f"replace_ignorecase_{name}") == "on",
                    "value": path,
                }}  # fmt: skip
    return fields


def _trigger_warnings(trigger: str) -> list[str]:
    """What Segment's parser would read differently in a trigger (nothing for one that fails)."""
    try:
        return [str(w) for w in trigger_parse(trigger).warnings]
    except TriggerError:
        return []


@login_required
def mapping_edit(
    request: HttpRequest, app_id: str, source_id: str, mapping_id: int | None = None
) -> HttpResponse:
    app = app_get_for_user(user=request.user, public_id=app_id)
    source = selectors.source_get(app=app, public_id=source_id)
    mapping = selectors.mapping_get(source=source, mapping_id=mapping_id) if mapping_id else None
    preset = PRESETS.get(request.GET.get("preset", ""))
    if mapping is not None:
        form = {"name": mapping.name, "trigger": mapping.trigger, "action": mapping.action,
                "enabled": mapping.enabled, "fields": mapping.fields}  # fmt: skip
    elif preset is not None:
        form = {"name": preset.name, "trigger": preset.trigger, "action": preset.action, "enabled": True,
                "fields": preset.fields}  # fmt: skip
    else:
        form = {
            "name": "",
            "trigger": 'type = "track"',
            "action": "usage_event",
            "enabled": True,
            "fields": {},
        }
    error = None
    if request.method == "POST":
        action = request.POST.get("action", "")
        form = {
            "name": request.POST.get("name", ""),
            "trigger": request.POST.get("trigger", ""),
            "action": action if action in {a.kind for a in actions_all()} else "usage_event",
            "enabled": request.POST.get("enabled") == "on",
            "fields": {},
        }
        try:
            form["fields"] = _fields_from_post(request.POST, form["action"])
            saved = services.mapping_save(
                source=source, mapping=mapping, name=form["name"], trigger=form["trigger"],
                action=form["action"], fields=form["fields"], enabled=form["enabled"],
                preset=preset.key if preset and mapping is None else "",
            )  # fmt: skip
        except services.MappingInvalid as exc:
            error = exc
        else:
            messages.success(request, f"Mapping “{saved.name}” saved.")
            for warning in _trigger_warnings(saved.trigger):
                messages.warning(request, f"In Segment this trigger would mean something else: {warning}")
            return redirect("source_detail", app_id=app.public_id, source_id=source.public_id)
    samples = selectors.sample_messages(source=source, limit=1)
    sample = samples[0] if samples else _default_sample()
    # The event type shown is the trigger's own when the trigger is just `type = "…"`.
    typed = re.fullmatch(r'\s*type\s*=\s*"(\w+)"\s*', form["trigger"] or "")
    trigger_type = typed.group(1) if typed and typed.group(1) in TYPES else ""
    return render(
        request,
        "sources/mapping_edit.html",
        sources_context(
            app,
            source=source,
            mapping=mapping,
            form=form,
            error=error,
            actions=[
                {
                    "kind": a.kind,
                    "label": a.label,
                    "rows": _field_rows(a.kind, form["fields"] if a.kind == form["action"] else {}),
                }
                for a in actions_all()
            ],
            event_types=TYPES,
            trigger_type=trigger_type,
            sample_received=bool(samples),
            trigger_warnings=_trigger_warnings(form["trigger"]),
            fields_json=json.dumps(form["fields"], indent=2, ensure_ascii=False),
            suggestions=selectors.path_suggestions(source=source),
            sample=json.dumps(sample, indent=2),
            presets=PRESETS.values(),
        ),
        status=400 if error else 200,
    )


def _default_sample() -> dict:
    return {
        "type": "track",
        "event": "Report Generated",
        "userId": "user-1",
        "messageId": "sample-1",
        "timestamp": timezone.now().isoformat(timespec="seconds"),
        "properties": {"shop": "example.myshopify.com", "rows": 42},
        "context": {"groupId": "example.myshopify.com"},
    }


@login_required
@require_POST
def mapping_test(request: HttpRequest, app_id: str, source_id: str) -> HttpResponse:
    """Send test event: run the editor's mapping over the sample; `store=1` writes the result."""
    app = app_get_for_user(user=request.user, public_id=app_id)
    source = selectors.source_get(app=app, public_id=source_id)
    action = request.POST.get("action", "")
    try:
        action_for(action)
        fields = _fields_from_post(request.POST, action)
        message = json.loads(request.POST.get("message", ""))
    except KeyError:
        return JsonResponse({"matched": False, "errors": [f"Unknown action {action!r}."]})
    except services.MappingInvalid as exc:
        return JsonResponse({"matched": False, "errors": [str(exc)]})
    except ValueError as exc:
        return JsonResponse({"matched": False, "errors": [f"The sample message is not valid JSON: {exc}"]})
    result = message_test(
        source=source, name=request.POST.get("name", ""), trigger=request.POST.get("trigger", ""),
        action=action, fields=fields, message=message, store=request.POST.get("store") == "1",
    )  # fmt: skip
    if result.get("stored"):
        # Where the stored record can be seen, for the result's link.
        screen = "usage_events" if action == "usage_event" else "customers"
        result["stored_url"] = reverse(screen, args=[app.public_id])
        result["stored_label"] = "Usage events" if action == "usage_event" else "Customers"
    result["warnings"] = _trigger_warnings(request.POST.get("trigger", ""))
    result["fields"] = fields
    return JsonResponse(result, json_dumps_params={"default": str})


@login_required
@require_POST
def mapping_move(request: HttpRequest, app_id: str, source_id: str, mapping_id: int) -> HttpResponse:
    app = app_get_for_user(user=request.user, public_id=app_id)
    source = selectors.source_get(app=app, public_id=source_id)
    mapping = selectors.mapping_get(source=source, mapping_id=mapping_id)
    services.mapping_move(mapping=mapping, delta=-1 if request.POST.get("direction") == "up" else 1)
    return redirect("source_detail", app_id=app.public_id, source_id=source.public_id)


@login_required
@require_POST
def mapping_delete(request: HttpRequest, app_id: str, source_id: str, mapping_id: int) -> HttpResponse:
    app = app_get_for_user(user=request.user, public_id=app_id)
    source = selectors.source_get(app=app, public_id=source_id)
    mapping: Mapping = selectors.mapping_get(source=source, mapping_id=mapping_id)
    services.mapping_delete(mapping=mapping)
    messages.success(request, f"Mapping “{mapping.name}” deleted.")
    return redirect("source_detail", app_id=app.public_id, source_id=source.public_id)
