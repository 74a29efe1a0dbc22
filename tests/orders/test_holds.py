from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import (
    Account,
    counters,
    future,
    make_account,
    make_event,
    place_order,
    tiers_of,
)
from tiketi.events.models import Event, TicketType
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


async def _order_count(session: AsyncSession) -> int:
    return int((await session.execute(text("SELECT count(*) FROM orders"))).scalar_one())


async def test_hold_round_trip(
    app: FastAPI, client: httpx.AsyncClient, buyer: Account, event: Event
) -> None:
    early, vip, _ = await tiers_of(app, event.id)
    response = await place_order(client, buyer.headers, event.id, [(early.id, 2), (vip.id, 1)])
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "pending"
    assert order["total"] == 2 * 1500 + 5000
    assert order["currency"] == "KES"
    assert order["tickets"] == []
    assert {(i["name"], i["quantity"], i["unit_price"]) for i in order["items"]} == {
        ("Early Bird", 2, 1500),
        ("VIP", 1, 5000),
    }
    expires = datetime.fromisoformat(order["expires_at"])
    assert timedelta(seconds=590) < expires - datetime.now(UTC) <= timedelta(seconds=600)
    assert await counters(app, early.id) == (100, 0, 2)
    assert await counters(app, vip.id) == (20, 0, 1)
    fetched = await client.get(f"/orders/{order['id']}", headers=buyer.headers)
    assert fetched.json() == order
    listing = (await client.get("/orders", headers=buyer.headers)).json()
    assert [o["id"] for o in listing["items"]] == [order["id"]]


async def test_prices_come_from_the_database(
    app: FastAPI, client: httpx.AsyncClient, buyer: Account, event: Event
) -> None:
    early = (await tiers_of(app, event.id))[0]
    body = {
        "event_id": str(event.id),
        "items": [{"ticket_type_id": str(early.id), "quantity": 1, "unit_price": 1}],
    }
    assert (await client.post("/orders", json=body, headers=buyer.headers)).status_code == 422
    body = {
        "event_id": str(event.id),
        "total": 1,
        "items": [{"ticket_type_id": str(early.id), "quantity": 1}],
    }
    assert (await client.post("/orders", json=body, headers=buyer.headers)).status_code == 422


async def test_sold_out_line_rolls_back_the_whole_order(
    app: FastAPI,
    client: httpx.AsyncClient,
    buyer: Account,
    organizer: Account,
    session: AsyncSession,
) -> None:
    event = await make_event(
        app,
        organizer.user,
        tiers=[
            {"name": "Regular", "price": 1000, "quantity": 10},
            {"name": "VIP", "price": 4000, "quantity": 1},
        ],
    )
    regular, vip = await tiers_of(app, event.id)
    response = await place_order(client, buyer.headers, event.id, [(regular.id, 3), (vip.id, 2)])
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "sold_out"
    assert body["ticket_type"] == "VIP"
    assert "VIP" in body["detail"]
    assert await counters(app, regular.id) == (10, 0, 0)
    assert await _order_count(session) == 0


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("other_event_tier", 422, "invalid_items"),
        ("over_max_per_order", 422, "invalid_items"),
        ("duplicate_tier", 422, "validation_error"),
        ("no_items", 422, "validation_error"),
        ("zero_quantity", 422, "validation_error"),
        ("unknown_event", 404, "event_not_found"),
        ("draft_event", 404, "event_not_found"),
        ("cancelled_event", 409, "not_on_sale"),
        ("started_event", 409, "not_on_sale"),
        ("window_closed", 409, "not_on_sale"),
        ("unknown_field", 422, "validation_error"),
        ("eleven_lines", 422, "validation_error"),
    ],
)
async def test_bad_orders_change_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    buyer: Account,
    organizer: Account,
    session: AsyncSession,
    case: str,
    status: int,
    code: str,
) -> None:
    event = await make_event(app, organizer.user)
    early, vip, regular = await tiers_of(app, event.id)
    event_id = event.id
    body: dict[str, object] = {
        "event_id": str(event_id),
        "items": [{"ticket_type_id": str(early.id), "quantity": 1}],
    }
    if case == "other_event_tier":
        other = await make_event(app, organizer.user)
        body["items"] = [
            {"ticket_type_id": str((await tiers_of(app, other.id))[0].id), "quantity": 1}
        ]
    elif case == "over_max_per_order":
        body["items"] = [{"ticket_type_id": str(vip.id), "quantity": 5}]
    elif case == "duplicate_tier":
        body["items"] = [{"ticket_type_id": str(early.id), "quantity": 1}] * 2
    elif case == "no_items":
        body["items"] = []
    elif case == "zero_quantity":
        body["items"] = [{"ticket_type_id": str(early.id), "quantity": 0}]
    elif case == "unknown_event":
        body["event_id"] = "00000000-0000-4000-8000-000000000000"
    elif case == "draft_event":
        draft = await make_event(app, organizer.user, publish=False)
        body = {
            "event_id": str(draft.id),
            "items": [
                {"ticket_type_id": str((await tiers_of(app, draft.id))[0].id), "quantity": 1}
            ],
        }
    elif case == "cancelled_event":
        await client.post(f"/events/{event_id}/cancel", headers=organizer.headers)
    elif case == "started_event":
        await session.execute(
            text("UPDATE events SET starts_at = now() - interval '1 hour' WHERE id = :id"),
            {"id": event_id},
        )
        await session.commit()
    elif case == "window_closed":
        await session.execute(
            text("UPDATE ticket_types SET sales_end = now() - interval '1 minute' WHERE id = :id"),
            {"id": early.id},
        )
        await session.commit()
    elif case == "unknown_field":
        body["coupon"] = "FREE"
    elif case == "eleven_lines":
        body["items"] = [
            {"ticket_type_id": f"00000000-0000-4000-8000-0000000000{i:02d}", "quantity": 1}
            for i in range(11)
        ]
    response = await client.post("/orders", json=body, headers=buyer.headers)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await _order_count(session) == 0
    for tier in (early, vip, regular):
        assert (await counters(app, tier.id))[1:] == (0, 0)


