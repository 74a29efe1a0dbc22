"""Paying for an order with an M-Pesa STK push, and settling what Daraja tells us.

Unlike the rest of the API, these use cases open their own short transactions instead of the
request's session: the payment row must be committed *before* the push is sent (so a crash or
timeout mid-push leaves a record to reconcile), and no database connection may be held while
we wait up to ~45 s for Daraja.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tiketi.auth.dependencies import is_admin
from tiketi.core.settings import Settings
from tiketi.orders.exceptions import OrderNotFound
from tiketi.orders.models import OrderStatus
from tiketi.orders.repository import OrderRepository
from tiketi.orders.service import OrderService
from tiketi.payments.exceptions import (
    CallbackSourceRefused,
    GatewayBusy,
    GatewayError,
    HoldExpired,
    IdempotencyKeyReused,
    MalformedCallback,
    OrderNotPayable,
    PaymentNotFound,
    PaymentPending,
    UnknownCallbackToken,
)
from tiketi.payments.models import Payment, PaymentStatus
from tiketi.payments.mpesa import (
    MpesaBusy,
    MpesaError,
    MpesaGateway,
    MpesaUnknownOutcome,
    StkCallback,
    StkStatus,
    parse_stk_callback,
)
from tiketi.payments.repository import PaymentRepository
from tiketi.payments.schemas import PaymentCreate, PaymentRead
from tiketi.users.models import User

logger = logging.getLogger("tiketi.payments")

TRANSACTION_DESC = "Tiketi"  # <= 13 characters, shown on the customer's PIN prompt
UNKNOWN_OUTCOME_MESSAGE = (
    "We could not confirm the payment request with M-Pesa. If a PIN prompt appears on your "
    "phone, complete it; we will confirm the payment shortly."
)
QUERY_BATCH = 20


def account_reference(order_id: uuid.UUID) -> str:
    """≤ 12 alphanumerics shown in the prompt and the SMS, traceable to the order."""
    return "TKT" + order_id.hex[:9].upper()


def payment_view(payment: Payment) -> PaymentRead:
    return PaymentRead(
        id=payment.id,
        order_id=payment.order_id,
        status=payment.status,
        amount=payment.amount,
        phone_number=payment.phone_number,
        mpesa_receipt=payment.mpesa_receipt,
        result_code=payment.result_code,
        result_desc=payment.result_desc,
        customer_message=payment.customer_message,
        created_at=payment.created_at,
        completed_at=payment.completed_at,
    )


@dataclass(frozen=True)
class Outcome:
    """What Daraja said about a push, from a callback or a query."""

    status: StkStatus
    result_code: str
    result_desc: str
    amount: Decimal | None = None
    receipt: str | None = None
    from_callback: bool = True


def _now() -> datetime:
    return datetime.now(UTC)


class PaymentService:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], gateway: MpesaGateway, settings: Settings
    ) -> None:
        self.sessions = sessions
        self.gateway = gateway
        self.settings = settings

    @property
    def callback_url(self) -> str:
        base = (self.settings.mpesa_callback_base_url or "").rstrip("/")
        return f"{base}/payments/callbacks/stk/{self.settings.mpesa_callback_token}"

    # -- initiating ------------------------------------------------------------------------

    async def initiate(
        self, payer: User, data: PaymentCreate, *, idempotency_key: str | None
    ) -> tuple[PaymentRead, bool]:
        """Prompt the payer's phone for the order total. Returns (payment, replayed).

        The payment row is committed before the push; a definite refusal marks it failed and
        answers 502/503; an unknown outcome (timeout after sending) leaves it pending for the
        callback or the reconciliation job. A push is never resent automatically.
        """
        async with self.sessions() as session, session.begin():
            payments = PaymentRepository(session)
            if idempotency_key is not None:
                existing = await payments.by_idempotency_key(payer.id, idempotency_key)
                if existing is not None:
                    if existing.order_id != data.order_id or (
                        data.phone_number and data.phone_number != existing.phone_number
                    ):
                        raise IdempotencyKeyReused()
                    return payment_view(existing), True
            payment = await self._open(session, payer, data, idempotency_key)

        try:
            result = await self.gateway.stk_push(
                amount=payment.amount,
                phone=payment.phone_number,
                account_reference=payment.account_reference,
                description=TRANSACTION_DESC,
                callback_url=self.callback_url,
            )
        except MpesaUnknownOutcome as exc:
            logger.warning("stk push outcome unknown", extra={"payment_id": str(payment.id)})
            return await self._record_unknown(payment.id, exc), False
        except MpesaBusy as exc:
            await self._record_refusal(payment.id, exc)
            raise GatewayBusy(
                "M-Pesa is busy or another payment prompt is open on this phone; "
                "try again in a minute",
                headers={"Retry-After": "60"},
                extra={"gateway_code": exc.error_code},
            ) from None
        except MpesaError as exc:
            await self._record_refusal(payment.id, exc)
            raise GatewayError(
                f"M-Pesa refused the payment request: {exc.error_message or exc}",
                extra={"gateway_code": exc.error_code},
            ) from None
        return await self._record_accepted(
            payment.id,
            result.merchant_request_id,
            result.checkout_request_id,
            result.customer_message,
        ), False

    async def _open(
        self, session: AsyncSession, payer: User, data: PaymentCreate, key: str | None
    ) -> Payment:
        orders = OrderRepository(session)
        order = await orders.get_for_update(data.order_id)
        if order is None or order.buyer_id != payer.id:
            raise OrderNotFound()
        if order.status != OrderStatus.pending.value:
            raise OrderNotPayable(f"This order is {order.status}; only pending orders are paid")
        now = _now()
        if order.expires_at <= now:
            raise HoldExpired()
        if order.total <= 0:
            raise OrderNotPayable("This order is free; it needs no payment")
        payments = PaymentRepository(session)
        if await payments.pending_for_order(order.id) is not None:
            raise PaymentPending()
        payment = await payments.insert(
            order_id=order.id,
            payer_id=payer.id,
            amount=order.total,
            phone_number=data.phone_number or payer.phone_number,
            account_reference=account_reference(order.id),
            idempotency_key=key,
            status=PaymentStatus.pending.value,
            next_query_at=now + timedelta(seconds=self.settings.payment_reconcile_after_seconds),
        )
        if payment is None:  # lost a race with a concurrent request for this order or key
            raise PaymentPending()
        # The prompt can take a minute or two: the hold must outlive it.
        await orders.extend_hold(
            order.id, now + timedelta(seconds=self.settings.payment_prompt_seconds)
        )
        return payment

    async def _record_unknown(self, payment_id: uuid.UUID, exc: MpesaUnknownOutcome) -> PaymentRead:
        async with self.sessions() as session, session.begin():
            payment = await PaymentRepository(session).get_for_update(payment_id)
            assert payment is not None
            payment.customer_message = UNKNOWN_OUTCOME_MESSAGE
            if exc.checkout_request_id:
                payment.checkout_request_id = exc.checkout_request_id
            await session.flush()
            return payment_view(payment)

    async def _record_refusal(self, payment_id: uuid.UUID, exc: MpesaError) -> None:
        async with self.sessions() as session, session.begin():
            payment = await PaymentRepository(session).get_for_update(payment_id)
            assert payment is not None
            payment.status = PaymentStatus.failed.value
            payment.result_code = (exc.error_code or type(exc).__name__)[:32]
            payment.result_desc = (exc.error_message or str(exc))[:500]
            payment.completed_at = _now()

    async def _record_accepted(
        self,
        payment_id: uuid.UUID,
        merchant_request_id: str,
        checkout_request_id: str,
        customer_message: str | None,
    ) -> PaymentRead:
        async with self.sessions() as session, session.begin():
            payments = PaymentRepository(session)
            payment = await payments.get_for_update(payment_id)
            assert payment is not None
            payment.merchant_request_id = merchant_request_id
            payment.checkout_request_id = checkout_request_id
            payment.customer_message = customer_message
            await session.flush()
            # A fast callback may have arrived before we knew this checkout id: settle it now.
            for callback_id, raw in await payments.unmatched_callbacks(checkout_request_id):
                label = await self._settle(session, payment, _outcome(parse_stk_callback(raw)))
                await payments.mark_callback(callback_id, outcome=label, payment_id=payment.id)
            return payment_view(payment)

    # -- reading ---------------------------------------------------------------------------

    async def get(self, payment_id: uuid.UUID, viewer: User) -> PaymentRead:
        async with self.sessions() as session:
            payment = await PaymentRepository(session).get(payment_id)
            if payment is None or not (payment.payer_id == viewer.id or is_admin(viewer)):
                raise PaymentNotFound()
            return payment_view(payment)

    async def page(
        self, viewer: User, *, status: PaymentStatus | None, cursor: str | None, limit: int
    ) -> tuple[list[PaymentRead], str | None]:
        """Admins see every payment (filterable by status); others see their own."""
        async with self.sessions() as session:
            payments, next_cursor = await PaymentRepository(session).page(
                payer_id=None if is_admin(viewer) else viewer.id,
                status=status,
                cursor=cursor,
                limit=limit,
            )
            return [payment_view(p) for p in payments], next_cursor

    # -- settling --------------------------------------------------------------------------

    def check_callback_access(self, token: str, source_ip: str | None) -> None:
        expected = self.settings.mpesa_callback_token or ""
        if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
            raise UnknownCallbackToken()
        allowed = self.settings.mpesa_callback_allowed_ips
        if allowed and not _ip_allowed(source_ip, allowed):
            logger.warning("callback from a refused address", extra={"source_ip": source_ip})
            raise CallbackSourceRefused("This address may not deliver payment callbacks")

    async def settle_stk_callback(self, raw: bytes, *, source_ip: str | None) -> str:
        """Store the body, then settle the payment it names, once, in one transaction.

        Only a checkout id we issued and that is still pending can change anything; every
        other delivery (unknown, duplicate, late) is acknowledged and recorded, nothing more.
        """
        text = raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
        try:
            callback = parse_stk_callback(raw)
        except ValueError:
            callback = None
        # jsonb refuses \u0000; such a body is kept as text only.
        body: dict[str, Any] | None = None
        if callback is not None and "\\u0000" not in text:
            body = json.loads(text)
        async with self.sessions() as session, session.begin():
            callback_id = await PaymentRepository(session).add_callback(
                raw=text,
                body=body,
                source_ip=source_ip,
                checkout_request_id=callback.checkout_request_id if callback else None,
            )
        if callback is None:
            raise MalformedCallback("The body is not a Daraja STK callback")
        async with self.sessions() as session, session.begin():
            payments = PaymentRepository(session)
            payment = await payments.by_checkout_for_update(callback.checkout_request_id)
            if payment is None:
                payment = await self._adopt_orphan(payments, callback)
            if payment is None:
                label = "unmatched"
            else:
                label = await self._settle(session, payment, _outcome(callback))
            await payments.mark_callback(
                callback_id, outcome=label, payment_id=payment.id if payment else None
            )
        logger.info(
            "stk callback", extra={"outcome": label, "result_code": callback.result_code_text}
        )
        return label

    async def _adopt_orphan(
        self, payments: PaymentRepository, callback: StkCallback
    ) -> Payment | None:
        """A success for a push whose answer we never got (timeout after sending) carries a
        checkout id we do not know. It is ours only if exactly one such payment matches its
        phone and amount; anything less certain is left for a person to review."""
        if callback.status is not StkStatus.succeeded or not callback.phone or not callback.amount:
            return None
        if callback.amount != callback.amount.to_integral_value():
            return None
        since = _now() - timedelta(seconds=self.settings.payment_review_after_seconds)
        candidates = await payments.orphans(
            phone_number=callback.phone, amount=int(callback.amount), since=since
        )
        if len(candidates) != 1:
            return None
        payment = candidates[0]
        payment.checkout_request_id = callback.checkout_request_id
        payment.merchant_request_id = callback.merchant_request_id
        return payment

    async def _settle(self, session: AsyncSession, payment: Payment, outcome: Outcome) -> str:
        """Apply a conclusive answer to a locked pending payment (and its order)."""
        if payment.status != PaymentStatus.pending.value:
            return "duplicate"
        payment.result_code = outcome.result_code[:32]
        payment.result_desc = outcome.result_desc[:500]
        if outcome.status is StkStatus.failed:
            payment.status = PaymentStatus.failed.value
            payment.completed_at = _now()
            return "failed"
        if outcome.status is not StkStatus.succeeded:
            return "pending"  # still processing, or a code we do not know: reconcile later
        problem = await self._success_problem(session, payment, outcome)
        if problem is None:
            problem = await self._fulfil(session, payment)
        payment.completed_at = _now()
        if problem is not None:
            payment.status = PaymentStatus.needs_review.value
            payment.review_reason = problem
            logger.error(
                "payment needs review", extra={"payment_id": str(payment.id), "reason": problem}
            )
            return "needs_review"
        payment.status = PaymentStatus.succeeded.value
        return "succeeded"

    async def _success_problem(
        self, session: AsyncSession, payment: Payment, outcome: Outcome
    ) -> str | None:
        if outcome.amount is not None and outcome.amount != Decimal(payment.amount):
            return f"amount mismatch: asked {payment.amount} KES, paid {outcome.amount} KES"
        if outcome.receipt is None:
            return "no M-Pesa receipt in the success callback" if outcome.from_callback else None
        if await PaymentRepository(session).receipt_taken(outcome.receipt):
            return f"receipt {outcome.receipt} was already used by another payment"
        try:
            async with session.begin_nested():
                payment.mpesa_receipt = outcome.receipt
                await session.flush()
        except IntegrityError:
            payment.mpesa_receipt = None
            return f"receipt {outcome.receipt} was already used by another payment"
        return None

    async def _fulfil(self, session: AsyncSession, payment: Payment) -> str | None:
        """Issue the tickets; a reason string when the money cannot buy them (refund due)."""
        orders = OrderService(session, self.settings)
        order = await orders.orders.get_for_update(payment.order_id)
        assert order is not None
        if order.status == OrderStatus.pending.value:
            await orders.issue_tickets(order.id)
            return None
        if order.status == OrderStatus.expired.value:
            if await orders.issue_after_lapse(order.id):
                return None
            return "paid after the hold expired and the tickets are gone: refund due"
        return f"paid for an order that is {order.status}: refund due"

    # -- reconciling -----------------------------------------------------------------------

    async def reconcile(self) -> int:
        """Ask Daraja about payments left pending past their prompt time; settle conclusive
        answers exactly like callbacks; flag the ones that never conclude for review."""
        async with self.sessions() as session, session.begin():
            flagged = await self._flag_stale(session)
            due = await PaymentRepository(session).claim_due_for_query(
                limit=QUERY_BATCH, backoff=timedelta(seconds=60)
            )
            claimed = [(p.id, p.checkout_request_id) for p in due]
        settled = 0
        for payment_id, checkout_request_id in claimed:
            if checkout_request_id is None:
                continue  # an unknown-outcome push: only a callback or a person can tell
            try:
                answer = await self.gateway.stk_query(checkout_request_id)
            except MpesaError as exc:
                logger.info("stk query failed", extra={"error": type(exc).__name__})
                continue
            if answer.status not in (StkStatus.succeeded, StkStatus.failed):
                continue
            outcome = Outcome(
                status=answer.status,
                result_code=answer.result_code,
                result_desc=answer.result_desc,
                from_callback=False,
            )
            async with self.sessions() as session, session.begin():
                payment = await PaymentRepository(session).get_for_update(payment_id)
                if (
                    payment is not None
                    and await self._settle(session, payment, outcome) != "pending"
                ):
                    settled += 1
        return settled + flagged

    async def _flag_stale(self, session: AsyncSession) -> int:
        cutoff = _now() - timedelta(seconds=self.settings.payment_review_after_seconds)
        result = await session.execute(
            update(Payment)
            .where(Payment.status == PaymentStatus.pending.value, Payment.created_at < cutoff)
            .values(
                status=PaymentStatus.needs_review.value,
                completed_at=func.now(),
                review_reason="no conclusive answer from M-Pesa in time",
            )
            .returning(Payment.id)
        )
        return len(result.all())


def _outcome(callback: StkCallback) -> Outcome:
    return Outcome(
        status=callback.status,
        result_code=callback.result_code_text,
        result_desc=callback.result_desc,
        amount=callback.amount,
        receipt=callback.receipt,
    )


def _ip_allowed(source_ip: str | None, allowed: list[str]) -> bool:
    if source_ip is None:
        return False
    try:
        address = ipaddress.ip_address(source_ip)
    except ValueError:
        return False
    for entry in allowed:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False
