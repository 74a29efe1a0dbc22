"""Demo data for `tiketi dev` and `tiketi seed-demo` (development only; idempotent)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tiketi.demo_events import seed_demo_events
from tiketi.users.models import Role
from tiketi.users.repository import UserRepository
from tiketi.users.schemas import UserCreate
from tiketi.users.service import UserService

logger = logging.getLogger("tiketi.demo")

DEMO_PASSWORD = "tiketi-demo-2026"  # noqa: S105 - documented demo password, development only


@dataclass(frozen=True)
class DemoAccount:
    email: str
    role: Role
    first_name: str
    last_name: str
    phone_number: str


DEMO_ORGANIZER = "organizer@tiketi.dev"

DEMO_ACCOUNTS = (
    DemoAccount("admin@tiketi.dev", Role.admin, "Amina", "Wafula", "0700000001"),
    DemoAccount("organizer@tiketi.dev", Role.organizer, "Baraka", "Mwangi", "0700000002"),
    DemoAccount("customer@tiketi.dev", Role.customer, "Chebet", "Kiprono", "0708374149"),
)


async def seed_demo_users(session: AsyncSession) -> int:
    created = 0
    users = UserRepository(session)
    for account in DEMO_ACCOUNTS:
        if await users.get_by_email(account.email) is not None:
            continue
        await UserService(session).register(
            UserCreate(
                email=account.email,
                password=DEMO_PASSWORD,
                first_name=account.first_name,
                last_name=account.last_name,
                phone_number=account.phone_number,
            ),
            role=account.role,
        )
        created += 1
    return created


async def seed_demo(
    sessionmaker: async_sessionmaker[AsyncSession], *, generate_events: int = 0
) -> None:
    """Demo accounts, the curated Kenyan events (owned by the demo organizer), and
    `generate_events` more generated ones (for trying search at scale)."""
    async with sessionmaker() as session, session.begin():
        users = await seed_demo_users(session)
    async with sessionmaker() as session, session.begin():
        events = await seed_demo_events(
            session, organizer_email=DEMO_ORGANIZER, generate=generate_events
        )
    logger.info("demo data ready", extra={"users_created": users, "events_created": events})
