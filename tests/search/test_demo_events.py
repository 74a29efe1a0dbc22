"""The demo catalogue: curated events through the services, and the bulk generator."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from tests.factories import make_user
from tests.search.conftest import search, titles
from tiketi.demo_events import CURATED_EVENTS, seed_demo_events
from tiketi.users.models import Role

EMAIL = "organizer@demo.example.com"


async def test_seed_demo_events_is_idempotent_and_searchable(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await make_user(app, role=Role.organizer, email=EMAIL)
    async with app.state.sessionmaker() as session, session.begin():
        assert await seed_demo_events(session, organizer_email=EMAIL) == len(CURATED_EVENTS)
        curated_tiers = (
            (
                await session.execute(
                    text(
                        "SELECT DISTINCT array_agg(t.name ORDER BY t.name) FROM events e"
                        " JOIN ticket_types t ON t.event_id = e.id"
                        " WHERE e.status = 'published' GROUP BY e.id"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert curated_tiers == [["Early Bird", "Regular", "VIP"]]
    async with app.state.sessionmaker() as session, session.begin():
        assert await seed_demo_events(session, organizer_email=EMAIL) == 0
        assert await seed_demo_events(session, organizer_email=EMAIL, generate=300) == 300

    async with app.state.sessionmaker() as session:
        stats = (
            await session.execute(
                text(
                    "SELECT count(*) AS events,"
                    " count(*) FILTER (WHERE e.status = 'published') AS published,"
                    " min(t.tiers) AS min_tiers, max(t.tiers) AS max_tiers,"
                    " min(t.low) AS low, max(t.high) AS high,"
                    " count(DISTINCT e.city) AS cities, count(DISTINCT e.category_id) AS categories"
                    " FROM events e CROSS JOIN LATERAL (SELECT count(*) AS tiers,"
                    " min(price) AS low, max(price) AS high"
                    " FROM ticket_types WHERE event_id = e.id) t"
                )
            )
        ).one()
    assert stats.events == stats.published == len(CURATED_EVENTS) + 300
    assert (stats.min_tiers, stats.max_tiers) == (1, 3)
    assert stats.low == 0
    assert stats.high <= 15_000
    assert stats.cities >= 8
    assert stats.categories >= 8

    assert titles(await search(client, q="kasarani derby"))[0].startswith("Mashemeji Derby")
    assert titles(await search(client, q="ngong races derby"))[0] == "Ngong Races Derby Day"
    assert "Kigogo: Tamthilia ya Kiswahili" in titles(await search(client, q="kiswahili"))
    assert (await search(client, city="Mombasa", category="festivals"))["items"]


async def test_seed_demo_events_needs_the_organizer(app: FastAPI) -> None:
    async with app.state.sessionmaker() as session:
        with pytest.raises(LookupError):
            await seed_demo_events(session, organizer_email="nobody@example.com")
