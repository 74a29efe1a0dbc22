"""Ticket type counters: the CHECK constraint, quantity changes, deletion, availability."""

import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import Account, future, make_account, make_event, tiers_of
from tiketi.users.models import Role


@pytest.fixture
async def organizer(app: FastAPI, client: httpx.AsyncClient) -> Account:
    return await make_account(app, client, Role.organizer)


async def _set_counters(session: AsyncSession, type_id: uuid.UUID, sold: int, held: int) -> None:
    await session.execute(
        text("UPDATE ticket_types SET sold = :s, held = :h WHERE id = :id"),
        {"s": sold, "h": held, "id": type_id},
    )
    await session.commit()


@pytest.mark.parametrize(("sold", "held"), [(60, 50), (101, 0), (-1, 0), (0, -5)])
async def test_check_constraint_holds_for_direct_sql(
    app: FastAPI, organizer: Account, session: AsyncSession, sold: int, held: int
) -> None:
    event = await make_event(app, organizer.user)
    tier = (await tiers_of(app, event.id))[0]  # Early Bird, 100
    with pytest.raises(IntegrityError, match="ck_ticket_types_inventory"):
        await _set_counters(session, tier.id, sold, held)
    await session.rollback()


async def test_quantity_cannot_drop_below_committed(
    app: FastAPI, client: httpx.AsyncClient, organizer: Account, session: AsyncSession
) -> None:
    event = await make_event(app, organizer.user)
    tier = (await tiers_of(app, event.id))[0]
    await _set_counters(session, tier.id, 30, 20)
    path = f"/events/{event.id}/ticket-types/{tier.id}"
    refused = await client.patch(path, json={"quantity": 49, "price": 1}, headers=organizer.headers)
    assert refused.status_code == 409
    assert refused.json()["code"] == "quantity_below_committed"
    unchanged = (await tiers_of(app, event.id))[0]
    assert (unchanged.quantity, unchanged.price) == (100, 1500)
    ok = await client.patch(path, json={"quantity": 50}, headers=organizer.headers)
    assert ok.status_code == 200
    assert ok.json()["available"] == 0


async def test_delete_tier_only_without_sales_or_holds(
    app: FastAPI, client: httpx.AsyncClient, organizer: Account, session: AsyncSession
) -> None:
    event = await make_event(app, organizer.user)
    early, vip, _ = await tiers_of(app, event.id)
    await _set_counters(session, early.id, 0, 1)
    held = await client.delete(
        f"/events/{event.id}/ticket-types/{early.id}", headers=organizer.headers
    )
    assert held.status_code == 409
    assert held.json()["code"] == "ticket_type_in_use"
    gone = await client.delete(
        f"/events/{event.id}/ticket-types/{vip.id}", headers=organizer.headers
    )
    assert gone.status_code == 204
    missing = await client.delete(
        f"/events/{event.id}/ticket-types/{vip.id}", headers=organizer.headers
    )
    assert missing.status_code == 404


async def test_tier_of_another_event_is_404(
    app: FastAPI, client: httpx.AsyncClient, organizer: Account
) -> None:
    one = await make_event(app, organizer.user)
    two = await make_event(app, organizer.user)
    other_tier = (await tiers_of(app, two.id))[0]
    response = await client.patch(
        f"/events/{one.id}/ticket-types/{other_tier.id}",
        json={"price": 1},
        headers=organizer.headers,
    )
    assert response.status_code == 404


async def test_availability(
    app: FastAPI, client: httpx.AsyncClient, organizer: Account, session: AsyncSession
) -> None:
    event = await make_event(
        app,
        organizer.user,
        tiers=[
            {
                "name": "Early Bird",
                "price": 1000,
                "quantity": 10,
                "sales_end": future(1).isoformat(),
            },
            {"name": "Late", "price": 3000, "quantity": 10, "sales_start": future(2).isoformat()},
        ],
    )
    early, late = await tiers_of(app, event.id)
    await _set_counters(session, early.id, 4, 3)
    rows = (await client.get(f"/events/{event.id}/availability")).json()
    assert rows == [
        {
            "ticket_type_id": str(early.id),
            "name": "Early Bird",
            "price": 1000,
            "quantity": 10,
            "available": 3,
            "on_sale": True,
        },
        {
            "ticket_type_id": str(late.id),
            "name": "Late",
            "price": 3000,
            "quantity": 10,
            "available": 10,
            "on_sale": False,
        },
    ]
    assert (await client.get(f"/events/{uuid.uuid4()}/availability")).status_code == 404