async def test_anti_hoarding_caps(
    app: FastAPI, client: httpx.AsyncClient, buyer: Account, event: Event
) -> None:
    early, _, regular = await tiers_of(app, event.id)
    settings = app.state.settings
    assert settings.max_tickets_per_event_per_user == 10
    assert (await place_order(client, buyer.headers, event.id, [(early.id, 6)])).status_code == 201
    over = await place_order(client, buyer.headers, event.id, [(regular.id, 5)])
    assert over.status_code == 409
    assert over.json()["code"] == "limit_exceeded"
    assert (
        await place_order(client, buyer.headers, event.id, [(regular.id, 4)])
    ).status_code == 201
    # Pending orders cap (3 by default), across events.
    organizer = await make_account(app, client, Role.organizer)
    other = await make_event(app, organizer.user)
    other_early = (await tiers_of(app, other.id))[0]
    assert (
        await place_order(client, buyer.headers, other.id, [(other_early.id, 1)])
    ).status_code == 201
    fourth = await place_order(client, buyer.headers, other.id, [(other_early.id, 1)])
    assert fourth.status_code == 409
    assert fourth.json()["code"] == "limit_exceeded"
    assert await counters(app, other_early.id) == (100, 0, 1)


@pytest.mark.parametrize("key", [None, "hold-1"])
@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ("token_version = token_version + 1", "The access token has been revoked"),
        ("is_active = false", "This account is deactivated"),
    ],
)
async def test_a_revoked_token_or_deactivated_caller_holds_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    buyer: Account,
    event: Event,
    session: AsyncSession,
    change: str,
    detail: str,
    key: str | None,
) -> None:
    """The hold's own statement checks the token's version and the account (no separate
    read of the caller): a token revoked a moment ago must not hold anything."""
    early = (await tiers_of(app, event.id))[0]
    statement = text(f"UPDATE users SET {change} WHERE id = :id")  # noqa: S608 - fixed cases
    await session.execute(statement, {"id": buyer.user.id})
    await session.commit()
    headers = {**buyer.headers, **({"Idempotency-Key": key} if key else {})}
    response = await place_order(client, headers, event.id, [(early.id, 2)])
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "invalid_token"
    assert response.json()["detail"] == detail
    assert await _order_count(session) == 0
    assert await counters(app, early.id) == (100, 0, 0)


