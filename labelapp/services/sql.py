"""Hand-written SQL for the labeler's two hot calls (next task, submit), on PostgreSQL and SQLite.

Building each statement through the ORM (Django's query compiler) was most of the CPU of a
labeler's loop; with these, gunicorn's CPU per loop fell from 16 to 6 ms (docs/benchmarks.md,
"Hand-written SQL for the hot path"). Everything else keeps the ORM. Constants (states) are
written into the SQL, not passed as parameters, so that a prepared statement's generic plan can
still use the partial index assignment_free_slots. These helpers hide the few differences
between the two databases.
"""

import json
from datetime import UTC, datetime
from functools import cache
from typing import Any

from django.db import connection
from django.db.models import Model


def execute(sql: str, params: list[Any]) -> int:
    """Run one statement; the number of rows it changed."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def fetch_all(sql: str, params: list[Any]) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def fetch_one(sql: str, params: list[Any]) -> tuple | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def for_update(of: str = "", skip_locked: bool = False) -> str:
    """The row-locking clause this database understands ('' on SQLite, whose transactions
    take the write lock at BEGIN instead: see settings.DATABASES)."""
    features = connection.features
    if not features.has_select_for_update:
        return ""
    clause = " FOR UPDATE"
    if of and features.has_select_for_update_of:
        clause += f" OF {of}"
    if skip_locked and features.has_select_for_update_skip_locked:
        clause += " SKIP LOCKED"
    return clause


def db_datetime(value: datetime) -> Any:
    """An aware datetime as a parameter (SQLite stores naive UTC text)."""
    return connection.ops.adapt_datetimefield_value(value)


def py_datetime(value: datetime | None) -> datetime | None:
    """A datetime column as an aware datetime (SQLite's driver gives naive UTC)."""
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def db_value(model: type[Model], attname: str, value: Any) -> Any:
    """`value` as a parameter for the column of `model`'s field, prepared as the ORM does."""
    return model._meta.get_field(attname).get_db_prep_save(value, connection)


def py_json(value: Any) -> Any:
    """A JSONField column as the Python value (both databases hand back its text)."""
    return json.loads(value) if isinstance(value, str) else value


def instance(model: type[Model], **values: Any) -> Model:
    """A model instance of a row read here, by attribute name (`round_id`); the fields not
    given are deferred, loaded on first access, as `QuerySet.only()` leaves them."""
    names = [f.attname for f in model._meta.concrete_fields if f.attname in values]
    if len(names) != len(values):
        raise TypeError(f"not fields of {model.__name__}: {sorted(set(values) - set(names))}")
    return model.from_db(connection.alias, names, [values[name] for name in names])


@cache
def _insert_sql(model: type[Model], attnames: tuple[str, ...]) -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(quote(model._meta.get_field(name).column) for name in attnames)
    values = ", ".join(["%s"] * len(attnames))
    table = quote(model._meta.db_table)
    # Names from the model's own meta, values as placeholders: nothing from a request.
    return f"INSERT INTO {table} ({columns}) VALUES ({values}) RETURNING id"  # noqa: S608


def insert(model: type[Model], **values: Any) -> Model:
    """INSERT one row of `model` (fields by attribute name, each prepared for the database as
    the ORM does); the instance, with its new id."""
    params = [db_value(model, name, value) for name, value in values.items()]
    (pk,) = fetch_one(_insert_sql(model, tuple(values)), params)
    return instance(model, id=pk, **values)
