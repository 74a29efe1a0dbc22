"""The route runs its statement on a bare connection in autocommit (no request session)."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from tests.factories import future, make_event
from tests.search.conftest import count_statements, search, titles
from tiketi.users.models import User


async def test_search_sends_only_its_statement(
    app: FastAPI, client: httpx.AsyncClient, organizer: User
) -> None:
    await make_event(app, organizer, title="Jazz Night", starts_at=future(2))
    with count_statements(app) as statements:
        page = await search(client, q="jazz")
    assert titles(page) == ["Jazz Night"]
    assert len(statements) == 1, statements


async def test_connections_go_back_to_the_pool_transactional(
    app: FastAPI, client: httpx.AsyncClient, organizer: User
) -> None:
    """Autocommit is the search's alone: connections it used run the next unit of work in a
    transaction again (two statements of one transaction see one transaction id)."""
    await make_event(app, organizer, title="Jazz Night", starts_at=future(2))
    pages = await asyncio.gather(*(search(client, q="jazz") for _ in range(8)))
    assert all(titles(page) == ["Jazz Night"] for page in pages)
    assert app.state.engine.sync_engine.pool.checkedout() == 0

    async def one_transaction() -> bool:
        async with app.state.sessionmaker() as session, session.begin():
            first = (await session.execute(text("SELECT txid_current()"))).scalar_one()
            await asyncio.sleep(0.01)  # every session holds a connection at once
            second = (await session.execute(text("SELECT txid_current()"))).scalar_one()
        return bool(first == second)

    assert all(await asyncio.gather(*(one_transaction() for _ in range(8))))
