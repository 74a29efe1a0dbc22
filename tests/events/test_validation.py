"""Every field is validated; a refused request changes nothing."""

import httpx
import pytest
from fastapi import FastAPI

from tests.events.test_lifecycle import event_body
from tests.factories import Account, future, make_account, make_event
from tiketi.users.models import Role


@pytest.fixture
async def organizer(app: FastAPI, client: httpx.AsyncClient) -> Account:
    return await make_account(app, client, Role.organizer)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"category": "Not A Slug!"}, "category"),
        ({"tags": ["x" * 41]}, "tags"),
        ({"tags": [f"t{i}" for i in range(21)]}, "tags"),
        ({"venue": "  "}, "venue"),
        ({"city": ""}, "city"),
        ({"latitude": 91}, "latitude"),
        ({"longitude": -181}, "longitude"),
        ({"starts_at": "2026-12-24T18:00:00"}, "starts_at"),  # no offset
        ({"starts_at": "tomorrow"}, "starts_at"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"image_url": "javascript:alert(1)"}, "image_url"),
        ({"image_url": "ftp://example.com/a.png"}, "image_url"),
        ({"organizer_id": "00000000-0000-0000-0000-000000000000"}, "organizer_id"),
        ({"status": "published"}, "status"),
    ],
)
async def test_event_fields(
    client: httpx.AsyncClient, organizer: Account, change: dict[str, object], field: str
) -> None:
    response = await client.post("/events", json=event_body(**change), headers=organizer.headers)
    assert response.status_code == 422, response.text
    assert any(field in err["loc"] for err in response.json()["errors"]), response.json()
    mine = (await client.get("/events/mine", headers=organizer.headers)).json()
    assert mine["items"] == []


async def test_ends_before_start(client: httpx.AsyncClient, organizer: Account) -> None:
    start = future(5)
    response = await client.post(
        "/events",
        json=event_body(starts_at=start.isoformat(), ends_at=start.isoformat()),
        headers=organizer.headers,
    )
    assert response.status_code == 422
    assert "ends_at" in response.json()["detail"]


async def test_unknown_category(client: httpx.AsyncClient, organizer: Account) -> None:
    response = await client.post(
        "/events", json=event_body(category="opera-on-ice"), headers=organizer.headers
    )
    assert response.status_code == 422
    assert response.json()["code"] == "unknown_category"


@pytest.mark.parametrize(
    "tier",
    [
        {"name": "", "price": 100, "quantity": 1},
        {"name": "VIP", "price": -1, "quantity": 1},
        {"name": "VIP", "price": 10.5, "quantity": 1},
        {"name": "VIP", "price": 1_000_001, "quantity": 1},
        {"name": "VIP", "price": 100, "quantity": 0},
        {"name": "VIP", "price": 100, "quantity": 1, "max_per_order": 0},
        {"name": "VIP", "price": 100, "quantity": 1, "sold": 5},
        {
            "name": "VIP",
            "price": 100,
            "quantity": 1,
            "sales_start": "2026-12-02T00:00:00+03:00",
            "sales_end": "2026-12-01T00:00:00+03:00",
        },
        {"price": 100, "quantity": 1},
    ],
)
async def test_ticket_type_fields(
    app: FastAPI, client: httpx.AsyncClient, organizer: Account, tier: dict[str, object]
) -> None:
    event = await make_event(app, organizer.user, publish=False, tiers=[])
    response = await client.post(
        f"/events/{event.id}/ticket-types", json=tier, headers=organizer.headers
    )
    assert response.status_code == 422, response.text
    view = (await client.get(f"/events/{event.id}", headers=organizer.headers)).json()
    assert view["ticket_types"] == []


async def test_free_tier_and_duplicate_names(
    app: FastAPI, client: httpx.AsyncClient, organizer: Account
) -> None:
    event = await make_event(app, organizer.user, publish=False, tiers=[])
    free = await client.post(
        f"/events/{event.id}/ticket-types",
        json={"name": "Free", "price": 0, "quantity": 10},
        headers=organizer.headers,
    )
    assert free.status_code == 201
    assert free.json()["price"] == 0
    dup = await client.post(
        f"/events/{event.id}/ticket-types",
        json={"name": "free", "price": 100, "quantity": 10},
        headers=organizer.headers,
    )
    assert dup.status_code == 409
    assert dup.json()["code"] == "duplicate_ticket_type"
