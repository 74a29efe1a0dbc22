from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from tests.fixtures.database import TestServer, start_test_server
from tiketi.core.settings import Environment, Settings
from tiketi.main import create_app


@pytest.fixture(scope="session")
def pg() -> Iterator[TestServer]:
    yield from start_test_server()


@pytest.fixture
async def database_url(pg: TestServer) -> AsyncIterator[str]:
    name = await pg.create_database()
    try:
        yield pg.url(name)
    finally:
        await pg.drop_database(name)


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "tiketi_env": Environment.test,
        "database_url": database_url,
        "jobs_enabled": False,
        "log_json": False,
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.fixture
async def session(app: FastAPI) -> AsyncIterator[AsyncSession]:
    """A session on the test database; the test decides when to commit."""
    async with app.state.sessionmaker() as s:
        yield s
