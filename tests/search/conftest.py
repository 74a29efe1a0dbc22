"""Search tests: fixtures and helpers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, text

from tests.factories import make_account
from tiketi.core.database import DriverConnection
from tiketi.users.models import Role, User


@pytest.fixture
async def organizer(app: FastAPI, client: httpx.AsyncClient) -> User:
    return (await make_account(app, client, Role.organizer)).user


async def search(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/search", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def titles(page: dict[str, Any]) -> list[str]:
    return [item["title"] for item in page["items"]]


async def all_pages(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    """Every item, following next_cursor to the end."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(200):
        page = await search(client, **params, **({"cursor": cursor} if cursor else {}))
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("paging did not end")


async def run_sql(app: FastAPI, sql: str, **params: Any) -> None:
    async with app.state.sessionmaker() as session, session.begin():
        await session.execute(text(sql), params)


async def end_event(app: FastAPI, event_id: uuid.UUID) -> None:
    await run_sql(
        app,
        "UPDATE events SET starts_at = now() - interval '2 days',"
        " ends_at = now() - interval '1 day' WHERE id = :id",
        id=event_id,
    )


async def cancel_event(app: FastAPI, event_id: uuid.UUID) -> None:
    await run_sql(app, "UPDATE events SET status = 'cancelled' WHERE id = :id", id=event_id)


@contextmanager
def count_statements(app: FastAPI) -> Iterator[list[str]]:
    """The SQL statements the app sends while the block runs: through SQLAlchemy (its
    cursor events) and through the driver's connection (`DriverConnection.fetch`)."""
    statements: list[str] = []
    engine = app.state.engine.sync_engine
    driver_fetch = DriverConnection.fetch

    def record(*args: Any) -> None:
        statements.append(args[2])

    async def fetch(self: DriverConnection, sql: str, arguments: Sequence[Any] = ()) -> list[Any]:
        statements.append(sql)
        return await driver_fetch(self, sql, arguments)

    event.listen(engine, "before_cursor_execute", record)
    DriverConnection.fetch = fetch  # type: ignore[method-assign]
    try:
        yield statements
    finally:
        DriverConnection.fetch = driver_fetch  # type: ignore[method-assign]
        event.remove(engine, "before_cursor_execute", record)
