"""psycopg's own cursor on Django's connection, for the few hot paths that skip the ORM.

psycopg's cursor binds parameters on the server and prepares repeated statements, several times
faster for batches than Django's client-binding cursor. It keeps Django's behaviour where it
matters: the health check of a reused connection before use, and database errors converted to
Django's (and the connection marked, so a broken one is closed at the end of the request).
`JoinedRows` turns such a cursor's rows back into model instances.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from django.db import connection
from django.db.models import Model


@contextmanager
def raw_cursor() -> Iterator:
    """A cursor of the driver (PostgreSQL), or Django's own cursor on other databases."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    # Django's connection makes client-side binding cursors: ask for a server-binding one.
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        yield cursor


class JoinedRows:
    """Builds related model instances from one raw SQL row, applying the ORM's value converters.

    Converters are looked up once per database backend: SQLite returns text for UUIDs and
    datetimes, PostgreSQL needs none for these columns.
    """

    def __init__(self, *models_: type[Model]):
        self.models = models_
        self._converters: dict[str, list[list[tuple[int, list]]]] = {}

    def columns(self, *aliases: str) -> str:
        """The select list: every concrete column of each model, under its table alias."""
        return ", ".join(
            f"{alias}.{f.column}"
            for m, alias in zip(self.models, aliases, strict=True)
            for f in m._meta.concrete_fields
        )

    def _model_converters(self) -> list[list[tuple[int, list]]]:
        vendor = connection.vendor
        if vendor not in self._converters:
            per_model = []
            for m in self.models:
                entries = []
                for i, field in enumerate(m._meta.concrete_fields):
                    col = field.get_col(m._meta.db_table)
                    funcs = connection.ops.get_db_converters(col) + field.get_db_converters(connection)
                    if funcs:
                        entries.append((i, [(f, col) for f in funcs]))
                per_model.append(entries)
            self._converters[vendor] = per_model
        return self._converters[vendor]

    def instances(self, row: Sequence[Any]) -> list[Any]:
        """One instance per model (in the models' order) from a row selected with `columns`."""
        values, out = list(row), []
        for m, converters in zip(self.models, self._model_converters(), strict=True):
            fields = m._meta.concrete_fields
            own, values = values[: len(fields)], values[len(fields) :]
            for i, funcs in converters:
                for func, col in funcs:
                    own[i] = func(own[i], col, connection)
            out.append(m.from_db(connection.alias, [f.attname for f in fields], own))
        return out
