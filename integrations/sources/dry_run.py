"""Mappings run over messages without the inbox: the vendor endpoints' check of a request against
the source's current mappings (`messages_check`, writing nothing), and the mapping editor's Send
test event (`message_test`, which may store its one record for real).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from .actions import action_for
from .formats import format_for
from .mapping_cache import sources_and_mappings
from .mapping_engine import mappings_run
from .models import Source
from .services import MappingInvalid, mapping_validate


def messages_check(*, source: Source, items: list[object], format_kind: str) -> list[tuple[int, str, str]]:
    """A dry run of the source's current mappings over items, writing nothing: `(index, mapping
    name, error)` for each item a matching mapping could not store (its values, or the record its
    action would write, refused). An item its format refuses is `(index, "", error)`."""
    _, compiled = sources_and_mappings({source.pk})
    mappings = compiled.get(source.pk, [])
    fmt = format_for(format_kind)
    now = timezone.now()
    stamp = now.isoformat().replace("+00:00", "Z")
    problems: list[tuple[int, str, str]] = []
    for index, item in enumerate(items):
        received = fmt.normalize(item, received_at=stamp)
        if received.error:
            problems.append((index, "", received.error))
            continue
        for output in mappings_run(mappings, received.message):
            errors = output.errors or (
                action_for(output.mapping.action)
                .prepare(output.values, message=received.message, now=now)
                .errors
            )
            if errors:
                problems.append((index, output.mapping.name, "; ".join(errors)))
    return problems


def message_test(
    *,
    source: Source,
    name: str,
    trigger: str,
    action: str,
    fields: object,
    message: object,
    store: bool = False,
) -> dict[str, Any]:
    """Run one (possibly unsaved) mapping over a sample message: the record it makes or the errors.

    With `store`, the record is written for real through the same services as the worker.
    """
    try:
        compiled = mapping_validate(name=name or "test", trigger=trigger, action=action, fields=fields)
    except MappingInvalid as exc:
        return {"matched": False, "errors": [str(exc)], "pointer": exc.pointer}
    if not isinstance(message, dict):
        return {"matched": False, "errors": ["The sample message must be a JSON object."]}
    sample = dict(message)
    sample.setdefault("messageId", "test-message")
    outputs = mappings_run([compiled], sample)
    if not outputs:
        return {
            "matched": False,
            "errors": ["The trigger does not match this message: nothing would be stored."],
        }
    output = outputs[0]
    if output.errors:
        return {"matched": True, "values": output.values, "errors": output.errors}
    prepared = action_for(action).prepare(output.values, message=sample, now=timezone.now())
    out: dict[str, Any] = {
        "matched": True,
        "action": action,
        "values": output.values,
        "record": prepared.record,
        "errors": prepared.errors,
    }
    if store and not prepared.errors:
        with transaction.atomic():
            written = action_for(action).execute(app=source.app, items=[prepared])[0]
        out["stored"] = written.outcome
        if written.error:
            out["errors"] = [written.error]
    return out
