from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tiketi.core.database import DriverConnection
from tiketi.core.repository import AnyRow, keyset_page
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

    async def get_for_update(self, payment_id: uuid.UUID) -> Payment | None:
        return await self.session.get(
            Payment, payment_id, with_for_update=True, populate_existing=True
        )

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


# -- settling over a Core connection (the callback's hot path) ---------------------------------
#
# Text statements on an AsyncConnection: a callback runs a handful of them, and each one through
# an ORM session (identity map, flushes, populate_existing) cost several times the statement.
# Payments are named by the checkout id Daraja echoes (unique). Every write is conditional on
# `status = 'pending'`, so the UPDATE that settles a payment is also its row lock and its
# duplicate check.

# Driver-level SQL (asyncpg placeholders): see `SettlementRepository.store_callback`.
_STORE_CALLBACK_JSON = (
    "INSERT INTO payment_callbacks (checkout_request_id, source_ip, raw, body)"
    " VALUES ($1, $2, $3, CAST(CAST($3 AS text) AS jsonb)) RETURNING id"
)
_STORE_CALLBACK_TEXT = (
    "INSERT INTO payment_callbacks (checkout_request_id, source_ip, raw)"
    " VALUES ($1, $2, $3) RETURNING id"
)
_MARK_CALLBACK = text(
    "UPDATE payment_callbacks SET outcome = :outcome, payment_id = :payment_id WHERE id = :id"
)
# pending → succeeded with the receipt, if the amount matches (NULL: not checked). The callback
# row (if any) is marked 'succeeded' by the same statement — provisionally: the caller corrects
# it in the same transaction if the order cannot be fulfilled — one round trip fewer before
# the hot counter row. When nothing was claimed and the statement's snapshot already shows the
# payment concluded, the answer is a duplicate, recorded as such by the same statement (a
# duplicate delivery costs one statement, not three). A payment still pending in the snapshot
# (a racing original that committed while we waited for its row, or another amount) returns
# nothing: the caller decides under the row lock.
_CLAIM_SUCCESS = text(
    "WITH claimed AS ("
    " UPDATE payments SET status = 'succeeded', mpesa_receipt = :receipt,"
    " result_code = :result_code, result_desc = :result_desc,"
    " completed_at = now(), updated_at = now()"
    " WHERE checkout_request_id = :checkout_request_id AND status = 'pending'"
    " AND (CAST(:amount AS integer) IS NULL OR amount = CAST(:amount AS integer))"
    " RETURNING id, order_id),"
    " answer AS ("
    " SELECT id, order_id, 'succeeded' AS outcome FROM claimed"
    " UNION ALL"
    " SELECT id, NULL, 'duplicate' FROM payments"
    " WHERE checkout_request_id = :checkout_request_id AND status <> 'pending'"
    " AND NOT EXISTS (SELECT FROM claimed)),"
    " recorded AS ("
    " UPDATE payment_callbacks c SET outcome = answer.outcome, payment_id = answer.id"
    " FROM answer WHERE c.id = CAST(:callback_id AS uuid))"
    " SELECT id, order_id, outcome FROM answer"
)
_CONCLUDE = text(
    "UPDATE payments SET status = :status, result_code = :result_code,"
    " result_desc = :result_desc, review_reason = coalesce(:review_reason, review_reason),"
    " completed_at = CASE WHEN CAST(:terminal AS boolean) THEN now() ELSE completed_at END,"
    " updated_at = now()"
    " WHERE checkout_request_id = :checkout_request_id AND status = 'pending' RETURNING id"
)
_LOCK = text(
    "SELECT id, order_id, amount, status FROM payments"
    " WHERE checkout_request_id = :checkout_request_id FOR UPDATE"
)
_FLAG = text(
    "UPDATE payments SET status = 'needs_review', review_reason = :reason, updated_at = now()"
    " WHERE id = :id"
)
_ORPHANS = text(
    "SELECT id, order_id, amount, status FROM payments"
    " WHERE status = 'pending' AND checkout_request_id IS NULL"
    " AND phone_number = :phone_number AND amount = :amount AND created_at > :since"
    " LIMIT 2 FOR UPDATE"
)
_ADOPT = text(
    "UPDATE payments SET checkout_request_id = :checkout_request_id,"
    " merchant_request_id = :merchant_request_id, updated_at = now() WHERE id = :id"
)


