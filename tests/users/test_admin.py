import uuid

import httpx
from fastapi import FastAPI

from tests.factories import login, make_account, make_user
from tiketi.users.models import Role


async def test_customer_cannot_use_admin_endpoints(app: FastAPI, client: httpx.AsyncClient) -> None:
    customer = await make_account(app, client)
    organizer = await make_account(app, client, Role.organizer)
    for account in (customer, organizer):
        response = await client.get("/users", headers=account.headers)
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"
        patch = await client.patch(
            f"/users/{account.user.id}", json={"role": "admin"}, headers=account.headers
        )
        assert patch.status_code == 403
    assert (await client.get("/users")).status_code == 401


async def test_list_filter_search_and_pages(app: FastAPI, client: httpx.AsyncClient) -> None:
    admin = await make_account(app, client, Role.admin)
    for i in range(5):
        await make_user(app, first_name=f"Otieno{i}", email=f"otieno{i}@example.com")
    await make_user(app, role=Role.organizer, first_name="Muthoni", email="muthoni@example.com")

    organizers = await client.get("/users", params={"role": "organizer"}, headers=admin.headers)
    assert [u["email"] for u in organizers.json()["items"]] == ["muthoni@example.com"]

    found = await client.get("/users", params={"q": "otieno3"}, headers=admin.headers)
    assert [u["email"] for u in found.json()["items"]] == ["otieno3@example.com"]
    literal = await client.get("/users", params={"q": "%"}, headers=admin.headers)
    assert literal.json()["items"] == []

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/users", params=params, headers=admin.headers)).json()
        seen += [u["id"] for u in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 7


async def test_get_user_and_unknown(app: FastAPI, client: httpx.AsyncClient) -> None:
    admin = await make_account(app, client, Role.admin)
    user = await make_user(app)
    assert (await client.get(f"/users/{user.id}", headers=admin.headers)).status_code == 200
    missing = await client.get(f"/users/{uuid.uuid4()}", headers=admin.headers)
    assert missing.status_code == 404
    assert (await client.get("/users/not-a-uuid", headers=admin.headers)).status_code == 422


async def test_role_change_revokes_tokens(app: FastAPI, client: httpx.AsyncClient) -> None:
    admin = await make_account(app, client, Role.admin)
    customer = await make_account(app, client)
    response = await client.patch(
        f"/users/{customer.user.id}", json={"role": "organizer"}, headers=admin.headers
    )
    assert response.json()["role"] == "organizer"
    assert (await client.get("/users/me", headers=customer.headers)).status_code == 401
    refresh = await client.post("/auth/refresh", json={"refresh_token": customer.refresh_token})
    assert refresh.status_code == 401
    fresh = (await login(client, customer.email)).json()
    me = await client.get("/users/me", headers={"Authorization": f"Bearer {fresh['access_token']}"})
    assert me.json()["role"] == "organizer"


async def test_deactivated_user_is_locked_out(app: FastAPI, client: httpx.AsyncClient) -> None:
    admin = await make_account(app, client, Role.admin)
    customer = await make_account(app, client)
    response = await client.patch(
        f"/users/{customer.user.id}", json={"is_active": False}, headers=admin.headers
    )
    assert response.json()["is_active"] is False
    assert (await client.get("/users/me", headers=customer.headers)).status_code == 401
    relogin = await login(client, customer.email)
    assert relogin.status_code == 403
    assert relogin.json()["code"] == "account_disabled"
    await client.patch(
        f"/users/{customer.user.id}", json={"is_active": True}, headers=admin.headers
    )
    assert (await login(client, customer.email)).status_code == 200


async def test_admin_cannot_demote_self(app: FastAPI, client: httpx.AsyncClient) -> None:
    admin = await make_account(app, client, Role.admin)
    response = await client.patch(
        f"/users/{admin.user.id}", json={"role": "customer"}, headers=admin.headers
    )
    assert response.status_code == 409
    bad = await client.patch(
        f"/users/{admin.user.id}", json={"role": "superuser"}, headers=admin.headers
    )
    assert bad.status_code == 422
