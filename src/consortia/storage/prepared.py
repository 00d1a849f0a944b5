"""The busiest statements, run on the driver's cursor after SQLAlchemy compiled them once.

Executing a prebuilt statement through ``Connection.execute`` costs about 65 µs of Python
(an execution context, parameter processing, a result object, events) where SQLite itself
answers in 3 µs; a form read and save run ~25 of them. :class:`Prepared` keeps what
SQLAlchemy compiles — the SQL for the database in use, the order of its parameters and the
type conversions of parameters and result columns — and runs it on the connection's own
cursor, inside the transaction the :class:`~sqlalchemy.engine.Connection` holds. Errors
are raised as SQLAlchemy raises them (``IntegrityError`` and so on).

What it does not do, and refuses when asked: parameters expanded at execution
(``bindparam(expanding=True)``), columns whose defaults are computed in Python, and
statements that are not a SELECT, INSERT, UPDATE or DELETE. Engine events such as
``before_cursor_execute`` do not see these statements.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from operator import itemgetter
from typing import Any, Final, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter

__all__ = ["Pending", "Prepared", "pipelined"]

_PIPELINE: Final = "consortia_pipeline"

Params = Mapping[str, Any]
_Processor = Callable[[Any], Any] | None
_Statement = sa.Select[Any] | sa.UpdateBase


class _Bind(NamedTuple):
    name: str  # in the compiled SQL
    key: str  # what the caller passes
    default: Any
    required: bool
    process: _Processor


class _Plan:
    """A statement compiled for one dialect (and, for DML, one set of parameter keys)."""

    __slots__ = ("binds", "fetch", "named", "names", "processed", "processors", "row", "sql",
                 "types")  # fmt: skip

    def __init__(self, statement: _Statement, dialect: Dialect, keys: Sequence[str]) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        assert isinstance(compiled, SQLCompiler)
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("Prepared cannot run parameters expanded at execution")
        if compiled.insert_prefetch or compiled.update_prefetch:
            raise ValueError("Prepared cannot compute column defaults in Python")
        by_name: dict[str, BindParameter[Any]] = {
            name: bind for bind, name in compiled.bind_names.items()
        }
        order = compiled.positiontup if dialect.positional else list(by_name)
        assert order is not None
        self.sql: str = compiled.string
        self.named = not dialect.positional
        self.binds = [
            _Bind(
                name,
                by_name[name].key,
                by_name[name].effective_value,
                by_name[name].required,
                by_name[name].type.dialect_impl(dialect).bind_processor(dialect),
            )
            for name in order
        ]
        self.names = tuple(bind.name for bind in self.binds)
        keys_in = [bind.key for bind in self.binds]
        # the usual case, every parameter given by its key, in one C call
        self.fetch: Callable[[Params], tuple[Any, ...]] = (
            itemgetter(*keys_in)
            if len(keys_in) > 1
            else lambda params: tuple(params[key] for key in keys_in)
        )
        self.processed = [
            (i, bind.process) for i, bind in enumerate(self.binds) if bind.process is not None
        ]
        columns = list(getattr(statement, "exported_columns", ()))
        keys_out = [column.key for column in columns]
        if len(set(keys_out)) != len(keys_out):
            raise ValueError(f"Prepared needs distinct result column names, not {keys_out}")
        self.types = [column.type.dialect_impl(dialect) for column in columns]
        self.row: type[tuple[Any, ...]] = namedtuple("Row", keys_out)  # type: ignore[misc]
        self.processors: list[_Processor] | None = None

    def parameters(self, params: Params) -> Sequence[Any] | dict[str, Any]:
        try:
            values: Sequence[Any] = self.fetch(params)
        except KeyError:
            values = self._values(params)
        else:
            if self.processed:
                values = list(values)
                for i, process in self.processed:
                    if values[i] is not None:
                        values[i] = process(values[i])
        if self.named:
            return dict(zip(self.names, values, strict=True))
        return values

    def _values(self, params: Params) -> list[Any]:
        """The parameters when some are given by name or left to their defaults."""
        values = []
        for bind in self.binds:
            if bind.key in params:
                value = params[bind.key]
            elif bind.name in params:
                value = params[bind.name]
            elif bind.required:
                raise sa.exc.ArgumentError(f"a value is required for parameter {bind.key!r}")
            else:
                value = bind.default
            values.append(value if bind.process is None or value is None else bind.process(value))
        return values

    def rows(self, cursor: Any, dialect: Dialect) -> list[Any]:
        fetched = cursor.fetchall()
        if self.processors is None:
            description = cursor.description or ()
            self.processors = [
                kind.result_processor(dialect, described[1])
                for kind, described in zip(self.types, description, strict=True)
            ]
        make = self.row._make  # type: ignore[attr-defined]
        if not any(self.processors):
            return [make(raw) for raw in fetched]
        processors = self.processors
        return [
            make(
                value if p is None or value is None else p(value)
                for p, value in zip(processors, raw, strict=True)
            )
            for raw in fetched
        ]


class Prepared:
    """A statement run on the driver's cursor; see the module docstring.

    >>> from consortia.storage.db import make_engine
    >>> from consortia.storage.tables import study_version
    >>> engine = make_engine("sqlite://")
    >>> _ = study_version.create(engine)
    >>> newest = Prepared(sa.select(study_version.c.version).where(
    ...     study_version.c.study == sa.bindparam("study")))
    >>> with engine.connect() as connection:
    ...     newest.all(connection, {"study": "CART-LBCL"})
    []
    >>> engine.dispose()
    """

    __slots__ = ("_plans", "statement")

    def __init__(self, statement: _Statement) -> None:
        self.statement = statement
        self._plans: dict[tuple[str, tuple[str, ...]], _Plan] = {}

    def _plan(self, dialect: Dialect, params: Params) -> _Plan:
        keys = tuple(params) if isinstance(self.statement, sa.UpdateBase) else ()
        found = self._plans.get((dialect.name, keys))
        if found is None:
            found = self._plans[(dialect.name, keys)] = _Plan(self.statement, dialect, keys)
        return found

    def _cursor(self, connection: Connection) -> Any:
        if not connection.in_transaction():
            connection.begin()  # what Connection.execute would do (autobegin)
        return connection.connection.driver_connection.cursor()  # type: ignore[union-attr]

    def all(self, connection: Connection, params: Params) -> list[Any]:
        """Every row, as named tuples (``row.column`` and ``row[0]``)."""
        return self._select(self._cursor(connection), connection.dialect, params)

    def all_alone(self, engine: Engine, params: Params) -> list[Any]:
        """Every row of a SELECT run by itself on a pooled connection, in no transaction of
        SQLAlchemy's: one statement is atomic on its own. For the single read that starts
        every API request; it saves a connection's begin and commit (~0.1 ms)."""
        raw = engine.raw_connection()
        try:
            if engine.dialect.name != "postgresql":  # SQLite's driver begins nothing itself
                return self._select(raw.cursor(), engine.dialect, params)
            # psycopg would send BEGIN first and the pool ROLLBACK after: two round trips
            # more than the SELECT, which under READ COMMITTED sees the same data alone
            driver = raw.driver_connection
            assert driver is not None
            driver.autocommit = True
            try:
                return self._select(raw.cursor(), engine.dialect, params)
            finally:
                driver.autocommit = False
        finally:
            raw.close()  # back to the pool, which rolls back whatever the driver began

    def _select(self, cursor: Any, dialect: Dialect, params: Params) -> list[Any]:
        try:
            plan = self._plan(dialect, params)
            bound = plan.parameters(params)
            try:
                cursor.execute(plan.sql, bound)
            except dialect.loaded_dbapi.Error as error:
                raise _wrapped(plan.sql, bound, error, dialect) from error
            return plan.rows(cursor, dialect)
        finally:
            cursor.close()

    def send(self, connection: Connection, params: Params) -> Pending:
        """A SELECT sent now, its rows read later (:meth:`Pending.rows`): inside
        :func:`pipelined` on PostgreSQL, without waiting for the answer."""
        return self._send(connection, params, select=True)

    def send_run(self, connection: Connection, params: Params | Sequence[Params]) -> Pending:
        """An INSERT, UPDATE or DELETE (once or for each parameter set) sent now; the rows
        it changed are read later (:attr:`Pending.rowcount`)."""
        return self._send(connection, params, select=False)

    def _send(
        self, connection: Connection, params: Params | Sequence[Params], *, select: bool
    ) -> Pending:
        if not connection.info.get(_PIPELINE):  # nothing to wait for: run it now
            if select:
                return Pending(rows=self.all(connection, params))  # type: ignore[arg-type]
            return Pending(rowcount=self.run(connection, params))
        dialect = connection.dialect
        sets: Sequence[Params] = [params] if isinstance(params, Mapping) else params
        if not sets:
            return Pending(rowcount=0)
        plan = self._plan(dialect, sets[0])
        bound = [plan.parameters(one) for one in sets]
        cursor = self._cursor(connection)
        try:
            if len(bound) == 1:
                cursor.execute(plan.sql, bound[0])
            else:
                cursor.executemany(plan.sql, bound)
        except dialect.loaded_dbapi.Error as error:
            cursor.close()
            raise _wrapped(plan.sql, bound, error, dialect) from error
        return Pending(cursor=cursor, plan=plan if select else None, dialect=dialect)

    def first(self, connection: Connection, params: Params) -> Any | None:
        """The first row, or ``None``."""
        rows = self.all(connection, params)
        return rows[0] if rows else None

    def one(self, connection: Connection, params: Params) -> Any:
        """The only row; anything else is :class:`sqlalchemy.exc.NoResultFound` or
        :class:`~sqlalchemy.exc.MultipleResultsFound`."""
        rows = self.all(connection, params)
        if not rows:
            raise sa.exc.NoResultFound("no row was found when one was required")
        if len(rows) > 1:
            raise sa.exc.MultipleResultsFound("multiple rows were found when one was required")
        return rows[0]

    def run(self, connection: Connection, params: Params | Sequence[Params]) -> int:
        """An INSERT, UPDATE or DELETE, once or for each of a list of parameter sets;
        returns the number of rows changed."""
        many = not isinstance(params, Mapping)
        sets: Sequence[Params] = params if many else [params]  # type: ignore[assignment,list-item]
        if not sets:
            return 0
        dialect = connection.dialect
        plan = self._plan(dialect, sets[0])
        keys = sets[0].keys()
        if isinstance(self.statement, sa.UpdateBase) and any(
            one.keys() != keys for one in sets[1:]
        ):
            raise ValueError("every parameter set of one run needs the same keys")
        cursor = self._cursor(connection)
        try:
            bound = [plan.parameters(one) for one in sets]
            try:
                if len(bound) == 1:
                    cursor.execute(plan.sql, bound[0])
                else:
                    cursor.executemany(plan.sql, bound)
            except dialect.loaded_dbapi.Error as error:
                raise _wrapped(plan.sql, bound, error, dialect) from error
            return int(cursor.rowcount)
        finally:
            cursor.close()


