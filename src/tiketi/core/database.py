"""Engine, metadata conventions and the request-scoped session.

One transaction per request: `get_session` yields a session, commits once after the handler
returned and rolls back if anything raised. Services and repositories only `flush()`. Routes
whose whole work is one statement take a connection in their turn (`ConnectionQueue`)
instead: no session, the statement commits on its own. `POST /orders` without an
Idempotency-Key uses `app.state.autocommit_engine`; `GET /search` sends SQL already compiled
for asyncpg through `driver_connection`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request
from sqlalchemy import DateTime, MetaData, func, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from tiketi.core.errors import TiketiError
from tiketi.core.settings import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UUIDPrimaryKey:
    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        primary_key=True,
        default=uuid.uuid4,
        server_default=text("gen_random_uuid()"),
    )


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


# asyncpg's own statement cache (used by `DriverConnection.fetch`; SQLAlchemy keeps its
# prepared statements apart) leaves statements over 15 KiB out by default: each search would
# be parsed and planned again on every run. 0 lifts the limit; the cache keeps the 100 most
# recently used statements per connection, as SQLAlchemy's does.
DRIVER_STATEMENT_CACHE = {"statement_cache_size": 100, "max_cacheable_statement_size": 0}


def create_engine(settings: Settings, *, database_url: str | None = None) -> AsyncEngine:
    """An async engine with bounded waits everywhere: pool checkout, connect, statements, locks."""
    url = database_url or settings.database_url
    if not url:
        raise RuntimeError("DATABASE_URL is not set (run `tiketi dev` for the embedded database)")
    connect_args: dict[str, Any] = {
        **DRIVER_STATEMENT_CACHE,
        "timeout": settings.db_connect_timeout_seconds,
        "command_timeout": settings.db_statement_timeout_ms / 1000 + 5,
        "server_settings": {
            "application_name": "tiketi",
            "statement_timeout": str(settings.db_statement_timeout_ms),
            "lock_timeout": str(settings.db_lock_timeout_ms),
            "idle_in_transaction_session_timeout": str(
                max(settings.db_statement_timeout_ms * 4, 60_000)
            ),
            "timezone": "UTC",
        },
    }
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        # No pre-ping: with asyncpg it costs three round trips (BEGIN, ping, ROLLBACK) on every
        # checkout, a third of a read's time (docs/benchmarks.md). A connection that died with
        # the server fails its first statement instead: that request gets a 503, SQLAlchemy
        # sees a disconnect and invalidates the whole pool, and the next requests reconnect.
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args=connect_args,
    )


class ConnectionQueue:
    """Request sessions take their turn for the pool first come, first served.

    SQLAlchemy's asyncio pool lets a newcomer take a connection that was just handed back
    ahead of a request already waiting for one, and the waiter goes to the back of the line:
    in a flash sale some requests lost every race until the pool timeout (a 503 after 10 s)
    while later ones were served. Request sessions queue here instead, at most as many at
    once as the pool holds, in arrival order, for at most the pool timeout (then the same
    error as a pool timeout: 503)."""

    def __init__(self, size: int, timeout_seconds: float) -> None:
        self._slots = asyncio.Semaphore(size)  # fair since Python 3.11.1: no barging
        self._timeout = timeout_seconds

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise PoolTimeoutError(
                f"No database connection came free within {self._timeout:g} s"
            ) from None
        try:
            yield
        finally:
            self._slots.release()

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionQueue:
        return cls(
            settings.db_pool_size + settings.db_max_overflow, settings.db_pool_timeout_seconds
        )


class DriverConnection:
    """A pooled connection used through its driver, asyncpg, for SQL already compiled to what
    asyncpg receives (`$n` placeholders, converted values): each statement runs on its own,
    outside any transaction, and is prepared once per connection (asyncpg's statement cache).
    The connection is one checked out for a block (`driver_connection`) or an SQLAlchemy
    connection's own (`DriverConnection(await conn.get_raw_connection(), conn.dialect)`, for a
    statement that must commit before the connection's transaction begins).

    For a request whose work is one read that it has compiled itself (`GET /search`):
    SQLAlchemy's `Connection` around that one statement (checkout with an isolation level,
    autobegin, a result object, the reset on return) cost ~0.8 ms of CPU per search, a
    quarter of the request's (docs/search.md, "The driver's connection"). Errors still arrive as
    SQLAlchemy's, so the API answers them the same way (`driver_error`); a connection that
    broke is invalidated (closed, never handed out again)."""

    def __init__(self, raw: PoolProxiedConnection, dialect: Dialect) -> None:
        self._raw = raw
        self._driver: Any = raw.driver_connection
        self.dialect = dialect

    async def fetch(self, sql: str, arguments: Sequence[Any] = ()) -> list[Any]:
        """The rows (asyncpg `Record`s: by position or by column name)."""
        try:
            rows: list[Any] = await self._driver.fetch(sql, *arguments)
        except Exception as error:
            broken = self._driver.is_closed() or isinstance(error, OSError)
            if broken:
                self.invalidate(error)
            raise driver_error(error, sql, arguments, invalidated=broken) from error
        return rows

    def invalidate(self, error: BaseException | None = None) -> None:
        """Close the connection now (asyncpg's terminate: no round trip); the pool opens a
        new one in its place."""
        if self._raw.is_valid:
            self._raw.invalidate(error)


def driver_error(
    error: Exception, sql: str, arguments: Sequence[Any], *, invalidated: bool = False
) -> Exception:
    """asyncpg's error as SQLAlchemy's asyncpg dialect would have raised it: a lost connection
    (closed, reset, timed out) is an `OperationalError` marked invalidated (a 503), another
    database or driver error a `DBAPIError` carrying it (judged by its SQLSTATE, as any)."""
    if invalidated:
        return OperationalError(sql, tuple(arguments), error, connection_invalidated=True)
    if isinstance(error, asyncpg.PostgresError | asyncpg.InterfaceError):
        return DBAPIError(sql, tuple(arguments), error)
    return error


@asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[DriverConnection]:
    """A connection of `engine`'s pool for `DriverConnection.fetch`, back in the pool after the
    block. Take it in the request's turn (`ConnectionQueue.turn`), as sessions do."""
    raw = await engine.raw_connection()
    connection = DriverConnection(raw, engine.dialect)
    try:
        yield connection
    except BaseException as error:
        if not isinstance(error, Exception):
            # Cancelled (shutdown, a timeout) perhaps mid-statement: the driver may still be
            # waiting for its answer, so the connection does not go back to the pool.
            connection.invalidate(error)
        raise
    finally:
        # The pool's reset on return is a rollback that finds no transaction (nothing ran
        # through SQLAlchemy): no round trip, but it runs in SQLAlchemy's greenlet context.
        await greenlet_spawn(raw.close)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: commit once after the handler, roll back on any error
    (except errors marked `keeps_changes`, whose writes are the point)."""
    state = request.app.state
    sessionmaker: async_sessionmaker[AsyncSession] = state.sessionmaker
    queue: ConnectionQueue = state.connection_queue
    async with queue.turn(), sessionmaker() as session:
        try:
            yield session
        except TiketiError as error:
            if error.keeps_changes:
                await session.commit()
            else:
                await session.rollback()
            raise
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


# scope="function": the commit happens when the handler returns, before the response is sent,
# so a failing commit becomes an error response instead of a lie.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
