"""The price sort and filters read `event_sale_prices`, kept by triggers (migration 0008):
it must always say what the tiers say, whatever is edited, and page like any other order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from tests.factories import future, make_event
from tests.search.conftest import all_pages, run_sql, search, titles
from tiketi.users.models import User

# The cheapest tier on sale at each moment, computed from the tiers as the search once did
# (a LATERAL per event), against what the stored steps say.
_DISAGREEMENTS = """
SELECT count(*) FROM unnest(CAST(:moments AS timestamptz[])) AS m(at)
CROSS JOIN events AS e
LEFT JOIN event_sale_prices AS p
       ON p.event_id = e.id AND p.valid_from <= m.at AND p.valid_until > m.at
CROSS JOIN LATERAL (
    SELECT min(t.price) AS price FROM ticket_types AS t
    WHERE t.event_id = e.id AND e.starts_at > m.at
      AND (t.sales_start IS NULL OR t.sales_start <= m.at)
      AND (t.sales_end IS NULL OR t.sales_end > m.at)
) AS tiers
WHERE e.ends_at > m.at AND (
    p.price IS DISTINCT FROM coalesce(tiers.price, 2147483647)
    OR (p.starts_at, p.ends_at, p.status, p.city_key, p.category_id)
       IS DISTINCT FROM (e.starts_at, e.ends_at, e.status, e.city_key, e.category_id))
"""


async def _disagreements(app: FastAPI) -> int:
    now = datetime.now(UTC)
    moments = [now + timedelta(days=d, hours=h) for d in range(-2, 70, 3) for h in (0, 7)]
    async with app.state.sessionmaker() as session:
        result = await session.execute(text(_DISAGREEMENTS), {"moments": moments})
        return int(result.scalar_one())


async def test_stored_prices_follow_every_edit(
    app: FastAPI, client: httpx.AsyncClient, organizer: User
) -> None:
    soon, later = datetime.now(UTC) + timedelta(days=2), datetime.now(UTC) + timedelta(days=9)
    gala = await make_event(
        app,
        organizer,
        title="Gala Dinner",
        starts_at=future(20),
        tiers=[
            {"name": "Early Bird", "price": 500, "quantity": 10, "sales_end": soon},
            {"name": "Regular", "price": 2000, "quantity": 10},
            {"name": "Late", "price": 1000, "quantity": 10, "sales_start": later},
        ],
    )
    never = [{"name": "Door", "price": 100, "quantity": 10, "sales_start": future(30)}]
    await make_event(app, organizer, title="Open Mic", starts_at=future(5), tiers=never)
    await make_event(app, organizer, title="Empty Draft", publish=False, tiers=[])
    await make_event(app, organizer, title="Draft Gig", publish=False)
    assert await _disagreements(app) == 0
    assert (await search(client, q="gala", min_price=500, max_price=500))["items"]

    edits = [
        "UPDATE ticket_types SET price = 700 WHERE name = 'Early Bird'",
        "UPDATE ticket_types SET sales_end = now() - interval '1 hour' WHERE name = 'Early Bird'",
        "UPDATE ticket_types SET sales_start = now() + interval '30 days' WHERE name = 'Late'",
        "UPDATE ticket_types SET sold = 5, held = 1",  # orders: no price change
        "DELETE FROM ticket_types WHERE name = 'Regular' AND event_id = :gala",
        "UPDATE events SET starts_at = starts_at - interval '15 days',"
        " ends_at = ends_at - interval '15 days' WHERE id = :gala",
        "UPDATE events SET ends_at = now() - interval '1 minute',"
        " starts_at = now() - interval '1 hour' WHERE title = 'Open Mic'",
        "UPDATE events SET city = 'Mombasa' WHERE id = :gala",
        "UPDATE events SET status = 'cancelled' WHERE title = 'Draft Gig'",
        "UPDATE events SET category_id = (SELECT id FROM categories WHERE slug = 'comedy')"
        " WHERE id = :gala",
    ]
    for sql in edits:
        await run_sql(app, sql, gala=gala.id)
        assert await _disagreements(app) == 0, sql

    # The early bird is over, the late tier not yet on sale, the regular tier gone.
    assert await search(client, q="gala", min_price=0) == {"items": [], "next_cursor": None}
    assert titles(await search(client, sort="price")) == ["Gala Dinner"]  # nothing on sale
    # The filters a price sort checks on the copies see the edits too.
    assert titles(await search(client, sort="price", city="mombasa", category="comedy")) == [
        "Gala Dinner"
    ]
    assert titles(await search(client, sort="price", city="nairobi")) == []

    await run_sql(app, "DELETE FROM events WHERE id = :gala", gala=gala.id)
    async with app.state.sessionmaker() as session:
        left = await session.execute(
            text("SELECT count(*) FROM event_sale_prices WHERE event_id = :id"), {"id": gala.id}
        )
        assert left.scalar_one() == 0


async def _event(
    app: FastAPI, organizer: User, title: str, day: int | datetime, prices: list[int]
) -> Any:
    starts_at = future(day) if isinstance(day, int) else day
    tiers: list[dict[str, Any]] = [
        {"name": f"Tier {n}", "price": p, "quantity": 10} for n, p in enumerate(prices)
    ]
    if not prices:  # a tier whose sales open after the start: never on sale
        tiers = [
            {"name": "Door", "price": 100, "quantity": 10, "sales_start": starts_at + timedelta(1)}
        ]
    return await make_event(app, organizer, title=title, starts_at=starts_at, tiers=tiers)


async def test_price_sort_takes_each_events_cheapest_tier_and_pages_across_ties(
    app: FastAPI, client: httpx.AsyncClient, organizer: User
) -> None:
    # Ties on the cheapest price are ordered by start, then id (two start together).
    together = future(4)
    await _event(app, organizer, "A", together, [3000, 800, 5000])
    await _event(app, organizer, "B", 2, [800, 1200])
    await _event(app, organizer, "C", together, [900, 800])
    await _event(app, organizer, "D", 1, [1000])
    await _event(app, organizer, "E", 3, [0, 800])
    await _event(app, organizer, "F", 5, [])  # nothing on sale: last
    same_start = sorted(
        [i for i in (await search(client, sort="price"))["items"] if i["title"] in "AC"],
        key=lambda i: i["id"],
    )

    whole = await search(client, sort="price", limit=100)
    assert titles(whole) == ["E", "B", *[i["title"] for i in same_start], "D", "F"]
    assert [i["min_price"] for i in whole["items"]] == [0, 800, 800, 800, 1000, 100]
    for limit in (1, 2, 4):
        paged = await all_pages(client, sort="price", limit=limit)
        assert [i["id"] for i in paged] == [i["id"] for i in whole["items"]]
    paged = await all_pages(client, sort="price", min_price=800, limit=1)
    assert [i["title"] for i in paged] == [*titles(whole)[1:4], "D"]
    assert (
        titles(await search(client, sort="price", max_price=800, min_price=1)) == titles(whole)[1:4]
    )
