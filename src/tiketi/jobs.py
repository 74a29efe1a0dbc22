"""The background jobs of the application, in the order they run each tick."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import exists
from sqlalchemy.ext.asyncio import AsyncSession

from tiketi.auth.repository import LoginThrottleRepository, RefreshTokenRepository
from tiketi.core.idempotency import IdempotencyRepository
from tiketi.core.jobs import Job, Sessions, transactional
from tiketi.orders.models import Order
from tiketi.orders.repository import OrderRepository
from tiketi.payments.models import Payment, PaymentStatus
from tiketi.payments.service import PaymentService

EXPIRY_BATCH = 100

# An order whose payment is still in flight keeps its hold until the payment concludes
# (the reconciliation job settles or flags it); only then may it expire.
_NO_PAYMENT_IN_FLIGHT = ~exists().where(
    Payment.order_id == Order.id, Payment.status == PaymentStatus.pending.value
)


async def expire_stale_holds(session: AsyncSession) -> int:
    """Pending orders past their deadline → expired; their holds released exactly once."""
    orders = OrderRepository(session)
    expired = await orders.expire_stale(limit=EXPIRY_BATCH, extra_guard=_NO_PAYMENT_IN_FLIGHT)
    await orders.release_holds(expired)
    return len(expired)


async def purge_idempotency_keys(session: AsyncSession) -> int:
    return await IdempotencyRepository(session).purge_expired()


async def purge_auth_records(session: AsyncSession) -> int:
    """Expired refresh tokens (after a week, so a late replay is still recognised) and
    sign-in counters whose window ended a day ago."""
    tokens = await RefreshTokenRepository(session).purge_expired(timedelta(days=7))
    throttles = await LoginThrottleRepository(session).purge_older_than(timedelta(days=1))
    return tokens + throttles


def reconcile_payments(payments: PaymentService) -> Callable[[Sessions], Awaitable[int]]:
    async def run(_: Sessions) -> int:
        return await payments.reconcile()

    return run


def application_jobs(payments: PaymentService | None = None) -> list[Job]:
    jobs = [
        Job("expire_stale_holds", transactional(expire_stale_holds), batch_size=EXPIRY_BATCH),
        Job("purge_idempotency_keys", transactional(purge_idempotency_keys)),
        Job("purge_auth_records", transactional(purge_auth_records)),
    ]
    if payments is not None:
        jobs.insert(0, Job("reconcile_payments", reconcile_payments(payments)))
    return jobs
