"""Customer merges: where other packages move their own rows when a placeholder is merged away.

The core merges a placeholder customer into the identified one (`hub.services.customers`) by moving every
row that references it. A package whose rows do not simply move (the metrics' rollups add up the
buckets both customers have) registers a handler for its models with `customer_merge_register`
from its AppConfig.ready(), as `config_apply.section_register` does for configuration sections.
Handlers run in the merge's transaction, with the app's usage lock held, before the placeholder
is deleted; the core moves the rows of every other model itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db import models

from ..models import Customer


@dataclass(frozen=True)
class MergeHandler:
    key: str
    models: tuple[type[models.Model], ...]
    merge: Callable[..., None]  # merge(*, keep: Customer, remove: Customer)


_HANDLERS: dict[str, MergeHandler] = {}


def customer_merge_register(
    *, key: str, models: tuple[type[models.Model], ...], merge: Callable[..., None]
) -> None:
    """Let a package move the rows of `models` itself: `merge(keep=..., remove=...)` in the merge.

    `key` names the handler (registering it again replaces it); the core leaves `models` alone.
    """
    _HANDLERS[key] = MergeHandler(key=key, models=tuple(models), merge=merge)


def customer_merge_handlers() -> tuple[MergeHandler, ...]:
    """The registered handlers, in the order they were first registered."""
    return tuple(_HANDLERS.values())


def customer_merge_run(*, keep: Customer, remove: Customer) -> set[type[models.Model]]:
    """Run every handler for this merge; return the models they took care of."""
    handled: set[type[models.Model]] = set()
    for handler in _HANDLERS.values():
        handler.merge(keep=keep, remove=remove)
        handled.update(handler.models)
    return handled