class Pending:
    """A statement sent in a pipeline: its rows, or the number of rows it changed, once the
    pipeline has ended (each read once)."""

    __slots__ = ("_cursor", "_dialect", "_plan", "_rowcount", "_rows")

    def __init__(
        self,
        *,
        rows: list[Any] | None = None,
        rowcount: int = -1,
        cursor: Any = None,
        plan: _Plan | None = None,
        dialect: Dialect | None = None,
    ) -> None:
        self._rows, self._rowcount = rows, rowcount
        self._cursor, self._plan, self._dialect = cursor, plan, dialect

    def rows(self) -> list[Any]:
        """The rows of a SELECT, as :meth:`Prepared.all` returns them."""
        if self._cursor is not None:
            assert self._plan is not None
            assert self._dialect is not None
            try:
                self._rows = self._plan.rows(self._cursor, self._dialect)
            finally:
                self._cursor.close()
                self._cursor = None
        assert self._rows is not None, "not a SELECT"
        return self._rows

    def first(self) -> Any | None:
        """The first row, or ``None``."""
        rows = self.rows()
        return rows[0] if rows else None

    @property
    def rowcount(self) -> int:
        """The rows an INSERT, UPDATE or DELETE changed."""
        if self._cursor is not None:
            self._rowcount = int(self._cursor.rowcount)
            self._cursor.close()
            self._cursor = None
        return self._rowcount


