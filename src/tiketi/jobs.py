"""The background jobs of the application, in the order they run each tick."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from tiketi.core.idempotency import IdempotencyRepository
from tiketi.core.jobs import Job
from tiketi.orders.repository import OrderRepository

EXPIRY_BATCH = 100


async def expire_stale_holds(session: AsyncSession) -> int:
    """Pending orders past their deadline → expired; their holds released exactly once."""
    orders = OrderRepository(session)
    expired = await orders.expire_stale(limit=EXPIRY_BATCH)
    await orders.release_holds(expired)
    return len(expired)


async def purge_idempotency_keys(session: AsyncSession) -> int:
    return await IdempotencyRepository(session).purge_expired()


def application_jobs() -> list[Job]:
    return [
        Job("expire_stale_holds", expire_stale_holds, batch_size=EXPIRY_BATCH),
        Job("purge_idempotency_keys", purge_idempotency_keys),
    ]
