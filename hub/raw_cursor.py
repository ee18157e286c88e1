"""psycopg's own cursor on Django's connection, for the few hot paths that skip the ORM.

psycopg's cursor binds parameters on the server and prepares repeated statements, several times
faster for batches than Django's client-binding cursor. It keeps Django's behaviour where it
matters: the health check of a reused connection before use, and database errors converted to
Django's (and the connection marked, so a broken one is closed at the end of the request).
`JoinedRows` turns such a cursor's rows back into model instances; `local_setting` sets a
PostgreSQL setting for a block of such statements.
"""

from __future__ import annotations

import re
import select
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, ProgrammingError, connection, connections
from django.db.models import Model
from psycopg import pq


@contextmanager
def raw_cursor() -> Iterator:
    """A cursor of the driver (PostgreSQL), or Django's own cursor on other databases."""
    # The connection itself, not Django's proxy of it: each attribute read through the proxy is a
    # thread-local lookup, a dozen of them here on every statement of the hot paths.
    db: Any = connections[DEFAULT_DB_ALIAS]  # with the attributes this module keeps on it
    if db.vendor != "postgresql":
        with db.cursor() as cursor:
            yield cursor
        return
    _health_check(db)
    db.ensure_connection()
    # Django's connection makes client-side binding cursors: ask for a server-binding one. The
    # connection keeps one idle between uses: a new cursor looks up again how to send each type of
    # parameter (arrays especially), a sizeable share of a one-event insert. A cursor asked for
    # while the idle one is out (nested uses) is a new one.
    driver = db.connection
    cursor = getattr(db, "_hub_idle_cursor", None)
    db._hub_idle_cursor = None
    if cursor is None or cursor.closed or cursor.connection is not driver:
        cursor = psycopg.Cursor(driver)
    try:
        with db.wrap_database_errors:
            yield cursor
    except BaseException:
        cursor.close()
        raise
    if db._hub_idle_cursor is None and db.connection is driver:
        db._hub_idle_cursor = cursor
    else:
        cursor.close()


Row = tuple[Any, ...]


@contextmanager
def local_setting(cursor, name: str, value: str) -> Iterator[None]:
    """`name` at `value` for the block's statements, then back to what it was, for the rest of the
    transaction only (set_config's local form: neither a session's own value nor a later statement
    of the transaction is touched). Left alone when the block failed the transaction, whose
    rollback ends the setting anyway."""
    cursor.execute(
        "SELECT s.previous, set_config(%s, %s, true) "
        "FROM (SELECT current_setting(%s) AS previous OFFSET 0) s",
        [name, value, name],
    )
    previous = cursor.fetchone()[0]
    try:
        yield
    finally:
        if cursor.connection.info.transaction_status != pq.TransactionStatus.INERROR:
            cursor.execute("SELECT set_config(%s, %s, true)", [name, previous])


