"""Small async factories: real rows through the real services, committed."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from tiketi.events.models import Event, TicketType
from tiketi.events.schemas import EventCreate, TicketTypeCreate
from tiketi.events.service import EventService
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


def future(days: float = 7, hours: float = 0) -> datetime:
    return datetime.now(UTC) + timedelta(days=days, hours=hours)


async def make_event(
    app: FastAPI,
    organizer: User,
    *,
    publish: bool = True,
    tiers: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> Event:
    """An event (published by default) with tiers (Early Bird / VIP / Regular by default)."""
    starts_at = fields.pop("starts_at", future())
    values: dict[str, Any] = {
        "title": "Nairobi Jazz Festival",
        "description": "An evening of Kenyan jazz under the stars.",
        "category": "music",
        "tags": ["jazz", "outdoor"],
        "venue": "Carnivore Grounds",
        "city": "Nairobi",
        "starts_at": starts_at,
        "ends_at": fields.pop("ends_at", starts_at + timedelta(hours=5)),
    }
    values.update(fields)
    if tiers is None:
        tiers = [
            {"name": "Early Bird", "price": 1500, "quantity": 100},
            {"name": "VIP", "price": 5000, "quantity": 20, "max_per_order": 4},
            {"name": "Regular", "price": 2500, "quantity": 300},
        ]
    async with app.state.sessionmaker() as session, session.begin():
        service = EventService(session)
        event = await service.create(organizer, EventCreate(**values))
        for tier in tiers:
            await service.add_ticket_type(event, TicketTypeCreate(**tier))
        if publish:
            await service.publish(event)
    return event


async def tiers_of(app: FastAPI, event_id: uuid.UUID) -> list[TicketType]:
    async with app.state.sessionmaker() as session:
        result = await session.execute(
            select(TicketType)
            .where(TicketType.event_id == event_id)
            .order_by(TicketType.sort_order, TicketType.created_at)
        )
        return list(result.scalars())


async def make_buyers(app: FastAPI, count: int) -> list[tuple[User, dict[str, str]]]:
    """Many customers at once (one shared password hash) with access tokens minted directly:
    concurrency tests need a crowd, not 100 argon2 computations."""
    from tiketi.core.security import hash_password

    password_hash = await hash_password(PASSWORD)
    async with app.state.sessionmaker() as session, session.begin():
        users = [
            User(
                email=f"buyer{next(_seq)}@example.com",
                password_hash=password_hash,
                first_name="Buyer",
                last_name=str(i),
                phone_number="254712345678",
                role=Role.customer.value,
            )
            for i in range(count)
        ]
        session.add_all(users)
        await session.flush()
        for user in users:
            await session.refresh(user)
    codec = app.state.token_codec
    return [
        (
            user,
            {
                "Authorization": "Bearer "
                + codec.issue(user_id=user.id, role=user.role, token_version=0)[0]
            },
        )
        for user in users
    ]


async def place_order(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    event_id: uuid.UUID,
    lines: list[tuple[uuid.UUID, int]],
    **kwargs: Any,
) -> httpx.Response:
    body = {
        "event_id": str(event_id),
        "items": [{"ticket_type_id": str(t), "quantity": q} for t, q in lines],
    }
    return await client.post("/orders", json=body, headers=headers, **kwargs)


async def counters(app: FastAPI, type_id: uuid.UUID) -> tuple[int, int, int]:
    """(quantity, sold, held) of a ticket type, read fresh."""
    async with app.state.sessionmaker() as session:
        row = (
            await session.execute(
                select(TicketType.quantity, TicketType.sold, TicketType.held).where(
                    TicketType.id == type_id
                )
            )
        ).one()
        return int(row[0]), int(row[1]), int(row[2])


async def pay_order(app: FastAPI, order_id: uuid.UUID | str) -> bool:
    """Settle a pending order as a confirmed payment would (issues the tickets)."""
    from tiketi.orders.service import OrderService

    async with app.state.sessionmaker() as session, session.begin():
        return await OrderService(session, app.state.settings).issue_tickets(
            uuid.UUID(str(order_id))
        )
