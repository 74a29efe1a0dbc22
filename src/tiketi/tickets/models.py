from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, String, func, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from tiketi.core.database import Base, UUIDPrimaryKey


class TicketStatus(StrEnum):
    valid = "valid"
    checked_in = "checked_in"
    void = "void"


class Ticket(UUIDPrimaryKey, Base):
    """One admission. The `code` (≥ 128 random bits) is what the QR carries and the gate scans."""

    __tablename__ = "tickets"
    __table_args__ = (
        CheckConstraint("status IN ('valid', 'checked_in', 'void')", name="status"),
        CheckConstraint(
            "(status = 'checked_in') = (checked_in_at IS NOT NULL)", name="checked_in_at"
        ),
        Index("ix_tickets_holder_id_created_at", "holder_id", "created_at"),
        Index("ix_tickets_event_id_status", "event_id", "status"),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("orders.id", ondelete="RESTRICT"), index=True
    )
    ticket_type_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("ticket_types.id", ondelete="RESTRICT")
    )
    event_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("events.id", ondelete="RESTRICT")
    )
    holder_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT")
    )
    code: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), server_default=text("'valid'"))
    checked_in_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    checked_in_by: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
