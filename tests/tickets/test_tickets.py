import asyncio
import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import (
    Account,
    counters,
    make_account,
    make_event,
    pay_order,
    place_order,
    tiers_of,
)
from tiketi.events.models import Event
from tiketi.tickets.service import fulfil_paid_order
from tiketi.users.models import Role


@pytest.fixture
async def organizer(app: FastAPI, client: httpx.AsyncClient) -> Account:
    return await make_account(app, client, Role.organizer)


@pytest.fixture
async def buyer(app: FastAPI, client: httpx.AsyncClient) -> Account:
    return await make_account(app, client)


@pytest.fixture
async def event(app: FastAPI, organizer: Account) -> Event:
    return await make_event(app, organizer.user)


async def _paid_order(
    app: FastAPI, client: httpx.AsyncClient, buyer: Account, event: Event, n: int = 2
) -> dict:  # type: ignore[type-arg]
    early = (await tiers_of(app, event.id))[0]
    order = (await place_order(client, buyer.headers, event.id, [(early.id, n)])).json()
    assert await pay_order(app, order["id"])
    return (await client.get(f"/orders/{order['id']}", headers=buyer.headers)).json()  # type: ignore[no-any-return]


async def test_issuance_is_idempotent(
    app: FastAPI, client: httpx.AsyncClient, buyer: Account, event: Event
) -> None:
    order = await _paid_order(app, client, buyer, event, 3)
    assert order["status"] == "paid"
    assert len(order["tickets"]) == 3
    early = (await tiers_of(app, event.id))[0]
    assert await counters(app, early.id) == (100, 3, 0)
    assert not await pay_order(app, order["id"])  # a second settlement issues nothing
    again = (await client.get(f"/orders/{order['id']}", headers=buyer.headers)).json()
    assert len(again["tickets"]) == 3
    assert await counters(app, early.id) == (100, 3, 0)


async def test_ticket_listing_and_visibility(
    app: FastAPI, client: httpx.AsyncClient, buyer: Account, organizer: Account, event: Event
) -> None:
    order = await _paid_order(app, client, buyer, event)
    ticket = order["tickets"][0]
    mine = (await client.get("/tickets", headers=buyer.headers)).json()
    assert {t["id"] for t in mine["items"]} == {t["id"] for t in order["tickets"]}
    filtered = (
        await client.get("/tickets", params={"event_id": str(uuid.uuid4())}, headers=buyer.headers)
    ).json()
    assert filtered["items"] == []
    assert ticket["holder_name"] == "Wanjiru Kamau"
    assert ticket["ticket_type_name"] == "Early Bird"
    for viewer, status in [
        (buyer, 200),
        (organizer, 200),
        (await make_account(app, client), 404),
        (await make_account(app, client, Role.organizer), 404),
        (await make_account(app, client, Role.admin), 200),
    ]:
        response = await client.get(f"/tickets/{ticket['id']}", headers=viewer.headers)
        assert response.status_code == status


async def test_qr_for_the_holder_only(
    app: FastAPI, client: httpx.AsyncClient, buyer: Account, organizer: Account, event: Event
) -> None:
    ticket = (await _paid_order(app, client, buyer, event))["tickets"][0]
    svg = await client.get(f"/tickets/{ticket['id']}/qr", headers=buyer.headers)
    assert svg.status_code == 200
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.headers["cache-control"] == "private, no-store"
    assert b"<svg" in svg.content
    png = await client.get(
        f"/tickets/{ticket['id']}/qr", params={"format": "png"}, headers=buyer.headers
    )
    assert png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")
    assert (
        await client.get(f"/tickets/{ticket['id']}/qr", headers=organizer.headers)
    ).status_code == 404
    bad = await client.get(
        f"/tickets/{ticket['id']}/qr", params={"format": "gif"}, headers=buyer.headers
    )
    assert bad.status_code == 422


async def test_check_in_once(
    app: FastAPI, client: httpx.AsyncClient, buyer: Account, organizer: Account, event: Event
) -> None:
    ticket = (await _paid_order(app, client, buyer, event))["tickets"][0]
    body = {"event_id": str(event.id), "code": ticket["code"]}
    first = await client.post("/tickets/check-in", json=body, headers=organizer.headers)
    assert first.status_code == 200, first.text
    assert first.json()["result"] == "admitted"
    assert first.json()["ticket"]["status"] == "checked_in"
    second = await client.post("/tickets/check-in", json=body, headers=organizer.headers)
    assert second.status_code == 409
    problem = second.json()
    assert problem["code"] == "already_checked_in"
    assert problem["checked_in_at"] == first.json()["ticket"]["checked_in_at"]
    assert problem["checked_in_by"] == "Wanjiru Kamau"