@contextmanager
def pipelined(connection: Connection) -> Iterator[None]:
    """Statements sent inside with :meth:`Prepared.send` and :meth:`Prepared.send_run`
    reach PostgreSQL one after another without waiting for each answer, and every answer
    comes back at the end of the block: one round trip for all of them (psycopg's pipeline
    mode) instead of one each. Only statements that do not need each other's results go in
    one block; the first error ends it and is raised at its end. On SQLite (no round trips)
    each statement runs when sent.

    A transaction not yet begun is begun first: psycopg sends that ``BEGIN`` (when not in
    autocommit) in a round trip of its own.
    """
    dialect = connection.dialect
    if dialect.name != "postgresql" or connection.info.get(_PIPELINE):
        yield
        return
    if not connection.in_transaction():
        connection.begin()
    driver = connection.connection.driver_connection
    assert driver is not None
    connection.info[_PIPELINE] = True
    try:
        with driver.pipeline():
            yield
    except dialect.loaded_dbapi.Error as error:
        raise _wrapped("(pipeline)", None, error, dialect) from error
    finally:
        connection.info.pop(_PIPELINE, None)


def _wrapped(sql: str, params: Any, error: Exception, dialect: Dialect) -> BaseException:
    return sa.exc.DBAPIError.instance(
        sql, params, error, dialect.loaded_dbapi.Error, dialect=dialect
    )
