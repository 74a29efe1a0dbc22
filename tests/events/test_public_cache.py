"""The anonymous event page from memory: same document, one load per burst, never stale
past an availability change or the TTL, drafts never cached."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from tests.factories import Account, make_account, make_buyers, make_event, place_order, tiers_of
from tiketi.events.cache import PublicEventCache
from tiketi.events.exceptions import EventNotFound
from tiketi.events.models import Event
from tiketi.events.schemas import EventRead
from tiketi.users.models import Role


@pytest.fixture
async def organizer(app: FastAPI, client: httpx.AsyncClient) -> Account:
    return await make_account(app, client, Role.organizer)


@pytest.fixture
async def event(app: FastAPI, organizer: Account) -> Event:
    return await make_event(app, organizer.user)


async def eventually(check: object, seconds: float = 5.0) -> None:
    """Poll an async predicate until it holds (notifications are asynchronous)."""
    deadline = time.monotonic() + seconds
    while True:
        if await check():  # type: ignore[operator]
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_anonymous_readers_get_the_same_document_as_the_owner(
    client: httpx.AsyncClient, organizer: Account, event: Event
) -> None:
    anonymous = await client.get(f"/events/{event.id}")
    cached = await client.get(f"/events/{event.id}")
    owner = await client.get(f"/events/{event.id}", headers=organizer.headers)
    assert anonymous.status_code == cached.status_code == owner.status_code == 200
    assert anonymous.headers["content-type"] == owner.headers["content-type"]
    assert anonymous.content == cached.content
    assert anonymous.json() == owner.json()
    EventRead.model_validate_json(anonymous.content)


async def test_a_burst_of_readers_costs_one_load(
    app: FastAPI, client: httpx.AsyncClient, event: Event
) -> None:
    cache: PublicEventCache = app.state.public_events
    cache.forget(None)
    before = cache.loads
    responses = await asyncio.gather(*(client.get(f"/events/{event.id}") for _ in range(30)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert cache.loads - before == 1


async def test_a_hold_reaches_anonymous_readers_through_the_notification(
    app: FastAPI, client: httpx.AsyncClient, event: Event
) -> None:
    app.state.public_events.ttl_seconds = 3600  # only the notification can refresh it now
    early = (await tiers_of(app, event.id))[0]
    first = (await client.get(f"/events/{event.id}")).json()
    assert first["ticket_types"][0]["available"] == 100
    [(_, headers)] = await make_buyers(app, 1)
    assert (await place_order(client, headers, event.id, [(early.id, 3)])).status_code == 201

    async def shows_the_hold() -> bool:
        body = (await client.get(f"/events/{event.id}")).json()
        return bool(body["ticket_types"][0]["available"] == 97)

    await eventually(shows_the_hold)


async def test_edits_show_within_the_ttl(
    app: FastAPI, client: httpx.AsyncClient, organizer: Account, event: Event
) -> None:
    app.state.public_events.ttl_seconds = 0.2
    assert (await client.get(f"/events/{event.id}")).json()["title"] == "Nairobi Jazz Festival"
    patched = await client.patch(
        f"/events/{event.id}", json={"title": "Mombasa Jazz"}, headers=organizer.headers
    )
    assert patched.status_code == 200
    await asyncio.sleep(0.25)
    assert (await client.get(f"/events/{event.id}")).json()["title"] == "Mombasa Jazz"


async def test_drafts_and_unknown_ids_are_never_cached(
    app: FastAPI, client: httpx.AsyncClient, organizer: Account
) -> None:
    draft = await make_event(app, organizer.user, publish=False)
    for _ in range(2):
        response = await client.get(f"/events/{draft.id}")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "event_not_found"
    assert (await client.get(f"/events/{draft.id}", headers=organizer.headers)).status_code == 200
    assert (await client.get(f"/events/{uuid.uuid4()}")).status_code == 404
    # Published now: the very next anonymous read sees it (nothing negative was remembered).
    assert (
        await client.post(f"/events/{draft.id}/publish", headers=organizer.headers)
    ).status_code == 200
    assert (await client.get(f"/events/{draft.id}")).status_code == 200


async def test_a_bad_token_is_still_401(client: httpx.AsyncClient, event: Event) -> None:
    response = await client.get(
        f"/events/{event.id}", headers={"Authorization": "Bearer not-a-token"}
    )
    assert response.status_code == 401


async def test_zero_turns_the_cache_off(
    app: FastAPI, client: httpx.AsyncClient, event: Event
) -> None:
    app.state.public_events.ttl_seconds = 0
    assert (await client.get(f"/events/{event.id}")).json()["title"] == "Nairobi Jazz Festival"
    async with app.state.sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE events SET title = 'Changed in SQL' WHERE id = :id"), {"id": event.id}
        )
    assert (await client.get(f"/events/{event.id}")).json()["title"] == "Changed in SQL"


# -- the cache alone, with a controllable loader ---------------------------------------------


def _document(title: str) -> EventRead:
    now = "2026-12-01T18:00:00Z"
    return EventRead.model_validate(
        {
            "id": str(uuid.UUID(int=1)),
            "organizer_id": str(uuid.UUID(int=2)),
            "title": title,
            "description": "",
            "category": "music",
            "tags": [],
            "venue": "KICC",
            "city": "Nairobi",
            "address": None,
            "latitude": None,
            "longitude": None,
            "starts_at": now,
            "ends_at": "2026-12-01T22:00:00Z",
            "timezone": "Africa/Nairobi",
            "image_url": None,
            "status": "published",
            "ticket_types": [],
            "published_at": now,
            "created_at": now,
            "updated_at": now,
        }
    )


async def test_a_change_announced_during_a_load_is_not_hidden() -> None:
    release = asyncio.Event()
    titles = iter(["before the change", "after the change"])

    async def load(_: uuid.UUID) -> EventRead:
        title = next(titles)
        if title == "before the change":
            await release.wait()
        return _document(title)

    cache = PublicEventCache(load, ttl_seconds=3600)
    key = uuid.uuid4()
    slow = asyncio.create_task(cache.document(key))
    await asyncio.sleep(0)
    cache.forget(key)  # the change commits while the first load is still reading
    release.set()
    assert json.loads(await slow)["title"] == "before the change"
    # The first load's answer was not stored: the next reader loads again.
    assert json.loads(await cache.document(key))["title"] == "after the change"
    assert json.loads(await cache.document(key))["title"] == "after the change"


async def test_errors_reach_every_waiter_and_are_not_cached() -> None:
    calls = 0

    async def load(_: uuid.UUID) -> EventRead:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise EventNotFound()

    cache = PublicEventCache(load, ttl_seconds=3600)
    key = uuid.uuid4()
    results = await asyncio.gather(*(cache.document(key) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, EventNotFound) for r in results)
    assert calls == 1
    with pytest.raises(EventNotFound):
        await cache.document(key)
    assert calls == 2


async def test_memory_is_bounded() -> None:
    async def load(_: uuid.UUID) -> EventRead:
        return _document("x")

    cache = PublicEventCache(load, ttl_seconds=3600, max_entries=3)
    for _ in range(10):
        await cache.document(uuid.uuid4())
    assert len(cache._entries) == 3