async def test_refusals_are_worded_with_the_database_figures(
    app: FastAPI,
    client: httpx.AsyncClient,
    buyer: Account,
    organizer: Account,
    session: AsyncSession,
) -> None:
    event = await make_event(
        app,
        organizer.user,
        tiers=[{"name": "Terrace", "price": 800, "quantity": 3, "max_per_order": 4}],
    )
    (terrace,) = await tiers_of(app, event.id)
    few = await place_order(client, buyer.headers, event.id, [(terrace.id, 4)])
    assert few.status_code == 409
    assert few.json()["detail"] == "Only 3 Terrace tickets are left"
    assert (few.json()["ticket_type"], few.json()["available"]) == ("Terrace", 3)
    many = await place_order(client, buyer.headers, event.id, [(terrace.id, 5)])
    assert many.status_code == 422
    assert many.json()["detail"] == "At most 4 Terrace tickets per order"
    await session.execute(
        text("UPDATE events SET status = 'cancelled' WHERE id = :id"), {"id": event.id}
    )
    await session.commit()
    cancelled = await place_order(client, buyer.headers, event.id, [(terrace.id, 1)])
    assert cancelled.status_code == 409
    assert cancelled.json()["detail"] == "This event is cancelled; tickets are not on sale"
    assert await _order_count(session) == 0


async def test_free_order_with_an_idempotency_key_is_paid_once(
    app: FastAPI, client: httpx.AsyncClient, buyer: Account, organizer: Account
) -> None:
    event = await make_event(
        app, organizer.user, tiers=[{"name": "Free entry", "price": 0, "quantity": 5}]
    )
    tier = (await tiers_of(app, event.id))[0]
    headers = {**buyer.headers, "Idempotency-Key": "free-1"}
    first = await place_order(client, headers, event.id, [(tier.id, 2)])
    again = await place_order(client, headers, event.id, [(tier.id, 2)])
    assert first.status_code == again.status_code == 201
    assert first.json()["status"] == "paid"
    assert len(first.json()["tickets"]) == 2
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await counters(app, tier.id) == (5, 2, 0)


async def test_free_order_is_paid_at_once(
    app: FastAPI, client: httpx.AsyncClient, buyer: Account, organizer: Account
) -> None:
    event = await make_event(
        app, organizer.user, tiers=[{"name": "Free entry", "price": 0, "quantity": 5}]
    )
    tier = (await tiers_of(app, event.id))[0]
    response = await place_order(client, buyer.headers, event.id, [(tier.id, 2)])
    assert response.status_code == 201
    order = response.json()
    assert order["status"] == "paid"
    assert order["paid_at"] is not None
    assert order["total"] == 0
    assert len(order["tickets"]) == 2
    assert {t["status"] for t in order["tickets"]} == {"valid"}
    assert len({t["code"] for t in order["tickets"]}) == 2
    assert all(len(t["code"]) >= 22 for t in order["tickets"])
    assert await counters(app, tier.id) == (5, 2, 0)


async def test_cancel_releases_the_hold(
    app: FastAPI, client: httpx.AsyncClient, buyer: Account, event: Event
) -> None:
    early = (await tiers_of(app, event.id))[0]
    order = (await place_order(client, buyer.headers, event.id, [(early.id, 3)])).json()
    stranger = await make_account(app, client)
    assert (
        await client.post(f"/orders/{order['id']}/cancel", headers=stranger.headers)
    ).status_code == 404
    assert (await client.get(f"/orders/{order['id']}", headers=stranger.headers)).status_code == 404
    cancelled = await client.post(f"/orders/{order['id']}/cancel", headers=buyer.headers)
    assert cancelled.json()["status"] == "cancelled"
    assert await counters(app, early.id) == (100, 0, 0)
    again = await client.post(f"/orders/{order['id']}/cancel", headers=buyer.headers)
    assert again.status_code == 409
    assert again.json()["code"] == "order_not_pending"
    assert await counters(app, early.id) == (100, 0, 0)


async def test_admin_sees_and_cancels_any_order(
    app: FastAPI, client: httpx.AsyncClient, buyer: Account, event: Event
) -> None:
    early = (await tiers_of(app, event.id))[0]
    order = (await place_order(client, buyer.headers, event.id, [(early.id, 1)])).json()
    admin = await make_account(app, client, Role.admin)
    assert (await client.get(f"/orders/{order['id']}", headers=admin.headers)).status_code == 200
    assert (
        await client.post(f"/orders/{order['id']}/cancel", headers=admin.headers)
    ).status_code == 200


async def test_orders_need_a_user(client: httpx.AsyncClient) -> None:
    assert (await client.post("/orders", json={})).status_code == 401
    assert (await client.get("/orders")).status_code == 401


async def test_ticket_type_check_holds_under_direct_sql(
    app: FastAPI, event: Event, session: AsyncSession
) -> None:
    tier: TicketType = (await tiers_of(app, event.id))[0]
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):
        await session.execute(
            text("UPDATE ticket_types SET held = quantity + 1 WHERE id = :id"), {"id": tier.id}
        )
    await session.rollback()
    assert future(0) > datetime(2026, 1, 1, tzinfo=UTC)
