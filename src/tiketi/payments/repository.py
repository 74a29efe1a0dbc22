from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from tiketi.core.repository import keyset_page
from tiketi.payments.models import Payment, PaymentCallback, PaymentStatus


class PaymentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, **values: Any) -> Payment | None:
        """The new pending payment; None if the order already has one in flight, or the
        payer reused an idempotency key (both decided by unique indexes, race-free)."""
        result = await self.session.execute(
            insert(Payment).values(**values).on_conflict_do_nothing().returning(Payment)
        )
        return result.scalar_one_or_none()

    async def get(self, payment_id: uuid.UUID) -> Payment | None:
        return await self.session.get(Payment, payment_id)

    async def by_idempotency_key(self, payer_id: uuid.UUID, key: str) -> Payment | None:
        result = await self.session.execute(
            select(Payment).where(Payment.payer_id == payer_id, Payment.idempotency_key == key)
        )
        return result.scalar_one_or_none()

    async def pending_for_order(self, order_id: uuid.UUID) -> Payment | None:
        result = await self.session.execute(
            select(Payment).where(
                Payment.order_id == order_id, Payment.status == PaymentStatus.pending.value
            )
        )
        return result.scalar_one_or_none()

    async def by_checkout_for_update(self, checkout_request_id: str) -> Payment | None:
        result = await self.session.execute(
            select(Payment)
            .where(Payment.checkout_request_id == checkout_request_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return result.scalar_one_or_none()

    async def get_for_update(self, payment_id: uuid.UUID) -> Payment | None:
        return await self.session.get(
            Payment, payment_id, with_for_update=True, populate_existing=True
        )

    async def orphans(
        self, *, phone_number: str, amount: int, since: datetime
    ) -> Sequence[Payment]:
        """Pending payments whose push answer was lost (no checkout id), locked."""
        result = await self.session.execute(
            select(Payment)
            .where(
                Payment.status == PaymentStatus.pending.value,
                Payment.checkout_request_id.is_(None),
                Payment.phone_number == phone_number,
                Payment.amount == amount,
                Payment.created_at > since,
            )
            .limit(2)
            .with_for_update()
        )
        return result.scalars().all()

    async def receipt_taken(self, receipt: str) -> bool:
        result = await self.session.execute(
            select(Payment.id).where(Payment.mpesa_receipt == receipt).limit(1)
        )
        return result.first() is not None

    async def page(
        self,
        *,
        payer_id: uuid.UUID | None,
        status: PaymentStatus | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[Payment], str | None]:
        stmt = select(Payment)
        if payer_id is not None:
            stmt = stmt.where(Payment.payer_id == payer_id)
        if status is not None:
            stmt = stmt.where(Payment.status == status.value)
        return await keyset_page(
            self.session,
            stmt,
            order=[Payment.created_at, Payment.id],
            key_types=(datetime, uuid.UUID),
            row_key=lambda p: [p.created_at, p.id],
            cursor=cursor,
            limit=limit,
            descending=True,
        )

    async def claim_due_for_query(self, *, limit: int, backoff: timedelta) -> Sequence[Payment]:
        """Pending payments whose next query is due, claimed by pushing `next_query_at` out
        (SKIP LOCKED: another process's claim is left alone)."""
        due = (
            select(Payment.id)
            .where(
                Payment.status == PaymentStatus.pending.value,
                Payment.next_query_at <= func.now(),
            )
            .order_by(Payment.next_query_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("due")
        )
        result = await self.session.execute(
            update(Payment)
            .where(Payment.id == due.c.id)
            .values(
                next_query_at=func.now() + backoff,
                query_attempts=Payment.query_attempts + 1,
            )
            .returning(Payment)
        )
        return result.scalars().all()

    async def add_callback(
        self,
        *,
        raw: str,
        body: dict[str, Any] | None,
        checkout_request_id: str | None,
        source_ip: str | None,
    ) -> uuid.UUID:
        result = await self.session.execute(
            insert(PaymentCallback)
            .values(
                raw=raw,
                body=body,
                checkout_request_id=checkout_request_id,
                source_ip=source_ip,
            )
            .returning(PaymentCallback.id)
        )
        return result.scalar_one()

    async def mark_callback(
        self, callback_id: uuid.UUID, *, outcome: str, payment_id: uuid.UUID | None
    ) -> None:
        await self.session.execute(
            update(PaymentCallback)
            .where(PaymentCallback.id == callback_id)
            .values(outcome=outcome, payment_id=payment_id)
        )

    async def unmatched_callbacks(self, checkout_request_id: str) -> list[tuple[uuid.UUID, str]]:
        """Callbacks that arrived before we had stored their checkout id (raw bodies)."""
        result = await self.session.execute(
            select(PaymentCallback.id, PaymentCallback.raw)
            .where(
                PaymentCallback.checkout_request_id == checkout_request_id,
                PaymentCallback.payment_id.is_(None),
            )
            .order_by(PaymentCallback.received_at)
        )
        return [(row.id, row.raw) for row in result]
