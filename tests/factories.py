"""Small async factories: real rows through the real services, committed."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import httpx
from fastapi import FastAPI

from tiketi.users.models import Role, User
from tiketi.users.schemas import UserCreate
from tiketi.users.service import UserService

PASSWORD = "Tiketi-pass-2026"
_seq = itertools.count(1)


@dataclass
class Account:
    user: User
    email: str
    password: str
    headers: dict[str, str]
    refresh_token: str


async def make_user(
    app: FastAPI,
    *,
    role: Role = Role.customer,
    email: str | None = None,
    password: str = PASSWORD,
    first_name: str = "Wanjiru",
    last_name: str = "Kamau",
    phone_number: str = "0712345678",
) -> User:
    n = next(_seq)
    data = UserCreate(
        email=email or f"user{n}@example.com",
        password=password,
        first_name=first_name,
        last_name=last_name,
        phone_number=phone_number,
    )
    async with app.state.sessionmaker() as session, session.begin():
        return await UserService(session).register(data, role=role)


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/auth/token", data={"username": email, "password": password})


async def make_account(
    app: FastAPI, client: httpx.AsyncClient, role: Role = Role.customer, **kwargs: str
) -> Account:
    user = await make_user(app, role=role, **kwargs)
    password = kwargs.get("password", PASSWORD)
    response = await login(client, user.email, password)
    assert response.status_code == 200, response.text
    tokens = response.json()
    return Account(
        user=user,
        email=user.email,
        password=password,
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        refresh_token=tokens["refresh_token"],
    )