async def test_double_scan_race_admits_once(
    app: FastAPI, client: httpx.AsyncClient, buyer: Account, organizer: Account, event: Event
) -> None:
    ticket = (await _paid_order(app, client, buyer, event))["tickets"][0]
    admin = await make_account(app, client, Role.admin)
    body = {"event_id": str(event.id), "code": ticket["code"]}
    responses = await asyncio.gather(
        *[
            client.post("/tickets/check-in", json=body, headers=h)
            for h in [organizer.headers, admin.headers] * 5
        ]
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 9


async def test_check_in_refusals(
    app: FastAPI, client: httpx.AsyncClient, buyer: Account, organizer: Account, event: Event
) -> None:
    ticket = (await _paid_order(app, client, buyer, event))["tickets"][0]
    other_event = await make_event(app, organizer.user)
    unknown = await client.post(
        "/tickets/check-in",
        json={"event_id": str(event.id), "code": "nope"},
        headers=organizer.headers,
    )
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "unknown_ticket"
    wrong_event = await client.post(
        "/tickets/check-in",
        json={"event_id": str(other_event.id), "code": ticket["code"]},
        headers=organizer.headers,
    )
    assert wrong_event.status_code == 404
    assert wrong_event.json()["code"] == "unknown_ticket"
    rival = await make_account(app, client, Role.organizer)
    not_theirs = await client.post(
        "/tickets/check-in",
        json={"event_id": str(event.id), "code": ticket["code"]},
        headers=rival.headers,
    )
    assert not_theirs.status_code == 404
    as_customer = await client.post(
        "/tickets/check-in",
        json={"event_id": str(event.id), "code": ticket["code"]},
        headers=buyer.headers,
    )
    assert as_customer.status_code == 403
    # None of these admitted anyone.
    assert (await client.get(f"/tickets/{ticket['id']}", headers=buyer.headers)).json()[
        "status"
    ] == "valid"


async def test_event_cancellation_voids_and_refunds(
    app: FastAPI, client: httpx.AsyncClient, buyer: Account, organizer: Account, event: Event
) -> None:
    paid = await _paid_order(app, client, buyer, event)
    _, vip, _ = await tiers_of(app, event.id)
    other_buyer = await make_account(app, client)
    pending = (await place_order(client, other_buyer.headers, event.id, [(vip.id, 2)])).json()
    assert (
        await client.post(f"/events/{event.id}/cancel", headers=organizer.headers)
    ).status_code == 200
    paid_now = (await client.get(f"/orders/{paid['id']}", headers=buyer.headers)).json()
    assert paid_now["status"] == "refund_pending"
    assert {t["status"] for t in paid_now["tickets"]} == {"void"}
    assert (await client.get(f"/orders/{pending['id']}", headers=other_buyer.headers)).json()[
        "status"
    ] == "cancelled"
    assert await counters(app, vip.id) == (20, 0, 0)
    scan = await client.post(
        "/tickets/check-in",
        json={"event_id": str(event.id), "code": paid["tickets"][0]["code"]},
        headers=organizer.headers,
    )
    assert scan.status_code == 409
    assert scan.json()["code"] == "ticket_void"


async def test_late_success_retakes_capacity_or_refuses(
    app: FastAPI, client: httpx.AsyncClient, organizer: Account, session: AsyncSession
) -> None:
    event = await make_event(
        app, organizer.user, tiers=[{"name": "Tiny", "price": 100, "quantity": 2}]
    )
    tier = (await tiers_of(app, event.id))[0]
    alice = await make_account(app, client)
    bob = await make_account(app, client)
    late = (await place_order(client, alice.headers, event.id, [(tier.id, 2)])).json()
    await session.execute(text("UPDATE orders SET expires_at = now() - interval '1 second'"))
    await session.commit()
    from tiketi.jobs import expire_stale_holds

    async with app.state.sessionmaker() as s, s.begin():
        assert await expire_stale_holds(s) == 1
    # Capacity remains: the late payment is honoured.
    async with app.state.sessionmaker() as s, s.begin():
        lapsed = await fulfil_paid_order(await s.connection(), uuid.UUID(late["id"]))
        assert lapsed.issued
    assert await counters(app, tier.id) == (2, 2, 0)
    # Now sold out: another lapsed order cannot be honoured (refund, never oversell).
    await session.execute(
        text("UPDATE ticket_types SET quantity = 3 WHERE id = :id"), {"id": tier.id}
    )
    await session.commit()
    second = (await place_order(client, bob.headers, event.id, [(tier.id, 1)])).json()
    await session.execute(
        text("UPDATE orders SET expires_at = now() - interval '1 second' WHERE id = :id"),
        {"id": second["id"]},
    )
    await session.commit()
    async with app.state.sessionmaker() as s, s.begin():
        await expire_stale_holds(s)
    await session.execute(
        text("UPDATE ticket_types SET quantity = 2 WHERE id = :id"), {"id": tier.id}
    )
    await session.commit()
    async with app.state.sessionmaker() as s, s.begin():
        gone = await fulfil_paid_order(await s.connection(), uuid.UUID(second["id"]))
        assert (gone.issued, gone.order_status) == (False, "expired")
    assert await counters(app, tier.id) == (2, 2, 0)
    assert (await client.get(f"/orders/{second['id']}", headers=bob.headers)).json()[
        "status"
    ] == "expired"
