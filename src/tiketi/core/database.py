"""Engine, metadata conventions and the request-scoped session.

One transaction per request: `get_session` yields a session, commits once after the handler
returned and rolls back if anything raised. Services and repositories only `flush()`. Routes
whose whole work is one statement (`POST /orders` without an Idempotency-Key, `GET /search`)
take a connection of `app.state.autocommit_engine` in their turn (`ConnectionQueue`) instead:
no session, the statement commits on its own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import DateTime, MetaData, func, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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


def create_engine(settings: Settings, *, database_url: str | None = None) -> AsyncEngine:
    """An async engine with bounded waits everywhere: pool checkout, connect, statements, locks."""
    url = database_url or settings.database_url
    if not url:
        raise RuntimeError("DATABASE_URL is not set (run `tiketi dev` for the embedded database)")
    connect_args: dict[str, Any] = {
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
