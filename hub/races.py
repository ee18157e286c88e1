"""Creates and changes guarded by a unique constraint, answered as a request made after the race.

A service checks that a row is free (a name, a customer's open subscription, its installation),
then inserts. Two concurrent requests both pass the check; PostgreSQL lets one insert win and
fails the other with a unique violation once the winner commits. `unique_race_safe` runs such a
service in a savepoint and, on that violation, runs it again: the second run sees the winner's
row (each statement reads what is committed) and answers as a request made after it would, with
a Conflict (409) or the idempotent result. A service that keeps losing answers Conflict.

`is_unique_violation` is also the backstop of the API's exception handler and of
`hub.middleware.ApiErrorMiddleware`: a violation no service expected answers 409, never 500.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import IntegrityError, transaction

from .errors import Conflict

P = ParamSpec("P")
R = TypeVar("R")

_ATTEMPTS = 3
_UNIQUE_VIOLATION = "23505"  # PostgreSQL's SQLSTATE


def is_unique_violation(exc: BaseException) -> bool:
    """Whether `exc` is a unique (or primary key) constraint violation, on PostgreSQL or SQLite."""
    if not isinstance(exc, IntegrityError):
        return False
    cause = exc.__cause__
    if getattr(cause, "sqlstate", None) == _UNIQUE_VIOLATION:
        return True
    return "UNIQUE constraint failed" in str(exc)  # SQLite (the embedded quick start)


CONFLICT_MESSAGE = "The request conflicts with a concurrent change; try again."


def unique_race_safe(service: Callable[P, R]) -> Callable[P, R]:
    """Run `service` in a savepoint; on a unique violation run it again (it then sees the winner's
    row), at most three times in all, then raise Conflict."""

    @functools.wraps(service)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        for _ in range(_ATTEMPTS):
            try:
                with transaction.atomic():
                    return service(*args, **kwargs)
            except IntegrityError as exc:
                if not is_unique_violation(exc):
                    raise
        raise Conflict(CONFLICT_MESSAGE)

    return wrapped
