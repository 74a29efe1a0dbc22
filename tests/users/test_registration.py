import httpx
import pytest
from fastapi import FastAPI

from tests.factories import PASSWORD, login, make_account, make_user
from tiketi.users.models import Role

NEW = {
    "email": "Achieng.Otieno@Example.com",
    "password": "safari-njema-2026",
    "first_name": "Achieng",
    "last_name": "Otieno",
    "phone_number": "+254 712 345 678",
}


async def test_register_then_login_round_trip(client: httpx.AsyncClient) -> None:
    response = await client.post("/users", json=NEW)
    assert response.status_code == 201, response.text
    user = response.json()
    assert user["email"] == "achieng.otieno@example.com"
    assert user["phone_number"] == "254712345678"
    assert user["role"] == "customer"
    assert user["is_active"] is True
    assert set(user) == {
        "id",
        "email",
        "first_name",
        "last_name",
        "phone_number",
        "role",
        "is_active",
        "created_at",
    }
    tokens = (await login(client, "ACHIENG.otieno@example.com", NEW["password"])).json()
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 900
    me = await client.get(
        "/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.json()["id"] == user["id"]


async def test_organizer_may_self_register(client: httpx.AsyncClient) -> None:
    response = await client.post("/users", json=NEW | {"role": "organizer"})
    assert response.json()["role"] == "organizer"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"role": "admin"}, "role"),
        ({"is_admin": True}, "is_admin"),
        ({"token_version": 5}, "token_version"),
        ({"email": "not-an-email"}, "email"),
        ({"password": "short"}, "password"),
        ({"password": "x" * 129}, "password"),
        ({"phone_number": "0812345678"}, "phone_number"),
        ({"phone_number": "+1 555 0100"}, "phone_number"),
        ({"first_name": "   "}, "first_name"),
        ({"last_name": None}, "last_name"),
    ],
)
async def test_registration_refuses_bad_input(
    client: httpx.AsyncClient, change: dict[str, object], field: str
) -> None:
    response = await client.post("/users", json=NEW | change)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation_error"
    assert any(field in err["loc"] for err in body["errors"])
    assert (await login(client, NEW["email"], NEW["password"])).status_code == 401


async def test_phone_error_names_the_accepted_forms(client: httpx.AsyncClient) -> None:
    response = await client.post("/users", json=NEW | {"phone_number": "12345"})
    assert "07XXXXXXXX" in response.json()["detail"]


async def test_password_equal_to_email_is_refused(client: httpx.AsyncClient) -> None:
    email = "kamau.weak@example.com"
    response = await client.post("/users", json=NEW | {"email": email, "password": email})
    assert response.status_code == 422
    assert response.json()["code"] == "weak_password"


async def test_duplicate_email_case_insensitive(client: httpx.AsyncClient) -> None:
    assert (await client.post("/users", json=NEW)).status_code == 201
    again = await client.post("/users", json=NEW | {"email": "ACHIENG.OTIENO@example.COM"})
    assert again.status_code == 409
    assert again.json()["code"] == "email_taken"


async def test_profile_update(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await make_account(app, client)
    response = await client.patch(
        "/users/me",
        json={"first_name": "Njeri", "phone_number": "0112345678"},
        headers=account.headers,
    )
    assert response.status_code == 200
    assert response.json()["first_name"] == "Njeri"
    assert response.json()["phone_number"] == "254112345678"
    refused = await client.patch("/users/me", json={"role": "admin"}, headers=account.headers)
    assert refused.status_code == 422
    me = await client.get("/users/me", headers=account.headers)
    assert me.json()["role"] == "customer"


async def test_password_change_revokes_old_tokens(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await make_account(app, client)
    wrong = await client.post(
        "/users/me/password",
        json={"current_password": "nope-nope-nope", "new_password": "another-pass-99"},
        headers=account.headers,
    )
    assert wrong.status_code == 422
    assert wrong.json()["code"] == "wrong_password"
    ok = await client.post(
        "/users/me/password",
        json={"current_password": PASSWORD, "new_password": "another-pass-99"},
        headers=account.headers,
    )
    assert ok.status_code == 204
    assert (await client.get("/users/me", headers=account.headers)).status_code == 401
    refresh = await client.post("/auth/refresh", json={"refresh_token": account.refresh_token})
    assert refresh.status_code == 401
    assert (await login(client, account.email, PASSWORD)).status_code == 401
    assert (await login(client, account.email, "another-pass-99")).status_code == 200


async def test_no_response_contains_a_password_hash(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_account(app, client, Role.admin)
    user = await make_user(app)
    bodies = [
        (await client.get("/users/me", headers=admin.headers)).text,
        (await client.get("/users", headers=admin.headers)).text,
        (await client.get(f"/users/{user.id}", headers=admin.headers)).text,
        (await client.post("/users", json=NEW)).text,
    ]
    for body in bodies:
        assert "argon2" not in body
        assert "password_hash" not in body
