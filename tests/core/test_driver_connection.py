"""`driver_connection`: statements through asyncpg on a pooled connection, errors as
SQLAlchemy's, and a connection that broke never handed out again."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from tiketi.core.database import driver_connection
from tiketi.core.embedded import to_asyncpg_dsn
from tiketi.core.errors import sqlstate


async def _backend(engine: AsyncEngine) -> int:
    async with driver_connection(engine) as connection:
        (row,) = await connection.fetch("SELECT pg_backend_pid()")
        return int(row[0])


async def _terminate(app: FastAPI, pid: int) -> None:
    admin = await asyncpg.connect(to_asyncpg_dsn(app.state.settings.database_url))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        for _ in range(100):  # gone from the server's view: the socket is closed
            if not await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid
            ):
                return
            await asyncio.sleep(0.05)
    finally:
        await admin.close()


async def test_rows_and_arguments(app: FastAPI) -> None:
    engine = app.state.engine
    async with driver_connection(engine) as connection:
        rows = await connection.fetch("SELECT $1::int + 1 AS n, $2::text AS word", (41, "jambo"))
    assert [(row[0], row["word"]) for row in rows] == [(42, "jambo")]
    assert engine.sync_engine.pool.checkedout() == 0


async def test_a_database_error_is_sqlalchemys_and_the_connection_stays(app: FastAPI) -> None:
    engine = app.state.engine
    async with driver_connection(engine) as connection:
        with pytest.raises(DBAPIError) as raised:
            await connection.fetch("SELECT 1 / $1::int", (0,))
        assert sqlstate(raised.value) == "22012"  # division_by_zero
        assert not raised.value.connection_invalidated
        assert not isinstance(raised.value, OperationalError)  # not "unavailable"
        (row,) = await connection.fetch("SELECT 1")  # still usable, outside any transaction
        assert row[0] == 1
    assert engine.sync_engine.pool.checkedout() == 0


async def test_a_killed_connection_is_invalidated_not_reused(app: FastAPI) -> None:
    engine = app.state.engine
    pid = await _backend(engine)
    await _terminate(app, pid)
    with pytest.raises(OperationalError) as raised:
        async with driver_connection(engine) as connection:
            # The pool hands out the connection it has (no pre-ping): the one just killed.
            await connection.fetch("SELECT 1")
    assert raised.value.connection_invalidated
    # Never handed out again: the next checkout opens a new server process.
    assert await _backend(engine) != pid
    assert engine.sync_engine.pool.checkedout() == 0


async def test_a_search_on_a_killed_connection_is_a_503_then_searches_work(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    assert (await client.get("/search", params={"q": "jazz"})).status_code == 200
    await _terminate(app, await _backend(app.state.engine))
    statuses = []
    for _ in range(5):
        response = await client.get("/search", params={"q": "jazz"})
        statuses.append(response.status_code)
        if response.status_code == 503:
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["code"] == "database_unavailable"
    # One connection was pooled and it died: at most that search fails, with a 503.
    assert statuses in ([200] * 5, [503] + [200] * 4), statuses


async def test_a_cancelled_statement_does_not_go_back_to_the_pool(app: FastAPI) -> None:
    engine = app.state.engine
    pid = await _backend(engine)

    async def slow() -> None:
        async with driver_connection(engine) as connection:
            await connection.fetch("SELECT pg_sleep(30)")

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.sync_engine.pool.checkedout() == 0
    # The connection that was still waiting for pg_sleep's answer was closed, not pooled.
    assert await _backend(engine) != pid
