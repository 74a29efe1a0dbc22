"""Paying for an order with an M-Pesa STK push, and settling what Daraja tells us.

Unlike the rest of the API, these use cases open their own short transactions instead of the
request's session: the payment row must be committed *before* the push is sent (so a crash or
timeout mid-push leaves a record to reconcile), and no database connection may be held while
we wait up to ~45 s for Daraja.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from tiketi.auth.dependencies import is_admin
from tiketi.core.repository import AnyRow
from tiketi.core.settings import Settings
from tiketi.orders.exceptions import OrderNotFound
from tiketi.orders.models import OrderStatus
from tiketi.orders.repository import OrderRepository
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
from tiketi.payments.repository import PaymentRepository, SettlementRepository
from tiketi.payments.schemas import PaymentCreate, PaymentRead
from tiketi.tickets.service import fulfil_paid_order
from tiketi.users.models import User

logger = logging.getLogger("tiketi.payments")

TRANSACTION_DESC = "Tiketi"  # <= 13 characters, shown on the customer's PIN prompt
UNKNOWN_OUTCOME_MESSAGE = (
    "We could not confirm the payment request with M-Pesa. If a PIN prompt appears on your "
    "phone, complete it; we will confirm the payment shortly."
)
QUERY_BATCH = 20
RECEIPT_CONSTRAINT = "uq_payments_mpesa_receipt"


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
            unmatched = await payments.unmatched_callbacks(checkout_request_id)
            if unmatched:
                conn = await session.connection()
                for callback_id, raw in unmatched:
                    await self._settle_nested(
                        conn,
                        checkout_request_id,
                        _outcome(parse_stk_callback(raw)),
                        callback_id=callback_id,
                    )
                await session.refresh(payment)
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
        One pooled connection serves the whole delivery: the body is stored by a single
        INSERT outside any transaction (kept even if settling fails), then settled by a few
        statements in one transaction.
        """
        text = raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
        try:
            callback = parse_stk_callback(raw)
        except ValueError:
            callback = None
        async with self._engine.connect() as conn:
            callback_id = await SettlementRepository(conn).store_callback(
                raw=text,
                # jsonb refuses \u0000; such a body is kept as text only.
                as_json=callback is not None and "\\u0000" not in text,
                source_ip=source_ip,
                checkout_request_id=callback.checkout_request_id if callback else None,
            )
            if callback is None:
                raise MalformedCallback("The body is not a Daraja STK callback")
            label, _ = await self._settle_in_transaction(
                conn,
                callback.checkout_request_id,
                _outcome(callback),
                callback=callback,
                callback_id=callback_id,
            )
        logger.info(
            "stk callback", extra={"outcome": label, "result_code": callback.result_code_text}
        )
        return label

    @property
    def _engine(self) -> AsyncEngine:
        bind = self.sessions.kw.get("bind")
        if not isinstance(bind, AsyncEngine):
            raise TypeError("PaymentService needs a sessionmaker bound to an AsyncEngine")
        return bind

    async def _settle_in_transaction(
        self,
        conn: AsyncConnection,
        checkout_request_id: str,
        outcome: Outcome,
        *,
        callback: StkCallback | None = None,
        callback_id: uuid.UUID | None = None,
    ) -> tuple[str, uuid.UUID | None]:
        """`_settle` in a transaction of its own on `conn`. The receipt's unique index decides
        reuse: if another payment holds the receipt, the claim (the transaction's first write)
        fails, the attempt is rolled back and the answer settled again knowing it."""
        try:
            async with conn.begin():
                return await self._settle(
                    conn, checkout_request_id, outcome, callback=callback, callback_id=callback_id
                )
        except IntegrityError as error:
            if not _receipt_reused(error):
                raise
        async with conn.begin():
            return await self._settle(
                conn,
                checkout_request_id,
                outcome,
                callback=callback,
                callback_id=callback_id,
                receipt_reused=True,
            )

    async def _settle_nested(
        self,
        conn: AsyncConnection,
        checkout_request_id: str,
        outcome: Outcome,
        *,
        callback_id: uuid.UUID | None = None,
    ) -> tuple[str, uuid.UUID | None]:
        """`_settle` inside a transaction that already did other work: a savepoint, only when
        the answer carries a receipt that the unique index could refuse."""
        if outcome.receipt is None:
            return await self._settle(conn, checkout_request_id, outcome, callback_id=callback_id)
        try:
            async with conn.begin_nested():
                return await self._settle(
                    conn, checkout_request_id, outcome, callback_id=callback_id
                )
        except IntegrityError as error:
            if not _receipt_reused(error):
                raise
        return await self._settle(
            conn, checkout_request_id, outcome, callback_id=callback_id, receipt_reused=True
        )

    async def _settle(
        self,
        conn: AsyncConnection,
        checkout_request_id: str,
        outcome: Outcome,
        *,
        callback: StkCallback | None = None,
        callback_id: uuid.UUID | None = None,
        receipt_reused: bool = False,
    ) -> tuple[str, uuid.UUID | None]:
        """Apply a conclusive answer to the pending payment with this checkout id (and to its
        order), and record the callback's outcome. Returns (outcome label, payment id).

        Every write is conditional on the payment still being pending, so a duplicate or late
        answer changes nothing. The common case — a success for a known pending payment with
        the right amount and a fresh receipt — is claimed by one UPDATE (row lock, duplicate
        check, amount check and receipt in one); anything else is decided under the row lock.
        """
        payments = SettlementRepository(conn)
        recorded: str | None = None
        if outcome.status is StkStatus.succeeded:
            label, payment_id, recorded = await self._settle_success(
                payments, checkout_request_id, outcome, callback, callback_id, receipt_reused
            )
        else:
            status = (
                PaymentStatus.failed
                if outcome.status is StkStatus.failed
                else PaymentStatus.pending  # still processing or unknown: reconcile later
            )
            payment_id = await payments.conclude(
                checkout_request_id,
                status=status,
                result_code=outcome.result_code[:32],
                result_desc=outcome.result_desc[:500],
            )
            if payment_id is not None:
                label = status.value
            else:
                row = await payments.lock(checkout_request_id)
                payment_id = row.id if row is not None else None
                label = "duplicate" if row is not None else "unmatched"
        if callback_id is not None and recorded != label:
            await payments.mark_callback(callback_id, outcome=label, payment_id=payment_id)
        return label, payment_id

    async def _settle_success(
        self,
        payments: SettlementRepository,
        checkout_request_id: str,
        outcome: Outcome,
        callback: StkCallback | None,
        callback_id: uuid.UUID | None,
        receipt_reused: bool,
    ) -> tuple[str, uuid.UUID | None, str | None]:
        """(label, payment id, the outcome already recorded on the callback row or None)."""
        amount = _whole_shillings(outcome.amount)
        claimable = (
            not receipt_reused
            and (outcome.amount is None or amount is not None)
            and (outcome.receipt is not None or not outcome.from_callback)
        )
        if claimable:
            claimed = await payments.claim_success(
                checkout_request_id,
                amount=amount,
                receipt=outcome.receipt,
                result_code=outcome.result_code[:32],
                result_desc=outcome.result_desc[:500],
                callback_id=callback_id,
            )
            if claimed is not None:
                recorded = claimed.outcome if callback_id is not None else None
                if claimed.outcome == "duplicate":
                    return "duplicate", claimed.id, recorded
                label = await self._fulfil(payments, claimed.id, claimed.order_id)
                return label, claimed.id, recorded
        # Not claimed at once: unknown, settled meanwhile, or a problem; decide under the lock.
        payment = await payments.lock(checkout_request_id)
        if payment is None and callback is not None:
            payment = await self._adopt_orphan(payments, callback)
        if payment is None:
            return "unmatched", None, None
        if payment.status != PaymentStatus.pending.value:
            return "duplicate", payment.id, None
        problem = _success_problem(payment.amount, outcome, receipt_reused=receipt_reused)
        if problem is None:  # an adopted orphan (its amount matched by construction)
            claimed = await payments.claim_success(
                checkout_request_id,
                amount=None,
                receipt=outcome.receipt,
                result_code=outcome.result_code[:32],
                result_desc=outcome.result_desc[:500],
                callback_id=callback_id,
            )
            # Locked and pending: only 'succeeded' can come back.
            if claimed is None or claimed.outcome != "succeeded":
                return "duplicate", payment.id, None
            label = await self._fulfil(payments, claimed.id, claimed.order_id)
            return label, claimed.id, "succeeded" if callback_id is not None else None
        await payments.conclude(
            checkout_request_id,
            status=PaymentStatus.needs_review,
            result_code=outcome.result_code[:32],
            result_desc=outcome.result_desc[:500],
            review_reason=problem,
        )
        _log_review(payment.id, problem)
        return "needs_review", payment.id, None

    async def _adopt_orphan(
        self, payments: SettlementRepository, callback: StkCallback
    ) -> AnyRow | None:
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
        await payments.adopt(
            payment.id,
            checkout_request_id=callback.checkout_request_id,
            merchant_request_id=callback.merchant_request_id,
        )
        return payment

    async def _fulfil(
        self, payments: SettlementRepository, payment_id: uuid.UUID, order_id: uuid.UUID
    ) -> str:
        """Issue the tickets of a just-claimed payment's order. When the money cannot buy
        them, the payment needs review (a refund is due): never an oversold ticket."""
        fulfilment = await fulfil_paid_order(payments.conn, order_id)
        if fulfilment.issued:
            return "succeeded"
        if fulfilment.order_status == OrderStatus.expired.value:
            problem = "paid after the hold expired and the tickets are gone: refund due"
        else:
            problem = f"paid for an order that is {fulfilment.order_status}: refund due"
        await payments.flag_for_review(payment_id, problem)
        _log_review(payment_id, problem)
        return "needs_review"

    # -- reconciling -----------------------------------------------------------------------

    async def reconcile(self) -> int:
        """Ask Daraja about payments left pending past their prompt time; settle conclusive
        answers exactly like callbacks; flag the ones that never conclude for review."""
        async with self.sessions() as session, session.begin():
            flagged = await self._flag_stale(session)
            due = await PaymentRepository(session).claim_due_for_query(
                limit=QUERY_BATCH, backoff=timedelta(seconds=60)
            )
            claimed = [p.checkout_request_id for p in due]
        settled = 0
        for checkout_request_id in claimed:
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
            async with self._engine.connect() as conn:
                label, _ = await self._settle_in_transaction(conn, checkout_request_id, outcome)
            if label not in ("pending", "unmatched"):
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


def _whole_shillings(amount: Decimal | None) -> int | None:
    """The amount as an integer, or None if absent or fractional (never a payment of ours)."""
    if amount is None or amount != amount.to_integral_value():
        return None
    return int(amount)


def _success_problem(asked: int, outcome: Outcome, *, receipt_reused: bool) -> str | None:
    """Why a success for a pending payment must not issue tickets, if it must not."""
    if outcome.amount is not None and outcome.amount != Decimal(asked):
        return f"amount mismatch: asked {asked} KES, paid {outcome.amount} KES"
    if outcome.receipt is None:
        return "no M-Pesa receipt in the success callback" if outcome.from_callback else None
    if receipt_reused:
        return f"receipt {outcome.receipt} was already used by another payment"
    return None


def _receipt_reused(error: IntegrityError) -> bool:
    """The unique receipt index refused the claim (and nothing else did)."""
    cause = error.orig.__cause__ if error.orig is not None else None
    return getattr(cause, "constraint_name", None) == RECEIPT_CONSTRAINT


def _log_review(payment_id: uuid.UUID, reason: str) -> None:
    logger.error("payment needs review", extra={"payment_id": str(payment_id), "reason": reason})


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
