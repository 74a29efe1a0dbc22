"""The exact SQL tiketi sends, obtained from tiketi's own repositories.

A repository method is run against a `RecordingSession` that keeps the statement instead of
executing it; the statement is compiled with SQLAlchemy's asyncpg dialect (the dialect the app
uses), which yields the text asyncpg prepares (`$1` placeholders, the dialect's casts) and the
parameters in order, after the dialect's bind processors. Baselines run that text over asyncpg.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg


@dataclass(frozen=True)
class CapturedSql:
    sql: str
    args: tuple[Any, ...]


_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]


class _EmptyResult:
    """Enough of a SQLAlchemy Result for repositories that got no rows."""

    def all(self) -> list[Any]:
        return []

    def one_or_none(self) -> None:
        return None

    def first(self) -> None:
        return None

    def scalar_one_or_none(self) -> None:
        return None

    def scalars(self) -> _EmptyResult:
        return self

    def __iter__(self) -> Any:
        return iter(())


class RecordingSession:
    """Stands in for an AsyncSession, AsyncConnection or DriverConnection: records each
    statement (a statement object with its values, or SQL text with its arguments as a
    repository already compiled it for the driver), answers with no rows."""

    def __init__(self) -> None:
        self.statements: list[tuple[Any, dict[str, Any] | None] | CapturedSql] = []
        self.dialect = _DIALECT

    async def execute(self, statement: Any, params: Any = None, **_: Any) -> _EmptyResult:
        if params is not None and not isinstance(params, dict):
            raise NotImplementedError("executemany-style parameters are not captured")
        self.statements.append((statement, params))
        return _EmptyResult()

    async def fetch(self, sql: str, arguments: Any = ()) -> list[Any]:
        """As `tiketi.core.database.DriverConnection.fetch`: SQL as asyncpg receives it."""
        self.statements.append(CapturedSql(sql=sql, args=tuple(arguments)))
        return []


def compile_statement(statement: Any, values: dict[str, Any] | None = None) -> CapturedSql:
    """The SQL text and positional arguments asyncpg receives for `statement` executed with
    `values` (the parameters passed next to it, if any)."""
    compiled = statement.compile(
        dialect=_DIALECT,
        column_keys=list(values) if values else None,
        compile_kwargs={"render_postcompile": True},
    )
    params = compiled.construct_params(values)
    processors = compiled._bind_processors
    names = compiled.positiontup or []
    args = []
    for name in names:
        value = params[name]
        processor = processors.get(name)
        args.append(processor(value) if processor is not None else value)
    return CapturedSql(sql=str(compiled), args=tuple(args))


async def capture(work: Callable[[RecordingSession], Awaitable[object]]) -> list[CapturedSql]:
    """Run `work(session)` against a recording session; the statements it tried, compiled."""
    session = RecordingSession()
    await work(session)
    return [
        entry if isinstance(entry, CapturedSql) else compile_statement(*entry)
        for entry in session.statements
    ]