class DirectStatement:
    """One hot statement sent through libpq itself, when PostgreSQL runs it outside a transaction.

    psycopg's `execute` spends some 40 µs of Python on each call beyond libpq's own work (its
    prepared-statement cache key, a dumper per value, its wait loop and result wrapper), a tenth of
    a one-event ingest request's CPU. This statement's values are few and plain, so they go as text
    (an integer, a string, a datetime in ISO form, a boolean, or NULL) to a statement prepared once
    per connection (or, behind a pooler in transaction mode, sent unprepared each time, as psycopg
    would with `prepare_threshold` unset), and its columns come back through `decoders`, one per
    column, from their text form. Errors are psycopg's (`psycopg.errors`, with their SQLSTATE)
    turned into Django's, as on any cursor.

    It goes through `raw_cursor` as before (its rows as psycopg gives them) inside a transaction
    (Django's `atomic`: psycopg opens it lazily, with its first statement; or any other open
    transaction or pipeline of the connection), on other databases, with a client encoding other
    than UTF-8, and for a value it does not send as text itself: anything else, and a string holding
    a NUL (a text parameter of libpq ends at the first NUL, where psycopg refuses the value).
    """

    def __init__(self, name: str, sql: str, decoders: Sequence[Callable[[bytes], Any]]):
        """`sql` has `%s` placeholders (and `%%` for a percent sign), as for a cursor."""
        if re.search(r"%[^s%]", re.sub(r"%%|%s", "", sql)):
            raise ValueError("DirectStatement takes %s placeholders only")
        self.sql = sql
        self.name = f"hub_{name}".encode()
        self.decoders = tuple(decoders)
        self.placeholders = sum(1 for m in re.finditer(r"%%|%s", sql) if m[0] == "%s")
        numbers = iter(range(1, self.placeholders + 1))
        self._sql_pg = re.sub(r"%%|%s", lambda m: "%" if m[0] == "%%" else f"${next(numbers)}", sql).encode()

    def rows(self, params: Sequence[Any]) -> list[Row]:
        if len(params) != self.placeholders:  # as psycopg refuses it, before anything is sent
            raise ProgrammingError(f"the statement takes {self.placeholders} values, not {len(params)}")
        db: Any = connections[DEFAULT_DB_ALIAS]
        if db.vendor == "postgresql":
            values = _as_text(params)
            if values is not None:
                _health_check(db)
                db.ensure_connection()
                driver = db.connection
                pgconn = driver.pgconn
                if (
                    driver.autocommit
                    and pgconn.transaction_status == pq.TransactionStatus.IDLE
                    and not pgconn.pipeline_status
                    and pgconn.parameter_status(b"client_encoding") == b"UTF8"
                ):
                    with db.wrap_database_errors, driver.lock:
                        return self._run(driver, values, params)
        with raw_cursor() as cursor:
            cursor.execute(self.sql, params)
            return cursor.fetchall()

    def _run(
        self, driver: psycopg.Connection, values: list[bytes | None], params: Sequence[Any]
    ) -> list[Row]:
        """The rows of the statement run with `values` (`params` as text) through libpq."""
        pgconn = driver.pgconn
        if driver.prepare_threshold is None:
            result = _checked(pgconn, pgconn.exec_params(self._sql_pg, values))
        else:
            # The names prepared on this connection of the driver (whichever Django wrapper holds it).
            prepared = _PREPARED.setdefault(driver, set())
            result = None
            if self.name in prepared:
                result = pgconn.exec_prepared(self.name, values)
                if result.error_field(pq.DiagnosticField.SQLSTATE) == b"26000":
                    result = None  # deallocated meanwhile (DEALLOCATE ALL, DISCARD ALL): again
            if result is None:
                prepared.discard(self.name)
                made = pgconn.prepare(self.name, self._sql_pg)
                # 42P05: prepared already (by an earlier holder of the connection): as good.
                if made.error_field(pq.DiagnosticField.SQLSTATE) != b"42P05":
                    _checked(pgconn, made)
                prepared.add(self.name)
                result = pgconn.exec_prepared(self.name, values)
            _checked(pgconn, result)
        decoders = self.decoders
        return [
            tuple(
                None if (value := result.get_value(r, c)) is None else decode(value)
                for c, decode in enumerate(decoders)
            )
            for r in range(result.ntuples)
        ]


_PREPARED: weakref.WeakKeyDictionary[psycopg.Connection, set[bytes]] = weakref.WeakKeyDictionary()


def _as_text(params: Sequence[Any]) -> list[bytes | None] | None:
    """Each value in PostgreSQL's text form, or None if one of them is not sent as text here."""
    values: list[bytes | None] = []
    for value in params:
        if value is None:
            values.append(None)
        elif isinstance(value, str):
            if "\x00" in value:
                return None
            values.append(str.encode(value))  # a subclass's own __str__ is not the value
        elif isinstance(value, bool):
            values.append(b"t" if value else b"f")
        elif isinstance(value, int):
            values.append(int.__repr__(value).encode())  # an IntEnum's str() is its name
        elif isinstance(value, datetime | date):
            values.append(value.isoformat().encode())
        else:
            return None
    return values


def _checked(pgconn: pq.abc.PGconn, result: pq.abc.PGresult) -> pq.abc.PGresult:
    """`result`, or the error it (or the connection) reports raised as psycopg would."""
    if result.status in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
        return result
    if result.status == pq.ExecStatus.FATAL_ERROR and result.error_field(pq.DiagnosticField.SQLSTATE):
        raise psycopg.errors.error_from_result(result, encoding="utf-8")
    # No SQLSTATE: the connection itself failed (a server gone away); Django then closes it.
    message = (result.error_message or pgconn.error_message).decode("utf-8", "replace")
    raise psycopg.OperationalError(message or "the statement failed")


def _health_check(db: Any) -> None:
    """Django's health check of a reused connection, without its round trip when it cannot fail.

    With CONN_HEALTH_CHECKS, the first query of each request is preceded by a `SELECT 1`. A server
    that ends a connection (a restart, `pg_terminate_backend`, an idle timeout) sends an error
    message and closes it: so an idle connection with nothing to read on its socket was not ended,
    and the `SELECT 1` is skipped; anything waiting there, and any other state, gets Django's check.
    """
    driver = db.connection
    if driver is not None and db.health_check_enabled and not db.health_check_done:
        try:
            quiet = (
                not driver.closed
                and driver.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
                and not select.select([driver.fileno()], [], [], 0)[0]
            )
        except (OSError, ValueError, psycopg.Error):
            quiet = False
        if quiet:
            db.health_check_done = True
            return
    db.close_if_health_check_failed()


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


