import asyncio
import base64
import json
import time
import uuid

import httpx
from fastapi import FastAPI
from jose import jwt

from tests.factories import PASSWORD, login, make_account, make_user
from tiketi.core.security import TokenCodec
from tiketi.core.settings import Settings


def _codec(settings: Settings, **overrides: object) -> TokenCodec:
    values: dict[str, object] = {
        "secret": settings.jwt_secret,
        "algorithm": "HS256",
        "issuer": settings.jwt_issuer,
        "audience": settings.jwt_audience,
        "ttl_seconds": 900,
    }
    values.update(overrides)
    return TokenCodec(**values)  # type: ignore[arg-type]


def _claims(user_id: uuid.UUID, settings: Settings, **overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": str(user_id),
        "role": "admin",
        "ver": 0,
        "typ": "access",
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


async def _me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/users/me", headers={"Authorization": f"Bearer {token}"})


async def test_valid_forged_claims_work_only_with_our_secret(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    user = await make_user(app)
    good = jwt.encode(_claims(user.id, settings, role="customer"), settings.jwt_secret, "HS256")
    assert (await _me(client, good)).status_code == 200
    forged = jwt.encode(_claims(user.id, settings), "another-secret-entirely-123456789", "HS256")
    response = await _me(client, forged)
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_rejected_tokens(app: FastAPI, client: httpx.AsyncClient, settings: Settings) -> None:
    user = await make_user(app)
    secret = settings.jwt_secret
    cases = {
        "expired": jwt.encode(
            _claims(user.id, settings, exp=int(time.time()) - 10), secret, "HS256"
        ),
        "wrong audience": jwt.encode(_claims(user.id, settings, aud="other"), secret, "HS256"),
        "wrong issuer": jwt.encode(_claims(user.id, settings, iss="evil"), secret, "HS256"),
        "wrong type": jwt.encode(_claims(user.id, settings, typ="refresh"), secret, "HS256"),
        "no version": jwt.encode(_claims(user.id, settings, ver=None), secret, "HS256"),
        "no exp": jwt.encode(_claims(user.id, settings, exp=None), secret, "HS256"),
        "no iat": jwt.encode(_claims(user.id, settings, iat=None), secret, "HS256"),
        "old version": jwt.encode(_claims(user.id, settings, ver=-1), secret, "HS256"),
        "unknown user": jwt.encode(_claims(uuid.uuid4(), settings), secret, "HS256"),
        "bad sub": jwt.encode(_claims(user.id, settings, sub="root"), secret, "HS256"),
        "garbage": "not.a.jwt",
        "empty segments": "..",
    }
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = base64.urlsafe_b64encode(json.dumps(_claims(user.id, settings)).encode())
    cases["alg none"] = header.decode().rstrip("=") + "." + payload.decode().rstrip("=") + "."
    cases["HS512 with our secret"] = jwt.encode(_claims(user.id, settings), secret, "HS512")
    for name, token in cases.items():
        response = await _me(client, token)
        assert response.status_code == 401, name
        assert response.headers["content-type"].startswith("application/problem+json"), name


async def test_missing_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/users/me")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


async def test_unknown_email_and_wrong_password_answer_alike(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    user = await make_user(app)
    unknown = await login(client, "nobody@example.com", PASSWORD)
    wrong = await login(client, user.email, "wrong-password-1")
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json()["code"] == wrong.json()["code"] == "invalid_credentials"
    assert unknown.json()["detail"] == wrong.json()["detail"]


async def test_refresh_rotation_and_reuse_detection(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    account = await make_account(app, client)
    first = await client.post("/auth/refresh", json={"refresh_token": account.refresh_token})
    assert first.status_code == 200
    rotated = first.json()
    assert rotated["refresh_token"] != account.refresh_token
    assert (await _me(client, rotated["access_token"])).status_code == 200

    # The spent token presented again: refused, and the whole family dies with it.
    reuse = await client.post("/auth/refresh", json={"refresh_token": account.refresh_token})
    assert reuse.status_code == 401
    assert reuse.json()["code"] == "invalid_refresh_token"
    later = await client.post("/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert later.status_code == 401


async def test_concurrent_refreshes_exactly_one_wins(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    account = await make_account(app, client)
    responses = await asyncio.gather(
        *[
            client.post("/auth/refresh", json={"refresh_token": account.refresh_token})
            for _ in range(8)
        ]
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1, statuses
    assert statuses.count(401) == 7


async def test_logout_ends_the_session(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await make_account(app, client)
    assert (
        await client.post("/auth/logout", json={"refresh_token": account.refresh_token})
    ).status_code == 204
    refresh = await client.post("/auth/refresh", json={"refresh_token": account.refresh_token})
    assert refresh.status_code == 401
    unknown = await client.post("/auth/logout", json={"refresh_token": "whatever"})
    assert unknown.status_code == 204
    assert (await client.post("/auth/logout", json={})).status_code == 422


async def test_login_form_validation(client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/token", data={"username": "x"})
    assert response.status_code == 422
    as_json = await client.post("/auth/token", json={"username": "x", "password": "y"})
    assert as_json.status_code == 422


def test_codec_round_trip(settings: Settings) -> None:
    codec = _codec(settings)
    user_id = uuid.uuid4()
    token, ttl = codec.issue(user_id=user_id, role="organizer", token_version=3)
    claims = codec.decode(token)
    assert (claims.user_id, claims.role, claims.token_version, ttl) == (
        user_id,
        "organizer",
        3,
        900,
    )
