"""Sold-out answers from memory: only when the database would say the same, and forgotten as
soon as capacity comes back."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import pytest
from fastapi import FastAPI

from tests.factories import (
    Account,
    counters,
    make_account,
    make_buyers,
    make_event,
    place_order,
    tiers_of,
)
from tiketi.events.models import Event, TicketType
from tiketi.orders.sold_out import SoldOutTiers
from tiketi.users.models import Role


@pytest.fixture
async def organizer(app: FastAPI, client: httpx.AsyncClient) -> Account:
    return await make_account(app, client, Role.organizer)


@pytest.fixture
async def event(app: FastAPI, organizer: Account) -> Event:
    return await make_event(
        app,
        organizer.user,
        tiers=[
            {"name": "VIP", "price": 5000, "quantity": 2, "max_per_order": 2},
            {"name": "Regular", "price": 1000, "quantity": 50, "max_per_order": 4},
        ],
    )


@pytest.fixture
def memory(app: FastAPI) -> SoldOutTiers:
    tiers: SoldOutTiers = app.state.sold_out
    tiers.ttl_seconds = 3600  # only a notification (or nothing) can make it forget here
    return tiers


async def _sell_out(app: FastAPI, client: httpx.AsyncClient, event: Event) -> TicketType:
    vip = (await tiers_of(app, event.id))[0]
    [(_, headers)] = await make_buyers(app, 1)
    response = await place_order(client, headers, event.id, [(vip.id, 2)])
    assert response.status_code == 201
    return vip


async def test_a_sold_out_tier_is_answered_from_memory(
    app: FastAPI, client: httpx.AsyncClient, event: Event, memory: SoldOutTiers
) -> None:
    vip = await _sell_out(app, client, event)
    buyers = await make_buyers(app, 3)
    first = await place_order(client, buyers[0][1], event.id, [(vip.id, 1)])
    assert first.status_code == 409
    hits = memory.hits
    for _, headers in buyers[1:]:
        again = await place_order(client, headers, event.id, [(vip.id, 1)])
        assert again.status_code == 409
        assert again.headers["content-type"] == "application/problem+json"
        body, expected = again.json(), first.json()
        body.pop("request_id"), expected.pop("request_id")
        assert body == expected
    assert memory.hits == hits + 2


async def test_only_what_the_database_would_also_refuse(
    app: FastAPI, client: httpx.AsyncClient, organizer: Account, event: Event, memory: SoldOutTiers
) -> None:
    vip = await _sell_out(app, client, event)
    regular = (await tiers_of(app, event.id))[1]
    [(_, headers)] = await make_buyers(app, 1)
    assert (await place_order(client, headers, event.id, [(vip.id, 1)])).status_code == 409
    # Over the per-order limit: the 422 the full check gives, not "sold out".
    over = await place_order(client, headers, event.id, [(vip.id, 3)])
    assert (over.status_code, over.json()["code"]) == (422, "invalid_items")
    # The tier asked for under another event: not part of it.
    other = await make_event(app, organizer.user)
    wrong = await place_order(client, headers, other.id, [(vip.id, 1)])
    assert (wrong.status_code, wrong.json()["code"]) == (422, "invalid_items")
    # A line for a tier with tickets left goes to the database, which refuses the VIP line.
    hits = memory.hits
    mixed = await place_order(client, headers, event.id, [(regular.id, 1), (vip.id, 1)])
    assert (mixed.status_code, mixed.json()["code"]) == (409, "sold_out")
    assert memory.hits == hits


async def test_requests_waiting_for_a_connection_are_answered_once_the_tier_sold_out(
    app: FastAPI, client: httpx.AsyncClient, event: Event, memory: SoldOutTiers
) -> None:
    """In a flash sale most requests that queue for a connection ask for the tier that sells
    out meanwhile: each is answered from memory when its turn comes, without a statement (a
    statement each made them wait seconds behind later requests answered at once)."""
    regular = (await tiers_of(app, event.id))[1]
    buyers = await make_buyers(app, 3)
    settings = app.state.settings
    async with contextlib.AsyncExitStack() as pool_busy:
        for _ in range(settings.db_pool_size + settings.db_max_overflow):
            await pool_busy.enter_async_context(app.state.connection_queue.turn())
        waiting = [
            asyncio.create_task(place_order(client, headers, event.id, [(regular.id, 1)]))
            for _, headers in buyers
        ]
        await asyncio.sleep(0.3)
        assert not any(task.done() for task in waiting)
        # The tier is remembered sold out (it is not: only memory can answer 409 here).
        memory.remember(event_id=event.id, tier_id=regular.id, name="Regular", max_per_order=4)
    answers = await asyncio.gather(*waiting)
    assert [(a.status_code, a.json()["code"]) for a in answers] == [(409, "sold_out")] * 3
    assert (await counters(app, regular.id))[1:] == (0, 0)


async def test_released_tickets_are_sold_again_at_once(
    app: FastAPI, client: httpx.AsyncClient, event: Event, memory: SoldOutTiers
) -> None:
    vip = (await tiers_of(app, event.id))[0]
    [(_, holder), (_, waiting)] = await make_buyers(app, 2)
    held = await place_order(client, holder, event.id, [(vip.id, 2)])
    assert held.status_code == 201
    assert (await place_order(client, waiting, event.id, [(vip.id, 2)])).status_code == 409
    cancelled = await client.post(f"/orders/{held.json()['id']}/cancel", headers=holder)
    assert cancelled.status_code == 200
    deadline = time.monotonic() + 5
    while (
        response := await place_order(client, waiting, event.id, [(vip.id, 2)])
    ).status_code != 201:
        assert response.status_code == 409
        assert time.monotonic() < deadline, "the release never reached the sold-out memory"
        await asyncio.sleep(0.02)


def test_entries_expire_and_memory_is_bounded() -> None:
    import uuid

    memory = SoldOutTiers(ttl_seconds=0.05, max_entries=2)
    event_id = uuid.uuid4()
    tiers = [uuid.uuid4() for _ in range(3)]
    for tier in tiers:
        memory.remember(event_id=event_id, tier_id=tier, name="GA", max_per_order=4)
    assert memory.answer(event_id, [(tiers[0], 1)]) is None  # evicted, oldest first
    assert memory.answer(event_id, [(tiers[2], 1)]) is not None
    time.sleep(0.06)
    assert memory.answer(event_id, [(tiers[2], 1)]) is None
    off = SoldOutTiers(ttl_seconds=0)
    off.remember(event_id=event_id, tier_id=tiers[0], name="GA", max_per_order=4)
    assert off.answer(event_id, [(tiers[0], 1)]) is None
