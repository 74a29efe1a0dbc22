from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from tiketi.core.database import Base, Timestamps, UUIDPrimaryKey


class PaymentStatus(StrEnum):
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"
    needs_review = "needs_review"
    refunded = "refunded"


class Payment(UUIDPrimaryKey, Timestamps, Base):
    """One STK push we started. Terminal states (everything but pending) never change
    automatically; `needs_review` means a person must look (usually a refund is due)."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed', 'needs_review', 'refunded')",
            name="status",
        ),
        CheckConstraint("amount > 0", name="amount"),
        CheckConstraint("provider IN ('mpesa')", name="provider"),
        # One payment in flight per order: a second prompt could take the money twice.
        Index(
            "uq_payments_order_id_pending",
            "order_id",
            unique=True,
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_payments_payer_id_created_at", "payer_id", "created_at"),
        # The reconciliation job's scan.
        Index(
            "ix_payments_pending_next_query_at",
            "next_query_at",
            postgresql_where=text("status = 'pending'"),
        ),
        UniqueConstraint("payer_id", "idempotency_key"),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("orders.id", ondelete="RESTRICT"), index=True
    )
    payer_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT")
    )
    provider: Mapped[str] = mapped_column(String(16), server_default=text("'mpesa'"))
    amount: Mapped[int] = mapped_column(Integer)
    phone_number: Mapped[str] = mapped_column(String(12))
    account_reference: Mapped[str] = mapped_column(String(12))
    status: Mapped[str] = mapped_column(String(16), server_default=text("'pending'"))
    merchant_request_id: Mapped[str | None] = mapped_column(String(64))
    checkout_request_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    mpesa_receipt: Mapped[str | None] = mapped_column(String(32), unique=True)
    result_code: Mapped[str | None] = mapped_column(String(32))
    result_desc: Mapped[str | None] = mapped_column(String(500))
    customer_message: Mapped[str | None] = mapped_column(String(500))
    review_reason: Mapped[str | None] = mapped_column(String(500))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    query_attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_query_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PaymentCallback(UUIDPrimaryKey, Base):
    """Every body POSTed to the callback URL, stored before anything is decided: the
    evidence for reconciliation, disputes and refunds, matched or not."""

    __tablename__ = "payment_callbacks"

    payment_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("payments.id", ondelete="SET NULL"), index=True
    )
    checkout_request_id: Mapped[str | None] = mapped_column(String(64), index=True)
    source_ip: Mapped[str | None] = mapped_column(String(64))
    body: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    raw: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
