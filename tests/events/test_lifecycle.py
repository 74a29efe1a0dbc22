from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from tests.factories import Account, future, make_account, make_event
from tiketi.users.models import Role

EVENT = {
    "title": "Koroga Festival",
    "description": "Afro-fusion music and food.",
    "category": "festivals",
    "tags": ["Afro", "food", "afro"],
    "venue": "Two Rivers Mall Lawns",
    "city": "Nairobi",
    "address": "Limuru Road",
    "latitude": -1.2136,
    "longitude": 36.8058,
}


def event_body(**overrides: object) -> dict[str, object]:
    start = future(10)
    body: dict[str, object] = EVENT | {
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=8)).isoformat(),
    }
    body.update(overrides)
    return body


@pytest.fixture
async def organizer(app: FastAPI, client: httpx.AsyncClient) -> Account:
    return await make_account(app, client, Role.organizer)


async def test_draft_publish_cancel(client: httpx.AsyncClient, organizer: Account) -> None:
    created = await client.post("/events", json=event_body(), headers=organizer.headers)
    assert created.status_code == 201, created.text
    event = created.json()
    assert event["status"] == "draft"
    assert event["tags"] == ["afro", "food"]
    assert event["timezone"] == "Africa/Nairobi"
    assert event["category"] == "festivals"
    assert event["organizer_id"] == str(organizer.user.id)
    event_id = event["id"]

    no_tiers = await client.post(f"/events/{event_id}/publish", headers=organizer.headers)
    assert no_tiers.status_code == 409
    assert no_tiers.json()["code"] == "not_publishable"

    tier = await client.post(
        f"/events/{event_id}/ticket-types",
        json={"name": "Regular", "price": 2000, "quantity": 50},
        headers=organizer.headers,
    )
    assert tier.status_code == 201
    assert tier.json()["available"] == 50
    assert tier.json()["on_sale"] is False  # a draft sells nothing

    published = await client.post(f"/events/{event_id}/publish", headers=organizer.headers)
    assert published.status_code == 200
    assert published.json()["status"] == "published"
    assert published.json()["ticket_types"][0]["on_sale"] is True
    again = await client.post(f"/events/{event_id}/publish", headers=organizer.headers)
    assert again.status_code == 409

    cancelled = await client.post(f"/events/{event_id}/cancel", headers=organizer.headers)
    assert cancelled.json()["status"] == "cancelled"
    assert (
        await client.post(f"/events/{event_id}/cancel", headers=organizer.headers)
    ).status_code == 409
    frozen = await client.patch(
        f"/events/{event_id}", json={"title": "x"}, headers=organizer.headers
    )
    assert frozen.status_code == 409
    assert (
        await client.post(f"/events/{event_id}/publish", headers=organizer.headers)
    ).status_code == 409
    # Cancelled events stay visible: ticket holders need to see what happened.
    assert (await client.get(f"/events/{event_id}")).json()["status"] == "cancelled"


async def test_publish_needs_a_future_start(
    app: FastAPI, organizer: Account, client: httpx.AsyncClient
) -> None:
    start = future(-1)
    event = await make_event(app, organizer.user, publish=False, starts_at=start)
    response = await client.post(f"/events/{event.id}/publish", headers=organizer.headers)
    assert response.status_code == 409
    assert "past" in response.json()["detail"]


async def test_delete_only_drafts(
    app: FastAPI, organizer: Account, client: httpx.AsyncClient
) -> None:
    draft = await make_event(app, organizer.user, publish=False)
    published = await make_event(app, organizer.user)
    assert (
        await client.delete(f"/events/{published.id}", headers=organizer.headers)
    ).status_code == 409
    assert (
        await client.delete(f"/events/{draft.id}", headers=organizer.headers)
    ).status_code == 204
    assert (await client.get(f"/events/{draft.id}", headers=organizer.headers)).status_code == 404


async def test_update_event(app: FastAPI, organizer: Account, client: httpx.AsyncClient) -> None:
    event = await make_event(app, organizer.user)
    response = await client.patch(
        f"/events/{event.id}",
        json={"title": "Nairobi Jazz Festival 2026", "city": "Mombasa", "category": "nightlife"},
        headers=organizer.headers,
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["title"], body["city"], body["category"]) == (
        "Nairobi Jazz Festival 2026",
        "Mombasa",
        "nightlife",
    )
    # ends_at must stay after starts_at, against the stored value too.
    before = (event.starts_at - timedelta(hours=1)).isoformat()
    bad = await client.patch(
        f"/events/{event.id}", json={"ends_at": before}, headers=organizer.headers
    )
    assert bad.status_code == 422
    past = await client.patch(
        f"/events/{event.id}",
        json={"starts_at": future(-2).isoformat(), "ends_at": future(-1).isoformat()},
        headers=organizer.headers,
    )
    assert past.status_code == 422
    null = await client.patch(
        f"/events/{event.id}", json={"title": None}, headers=organizer.headers
    )
    assert null.status_code == 422
    unknown = await client.patch(
        f"/events/{event.id}", json={"category": "nope"}, headers=organizer.headers
    )
    assert unknown.status_code == 422
    assert unknown.json()["code"] == "unknown_category"


async def test_mine_lists_every_status(
    app: FastAPI, organizer: Account, client: httpx.AsyncClient
) -> None:
    draft = await make_event(app, organizer.user, publish=False, title="Draft")
    live = await make_event(app, organizer.user, title="Live")
    other = await make_account(app, client, Role.organizer)
    await make_event(app, other.user, title="Not mine")
    mine = (await client.get("/events/mine", headers=organizer.headers)).json()
    assert {e["id"] for e in mine["items"]} == {str(draft.id), str(live.id)}
    customer = await make_account(app, client)
    assert (await client.get("/events/mine", headers=customer.headers)).status_code == 403
