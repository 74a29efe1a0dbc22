from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import future, make_account, make_event
from tiketi.users.models import Role


async def test_public_listing_filters_and_pages(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    organizer = await make_account(app, client, Role.organizer)
    soon = await make_event(app, organizer.user, title="Soon", starts_at=future(1))
    later = await make_event(
        app, organizer.user, title="Later", city="Mombasa", starts_at=future(3)
    )
    sports = await make_event(
        app, organizer.user, title="Derby", category="sports", starts_at=future(2)
    )
    await make_event(app, organizer.user, title="Draft", publish=False)
    cancelled = await make_event(app, organizer.user, title="Cancelled")
    ended = await make_event(app, organizer.user, title="Ended")
    await session.execute(
        text("UPDATE events SET status = 'cancelled' WHERE id = :id"), {"id": cancelled.id}
    )
    await session.execute(
        text(
            "UPDATE events SET starts_at = now() - interval '2 days',"
            " ends_at = now() - interval '1 day' WHERE id = :id"
        ),
        {"id": ended.id},
    )
    await session.commit()

    listing = (await client.get("/events")).json()
    assert [e["title"] for e in listing["items"]] == ["Soon", "Derby", "Later"]
    first = listing["items"][0]
    assert first["min_price"] == 1500
    assert first["available"] == 420
    assert set(first) == {
        "id",
        "title",
        "category",
        "tags",
        "venue",
        "city",
        "starts_at",
        "ends_at",
        "image_url",
        "status",
        "min_price",
        "available",
    }

    by_city = (await client.get("/events", params={"city": "mombasa"})).json()
    assert [e["id"] for e in by_city["items"]] == [str(later.id)]
    by_category = (await client.get("/events", params={"category": "sports"})).json()
    assert [e["id"] for e in by_category["items"]] == [str(sports.id)]

    page1 = (await client.get("/events", params={"limit": 2})).json()
    page2 = (
        await client.get("/events", params={"limit": 2, "cursor": page1["next_cursor"]})
    ).json()
    assert [e["id"] for e in page1["items"] + page2["items"]] == [
        str(soon.id),
        str(sports.id),
        str(later.id),
    ]
    assert page2["next_cursor"] is None
    assert (await client.get("/events", params={"cursor": "%%%"})).status_code == 422


async def test_event_without_tiers_has_null_min_price(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    organizer = await make_account(app, client, Role.organizer)
    await make_event(app, organizer.user, publish=False, tiers=[])
    mine = (await client.get("/events/mine", headers=organizer.headers)).json()
    assert mine["items"][0]["min_price"] is None
    assert mine["items"][0]["available"] == 0


async def test_event_detail_shape(app: FastAPI, client: httpx.AsyncClient) -> None:
    organizer = await make_account(app, client, Role.organizer)
    start = future(4)
    event = await make_event(
        app, organizer.user, starts_at=start, ends_at=start + timedelta(hours=3)
    )
    body = (await client.get(f"/events/{event.id}")).json()
    assert [t["name"] for t in body["ticket_types"]] == ["Early Bird", "VIP", "Regular"]
    assert body["ticket_types"][1]["max_per_order"] == 4
    assert {
        "id",
        "organizer_id",
        "title",
        "description",
        "category",
        "tags",
        "venue",
        "city",
        "address",
        "starts_at",
        "ends_at",
        "timezone",
        "image_url",
        "status",
        "ticket_types",
        "created_at",
        "updated_at",
    } <= set(body)


async def test_categories(app: FastAPI, client: httpx.AsyncClient) -> None:
    slugs = [c["slug"] for c in (await client.get("/categories")).json()]
    assert {"music", "sports", "comedy", "festivals", "conferences", "nightlife", "family"} <= set(
        slugs
    )
    admin = await make_account(app, client, Role.admin)
    organizer = await make_account(app, client, Role.organizer)
    body = {"slug": "gaming", "name": "Gaming"}
    assert (
        await client.post("/categories", json=body, headers=organizer.headers)
    ).status_code == 403
    assert (await client.post("/categories", json=body, headers=admin.headers)).status_code == 201
    assert (await client.post("/categories", json=body, headers=admin.headers)).status_code == 409
    bad = await client.post(
        "/categories", json={"slug": "Bad Slug", "name": "x"}, headers=admin.headers
    )
    assert bad.status_code == 422