class SettlementRepository:
    """Storing Daraja callbacks and settling payments, on a Core connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def store_callback(
        self, *, raw: str, as_json: bool, checkout_request_id: str | None, source_ip: str | None
    ) -> uuid.UUID:
        """Keep the body as received, and as jsonb when it parses, committed at once so it
        stays even if settling fails. Call it before anything else runs on the connection.

        It goes to the asyncpg connection directly, outside any transaction (PostgreSQL
        commits a lone statement by itself): through SQLAlchemy it took switching the
        connection to autocommit and back and a bookkeeping commit, each a greenlet hop,
        which cost more CPU than the INSERT itself. Errors are wrapped as SQLAlchemy's
        would be, so the API answers them the same (503 for an unavailable database)."""
        driver = DriverConnection(await self.conn.get_raw_connection(), self.conn.dialect)
        args = (checkout_request_id, source_ip, raw)
        if as_json:
            try:
                return await _fetch_id(driver, _STORE_CALLBACK_JSON, args)
            except DBAPIError as error:
                # PostgreSQL's JSON is stricter than Python's (lone surrogates, say): a data
                # exception (SQLSTATE class 22) keeps the text alone; anything else is real.
                if not str(getattr(error.orig, "sqlstate", "")).startswith("22"):
                    raise
        return await _fetch_id(driver, _STORE_CALLBACK_TEXT, args)

    async def mark_callback(
        self, callback_id: uuid.UUID, *, outcome: str, payment_id: uuid.UUID | None
    ) -> None:
        await self.conn.execute(
            _MARK_CALLBACK, {"id": callback_id, "outcome": outcome, "payment_id": payment_id}
        )

    async def claim_success(
        self,
        checkout_request_id: str,
        *,
        amount: int | None,
        receipt: str | None,
        result_code: str,
        result_desc: str,
        callback_id: uuid.UUID | None,
    ) -> AnyRow | None:
        """pending → succeeded if the amount matches (None: not checked), with the receipt:
        `(id, order_id, 'succeeded')`. `(id, None, 'duplicate')` if the payment had already
        concluded; None if it is unknown, another amount, or was concluded concurrently (decide
        under the lock). A receipt another payment holds raises IntegrityError: the unique
        index decides, race-free. With `callback_id` the callback is marked with the outcome."""
        result = await self.conn.execute(
            _CLAIM_SUCCESS,
            {
                "checkout_request_id": checkout_request_id,
                "amount": amount,
                "receipt": receipt,
                "result_code": result_code,
                "result_desc": result_desc,
                "callback_id": callback_id,
            },
        )
        return result.first()

    async def conclude(
        self,
        checkout_request_id: str,
        *,
        status: PaymentStatus,
        result_code: str,
        result_desc: str,
        review_reason: str | None = None,
    ) -> uuid.UUID | None:
        """An answer that issues nothing, for a pending payment: failed, needs review, or still
        pending with the latest result code. Its id, or None if it is not pending."""
        result = await self.conn.execute(
            _CONCLUDE,
            {
                "checkout_request_id": checkout_request_id,
                "status": status.value,
                "terminal": status is not PaymentStatus.pending,
                "result_code": result_code,
                "result_desc": result_desc,
                "review_reason": review_reason,
            },
        )
        return result.scalar_one_or_none()

    async def lock(self, checkout_request_id: str) -> AnyRow | None:
        """`(id, order_id, amount, status)`, row-locked."""
        result = await self.conn.execute(_LOCK, {"checkout_request_id": checkout_request_id})
        return result.first()

    async def flag_for_review(self, payment_id: uuid.UUID, reason: str) -> None:
        await self.conn.execute(_FLAG, {"id": payment_id, "reason": reason})

    async def orphans(self, *, phone_number: str, amount: int, since: datetime) -> Sequence[AnyRow]:
        """Pending payments whose push answer was lost (no checkout id), locked; at most 2."""
        result = await self.conn.execute(
            _ORPHANS, {"phone_number": phone_number, "amount": amount, "since": since}
        )
        return result.all()

    async def adopt(
        self, payment_id: uuid.UUID, *, checkout_request_id: str, merchant_request_id: str
    ) -> None:
        await self.conn.execute(
            _ADOPT,
            {
                "id": payment_id,
                "checkout_request_id": checkout_request_id,
                "merchant_request_id": merchant_request_id,
            },
        )


async def _fetch_id(driver: DriverConnection, sql: str, args: tuple[str | None, ...]) -> uuid.UUID:
    """`RETURNING id` through the driver (errors as SQLAlchemy's: `DriverConnection.fetch`)."""
    (row,) = await driver.fetch(sql, args)
    return row[0]  # type: ignore[no-any-return]
