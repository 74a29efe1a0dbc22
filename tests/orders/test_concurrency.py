"""The invariant under real concurrency: many simultaneous requests, one real database."""

import asyncio
import random

import httpx
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import make_settings
from tests.factories import counters, make_buyers, make_event, make_user, place_order, tiers_of
from tiketi.main import create_app
from tiketi.users.models import Role


async def test_flash_sale_never_oversells(database_url: str) -> None:
    """200 concurrent hold requests from 100 users for a 50-ticket tier."""
    app = create_app(make_settings(database_url, db_pool_size=10, db_max_overflow=10))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", timeout=60
        ) as client:
            organizer = await make_user(app, role=Role.organizer)
            event = await make_event(
                app,
                organizer,
                tiers=[{"name": "Flash", "price": 500, "quantity": 50, "max_per_order": 4}],
            )
            tier = (await tiers_of(app, event.id))[0]
            buyers = await make_buyers(app, 100)
            violations: list[tuple[int, int, int]] = []
            stop = asyncio.Event()

            async def watch() -> None:
                while not stop.is_set():
                    quantity, sold, held = await counters(app, tier.id)
                    if sold + held > quantity:
                        violations.append((quantity, sold, held))
                    await asyncio.sleep(0.01)

            watcher = asyncio.create_task(watch())
            requests = [
                place_order(client, headers, event.id, [(tier.id, 1)])
                for _, headers in buyers
                for _ in range(2)
            ]
            random.shuffle(requests)
            responses = await asyncio.gather(*requests)
            stop.set()
            await watcher

    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 50, sorted(set(statuses))
    assert all(s in (201, 409) for s in statuses), [
        r.text for r in responses if r.status_code not in (201, 409)
    ]
    assert {r.json()["code"] for r in responses if r.status_code == 409} <= {
        "sold_out",
        "limit_exceeded",
    }
    assert violations == []
    assert await _final(database_url, tier.id) == (50, 0, 50, 50)


async def _final(database_url: str, tier_id: object) -> tuple[int, int, int, int]:
    """(quantity, sold, held, tickets in pending orders) straight from the database."""
    app = create_app(make_settings(database_url))
    async with app.router.lifespan_context(app):
        async with app.state.sessionmaker() as session:
            held_in_orders = (
                await session.execute(
                    text(
                        "SELECT coalesce(sum(i.quantity), 0) FROM order_items i JOIN orders o"
                        " ON o.id = i.order_id WHERE o.status = 'pending' AND i.ticket_type_id = :t"
                    ),
                    {"t": tier_id},
                )
            ).scalar_one()
        q, s, h = await counters(app, tier_id)  # type: ignore[arg-type]
    return q, s, h, int(held_in_orders)


async def test_multi_line_orders_racing_never_leave_a_partial_hold(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    organizer = await make_user(app, role=Role.organizer)
    event = await make_event(
        app,
        organizer,
        tiers=[
            {"name": "A", "price": 100, "quantity": 15, "max_per_order": 5},
            {"name": "B", "price": 200, "quantity": 10, "max_per_order": 5},
            {"name": "C", "price": 300, "quantity": 5, "max_per_order": 5},
        ],
    )
    a, b, c = await tiers_of(app, event.id)
    buyers = await make_buyers(app, 60)
    rng = random.Random(7)
    shapes = [
        [(a.id, 2), (b.id, 1)],
        [(b.id, 2), (c.id, 1)],
        [(c.id, 1), (a.id, 1)],
        [(a.id, 1), (b.id, 1), (c.id, 1)],
    ]
    responses = await asyncio.gather(
        *[place_order(client, headers, event.id, rng.choice(shapes)) for _, headers in buyers]
    )
    assert all(r.status_code in (201, 409) for r in responses), [r.text for r in responses]
    assert any(r.status_code == 409 for r in responses)
    # Every tier's held count equals exactly what the surviving orders hold: no partial holds.
    rows = (
        await session.execute(
            text(
                "SELECT t.id, t.held, t.sold, t.quantity, coalesce(sum(i.quantity) FILTER"
                " (WHERE o.status = 'pending'), 0) AS in_orders FROM ticket_types t"
                " LEFT JOIN order_items i ON i.ticket_type_id = t.id LEFT JOIN orders o ON"
                " o.id = i.order_id WHERE t.event_id = :e GROUP BY t.id"
            ),
            {"e": event.id},
        )
    ).all()
    for row in rows:
        assert row.held == row.in_orders
        assert row.held + row.sold <= row.quantity
    placed = sum(1 for r in responses if r.status_code == 201)
    orders = (await session.execute(text("SELECT count(*) FROM orders"))).scalar_one()
    assert orders == placed


async def test_one_buyer_racing_themselves_cannot_beat_the_caps(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    organizer = await make_user(app, role=Role.organizer)
    event = await make_event(app, organizer)
    early = (await tiers_of(app, event.id))[0]
    [(_, headers)] = await make_buyers(app, 1)
    responses = await asyncio.gather(
        *[place_order(client, headers, event.id, [(early.id, 4)]) for _ in range(10)]
    )
    created = [r for r in responses if r.status_code == 201]
    assert len(created) == 2  # 2 x 4 = 8 <= 10 tickets; a third would make 12
    assert (await counters(app, early.id))[2] == 8