class RowsInsert:
    """One statement inserting a new row and rows that reference it (PostgreSQL).

    The parent row goes in with `ON CONFLICT DO NOTHING`: when a unique constraint already holds
    one of its keys, nothing at all is written. Each child row is inserted with the parent's new id
    in its `link` column, and only when its SQL condition (if any) holds in the same statement.
    Values are what Django's `save()` would write (each field's `pre_save`, so auto-now stamps,
    and `get_db_prep_save`, so encryption and JSON): the ORM's rows in one round trip, not one each.
    """

    def __init__(self, parent: type[Model], children: Sequence[tuple[type[Model], str, str]]):
        """`children`: (model, the attname of its column taking the parent's id, an SQL condition
        with %s parameters, or "")."""
        self.parent = parent
        self.children = children
        self._sql: str | None = None
        self._field_lists: dict[tuple[type[Model], str | None], list] = {}

    @staticmethod
    def _fields(model: type[Model], link: str | None = None) -> list:
        """The columns an INSERT writes: all but a database-generated primary key (and the link)."""
        return [
            f
            for f in model._meta.concrete_fields
            if f.attname != link and not (f.primary_key and getattr(f, "db_returning", False))
        ]

    @staticmethod
    def available() -> bool:
        """Whether the database runs such a statement (SQLite has no data-modifying CTE)."""
        return connection.vendor == "postgresql"

    def sql(self) -> str:
        if self._sql is None:
            qn = connection.ops.quote_name
            fields = self._fields(self.parent)
            parts = [
                f"p AS (INSERT INTO {qn(self.parent._meta.db_table)} "  # noqa: S608 (model metadata only)
                f"({', '.join(qn(f.column) for f in fields)}) VALUES ({', '.join(['%s'] * len(fields))}) "
                f"ON CONFLICT DO NOTHING RETURNING {qn(self.parent._meta.pk.column)} AS id)"
            ]
            for n, (model, link, condition) in enumerate(self.children):
                fields = self._fields(model, link)
                link_column = next(f.column for f in model._meta.concrete_fields if f.attname == link)
                columns = ", ".join([*(qn(f.column) for f in fields), qn(link_column)])
                # Typed: parameters of a SELECT list take no type from the columns they go into.
                values = ", ".join([*(f"%s::{f.cast_db_type(connection)}" for f in fields), "p.id"])
                where = f" WHERE {condition}" if condition else ""
                parts.append(
                    f"c{n} AS (INSERT INTO {qn(model._meta.db_table)} ({columns}) "  # noqa: S608
                    f"SELECT {values} FROM p{where} RETURNING 1)"
                )
            written = "".join(f", EXISTS (SELECT 1 FROM c{n})" for n in range(len(self.children)))  # noqa: S608
            self._sql = f"WITH {', '.join(parts)} SELECT p.id{written} FROM p"  # noqa: S608
        return self._sql

    def _fields_of(self, model: type[Model], link: str | None = None) -> list:
        key = (model, link)
        if key not in self._field_lists:
            self._field_lists[key] = self._fields(model, link)
        return self._field_lists[key]

    @staticmethod
    def _values(instance: Model, fields: list, db: Any) -> list[Any]:
        return [f.get_db_prep_save(f.pre_save(instance, True), db) for f in fields]

    def insert(self, parent: Model, children: Sequence[tuple[Model, Sequence[Any]]]) -> list[bool] | None:
        """Insert `parent` and the `children` (each with its condition's parameters), in the order
        given at construction; None when the parent's key was taken (nothing written), else which
        children were written. The instances then hold their ids, as after `save()`."""
        # The connection itself, not Django's proxy of it: each field's preparation asks it for
        # its operations and features, through a thread-local lookup each time via the proxy.
        db = connections[DEFAULT_DB_ALIAS]
        params = self._values(parent, self._fields_of(self.parent), db)
        for (child, condition_params), (model, link, _) in zip(children, self.children, strict=True):
            params += [*self._values(child, self._fields_of(model, link), db), *condition_params]
        with raw_cursor() as cursor:
            cursor.execute(self.sql(), params)
            row = cursor.fetchone()
        if row is None:
            return None
        parent.pk = row[0]
        parent._state.adding, parent._state.db = False, connection.alias
        for (child, _), (_, link, _) in zip(children, self.children, strict=True):
            setattr(child, link, parent.pk)
        return list(row[1:])
