import httpx
from fastapi import FastAPI

from tests.events.test_lifecycle import event_body
from tests.factories import make_account, make_event
from tiketi.users.models import Role


async def test_customers_cannot_create_or_modify(app: FastAPI, client: httpx.AsyncClient) -> None:
    organizer = await make_account(app, client, Role.organizer)
    customer = await make_account(app, client)
    event = await make_event(app, organizer.user)
    assert (
        await client.post("/events", json=event_body(), headers=customer.headers)
    ).status_code == 403
    assert (await client.post("/events", json=event_body())).status_code == 401
    for method, path in [
        ("PATCH", f"/events/{event.id}"),
        ("POST", f"/events/{event.id}/cancel"),
        ("POST", f"/events/{event.id}/ticket-types"),
        ("DELETE", f"/events/{event.id}"),
    ]:
        response = await client.request(method, path, json={}, headers=customer.headers)
        assert response.status_code == 403, (method, path)


async def test_other_organizers_get_404_admins_may_act(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    owner = await make_account(app, client, Role.organizer)
    rival = await make_account(app, client, Role.organizer)
    admin = await make_account(app, client, Role.admin)
    event = await make_event(app, owner.user)
    draft = await make_event(app, owner.user, publish=False)

    rename = {"title": "Hijacked"}
    response = await client.patch(f"/events/{event.id}", json=rename, headers=rival.headers)
    assert response.status_code == 404
    assert (
        await client.post(f"/events/{event.id}/cancel", headers=rival.headers)
    ).status_code == 404
    assert (await client.get(f"/events/{draft.id}", headers=rival.headers)).status_code == 404

    by_admin = await client.patch(
        f"/events/{event.id}", json={"title": "Fixed by admin"}, headers=admin.headers
    )
    assert by_admin.status_code == 200
    assert (await client.get(f"/events/{draft.id}", headers=admin.headers)).status_code == 200


async def test_drafts_are_invisible_to_the_public(app: FastAPI, client: httpx.AsyncClient) -> None:
    owner = await make_account(app, client, Role.organizer)
    draft = await make_event(app, owner.user, publish=False)
    for path in (f"/events/{draft.id}", f"/events/{draft.id}/availability"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json()["code"] == "event_not_found"
    assert (await client.get(f"/events/{draft.id}", headers=owner.headers)).status_code == 200
    listing = (await client.get("/events")).json()
    assert str(draft.id) not in {e["id"] for e in listing["items"]}


async def test_bad_token_on_public_route_is_401(app: FastAPI, client: httpx.AsyncClient) -> None:
    owner = await make_account(app, client, Role.organizer)
    event = await make_event(app, owner.user)
    response = await client.get(f"/events/{event.id}", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
