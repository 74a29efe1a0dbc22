"""A database that does not answer in time (statement or lock timeout) is a quick 503
`database_busy` with Retry-After, never a 500, on both ways to the database: a request
session (`GET /events`) and the driver's connection (`GET /search`)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import make_settings
from tiketi.core.embedded import to_asyncpg_dsn
from tiketi.main import create_app

ROUTES = [("/events", {}), ("/search", {"q": "jazz"})]


@pytest.fixture
async def locked(database_url: str) -> AsyncIterator[None]:
    """Another session holds the events table in ACCESS EXCLUSIVE mode: every read waits."""
    holder = await asyncpg.connect(to_asyncpg_dsn(database_url))
    transaction = holder.transaction()
    await transaction.start()
    await holder.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
    try:
        yield
    finally:
        await transaction.rollback()
        await holder.close()


async def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.mark.parametrize(
    ("timeouts", "sqlstate"),
    [
        ({"db_statement_timeout_ms": 300, "db_lock_timeout_ms": 10_000}, "57014"),
        ({"db_statement_timeout_ms": 10_000, "db_lock_timeout_ms": 300}, "55P03"),
    ],
    ids=["statement_timeout", "lock_timeout"],
)
async def test_a_timeout_is_a_503_database_busy(
    database_url: str, locked: None, timeouts: dict[str, int], sqlstate: str
) -> None:
    app = create_app(make_settings(database_url, **timeouts))
    async with app.router.lifespan_context(app), await _client(app) as client:
        for path, params in ROUTES:
            started = time.monotonic()
            response = await client.get(path, params=params)
            assert response.status_code == 503, (path, sqlstate, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["retry-after"] == "2"
            assert response.json()["code"] == "database_busy"
            assert time.monotonic() - started < 5  # the timeout, not the 10 s one
        assert app.state.engine.sync_engine.pool.checkedout() == 0


async def test_reads_work_again_once_the_lock_is_gone(database_url: str) -> None:
    app = create_app(make_settings(database_url, db_statement_timeout_ms=300))
    async with app.router.lifespan_context(app), await _client(app) as client:
        for path, params in ROUTES:
            assert (await client.get(path, params=params)).status_code == 200, path
