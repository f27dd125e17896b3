"""Hot reads on the driver's own cursor: a Core select compiled once per database dialect, its rows converted by
SQLAlchemy's own type processors.

`Connection.execute` costs about 0.1 ms of Python per statement (an execution context, the compiled cache's key,
result metadata), five times the driver's own execute. On `/status`, the read Paymenter makes on every page of the
client area, that was most of the request (bench/README.md). Here the SQL, its bound constants and the conversion
of each column (SQLite's DATETIME text, booleans, JSON) are all SQLAlchemy's: only its per-execution bookkeeping is
left out. A driver error is raised as SQLAlchemy raises it (an OperationalError is the API's 503), and a connection
the driver says is lost is invalidated, so the pool does not hand it out again.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import PoolProxiedConnection

_TYPE_CODE = operator.itemgetter(1)  # of a column in a cursor's description (PEP 249)


@dataclass(frozen=True)
class Reader:
    """What a prepared statement runs on: a pooled driver connection and the dialect it speaks (api/db.py
    `Database.rows`)."""

    dialect: Dialect
    connection: PoolProxiedConnection

    def fetch(self, sql: str, arguments: Sequence[Any] | dict[str, Any] = ()) -> tuple[Sequence, list]:
        """`sql` run on the driver's cursor: the columns' description and every row. A driver error is raised as
        SQLAlchemy raises it (an OperationalError is the API's 503); a connection the driver says is lost is
        invalidated, so the pool does not hand it out again."""
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, arguments)
            return cursor.description, cursor.fetchall()
        except self.dialect.loaded_dbapi.Error as exc:
            if self.dialect.is_disconnect(exc, self.connection.dbapi_connection, cursor):
                self.connection.invalidate(exc)
            raise DBAPIError.instance(sql, arguments, exc, self.dialect.loaded_dbapi.Error) from exc
        finally:
            cursor.close()


@dataclass(frozen=True)
class _Compiled:
    sql: str
    positions: tuple[str, ...] | None  # bind names in order for a positional paramstyle (SQLite's `?`)
    constants: dict[str, Any]  # the statement's own bound values, already converted for the driver
    parameters: frozenset[str]  # the names a caller gives values for
    converters: dict[str, Callable[[Any], Any]]  # the parameters' conversions (none for a plain integer)


class Prepared:
    """`statement`, run as `prepared.rows(connection, name=value, ...)`: a list of dicts keyed by the selected
    columns' keys (their labels), each value as SQLAlchemy would have returned it."""

    def __init__(self, statement: Select) -> None:
        self.statement = statement
        self.keys = tuple(column.key for column in statement.selected_columns)
        if None in self.keys or len(set(self.keys)) != len(self.keys):
            raise ValueError("a prepared statement needs a distinct key (label) for every selected column")
        self._compiled: dict[str, _Compiled] = {}
        # (dialect name, column types the driver reported) -> [(index, processor)] of the columns to convert
        self._processors: dict[tuple, list[tuple[int, Callable[[Any], Any]]]] = {}
        self._lock = threading.Lock()

    def rows(self, reader: Reader, **params: Any) -> list[dict[str, Any]]:
        dialect = reader.dialect
        compiled = self._compiled.get(dialect.name) or self._compile(dialect)
        if params.keys() != compiled.parameters:
            raise TypeError(f"the statement takes the parameters {sorted(compiled.parameters)}, not {sorted(params)}")
        values = dict(compiled.constants)
        for name, value in params.items():
            convert = compiled.converters.get(name)
            values[name] = convert(value) if convert is not None else value
        arguments: Sequence[Any] | dict[str, Any] = (
            values if compiled.positions is None else tuple(values[name] for name in compiled.positions)
        )
        description, fetched = reader.fetch(compiled.sql, arguments)
        if len(description) != len(self.keys):
            raise RuntimeError(f"the driver returned {len(description)} columns for {len(self.keys)} selected")
        signature = (dialect.name, *map(_TYPE_CODE, description))
        processors = self._processors.get(signature)
        if processors is None:
            processors = self._processors.setdefault(signature, self._find_processors(dialect, description))
        keys, rows = self.keys, []
        for found in fetched:
            values_of_row = list(found)
            for index, process in processors:
                values_of_row[index] = process(values_of_row[index])
            rows.append(dict(zip(keys, values_of_row, strict=True)))
        return rows

    def _compile(self, dialect: Dialect) -> _Compiled:
        with self._lock:
            compiled = self._compiled.get(dialect.name)
            if compiled is not None:
                return compiled
            sql = self.statement.compile(dialect=dialect)
            if sql.literal_execute_params or sql.post_compile_params:
                raise ValueError("a prepared statement cannot have parameters rendered at execution (IN, LIMIT)")
            converters: dict[str, Callable[[Any], Any]] = {}
            constants: dict[str, Any] = {}
            for name, bind in sql.binds.items():
                process = bind.type.dialect_impl(dialect).bind_processor(dialect)
                if bind.required:
                    if process is not None:
                        converters[name] = process
                else:
                    value = bind.effective_value
                    constants[name] = process(value) if process is not None else value
            compiled = _Compiled(
                sql=sql.string,
                positions=tuple(sql.positiontup) if sql.positional else None,
                constants=constants,
                parameters=frozenset(name for name, bind in sql.binds.items() if bind.required),
                converters=converters,
            )
            self._compiled[dialect.name] = compiled
            return compiled

    def _find_processors(self, dialect: Dialect, description: Sequence) -> list[tuple[int, Callable[[Any], Any]]]:
        found = []
        for index, (column, described) in enumerate(zip(self.statement.selected_columns, description, strict=True)):
            process = column.type.dialect_impl(dialect).result_processor(dialect, described[1])
            if process is not None:
                found.append((index, process))
        return found
