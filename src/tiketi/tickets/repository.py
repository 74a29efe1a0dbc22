from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tiketi.core.repository import AnyRow, AnySelect, keyset_page
from tiketi.events.models import TicketType
from tiketi.tickets.models import Ticket, TicketStatus
from tiketi.users.models import User

CODE_BYTES = 18  # 144 random bits, 24 URL-safe characters


def new_ticket_code() -> str:
    return secrets.token_urlsafe(CODE_BYTES)


def ticket_select() -> AnySelect:
    """Ticket rows with the names the API shows (tier name, holder name)."""
    return (
        select(
            Ticket.id,
            Ticket.event_id,
            Ticket.order_id,
            Ticket.ticket_type_id,
            TicketType.name.label("ticket_type_name"),
            Ticket.code,
            Ticket.status,
            Ticket.checked_in_at,
            Ticket.checked_in_by,
            Ticket.holder_id,
            Ticket.created_at,
            func.concat(User.first_name, " ", User.last_name).label("holder_name"),
        )
        .join(TicketType, TicketType.id == Ticket.ticket_type_id)
        .join(User, User.id == Ticket.holder_id)
    )


class TicketRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def of_orders(self, order_ids: Sequence[uuid.UUID]) -> Sequence[AnyRow]:
        result = await self.session.execute(
            ticket_select()
            .where(Ticket.order_id.in_(list(order_ids)))
            .order_by(Ticket.order_id, TicketType.sort_order, Ticket.code)
        )
        return result.all()

    async def get(self, ticket_id: uuid.UUID) -> AnyRow | None:
        result = await self.session.execute(ticket_select().where(Ticket.id == ticket_id))
        return result.one_or_none()

    async def by_code(self, event_id: uuid.UUID, code: str) -> AnyRow | None:
        result = await self.session.execute(
            ticket_select().where(Ticket.code == code, Ticket.event_id == event_id)
        )
        return result.one_or_none()

    async def list_by_holder(
        self, holder_id: uuid.UUID, *, event_id: uuid.UUID | None, cursor: str | None, limit: int
    ) -> tuple[list[AnyRow], str | None]:
        stmt = ticket_select().where(Ticket.holder_id == holder_id)
        if event_id is not None:
            stmt = stmt.where(Ticket.event_id == event_id)
        return await keyset_page(
            self.session,
            stmt,
            order=[Ticket.created_at, Ticket.id],
            key_types=(datetime, uuid.UUID),
            row_key=lambda r: [r.created_at, r.id],
            cursor=cursor,
            limit=limit,
            descending=True,
            scalars=False,
        )

    async def check_in(
        self, *, event_id: uuid.UUID, code: str, scanner_id: uuid.UUID
    ) -> uuid.UUID | None:
        """valid → checked_in in one conditional UPDATE: of two scanners, exactly one admits."""
        result = await self.session.execute(
            update(Ticket)
            .where(
                Ticket.code == code,
                Ticket.event_id == event_id,
                Ticket.status == TicketStatus.valid.value,
            )
            .values(
                status=TicketStatus.checked_in.value,
                checked_in_at=func.now(),
                checked_in_by=scanner_id,
            )
            .returning(Ticket.id)
        )
        row = result.first()
        return row.id if row else None

    async def scanner_name(self, user_id: uuid.UUID | None) -> str | None:
        if user_id is None:
            return None
        result = await self.session.execute(
            select(func.concat(User.first_name, " ", User.last_name)).where(User.id == user_id)
        )
        return result.scalar_one_or_none()

    async def void_for_event(self, event_id: uuid.UUID) -> int:
        result = await self.session.execute(
            update(Ticket)
            .where(Ticket.event_id == event_id, Ticket.status == TicketStatus.valid.value)
            .values(status=TicketStatus.void.value)
            .returning(Ticket.id)
        )
        return len(result.all())


# -- issuance over a Core connection (the payment callback's fast path) ------------------------

_MARK_PAID = text(
    "UPDATE orders SET status = 'paid', paid_at = now(), updated_at = now()"
    " WHERE id = :order_id AND status = :from_status"
    " RETURNING id, event_id, buyer_id,"
    " ARRAY(SELECT i.ticket_type_id FROM order_items i WHERE i.order_id = orders.id"
    "  ORDER BY i.ticket_type_id) AS type_ids,"
    " ARRAY(SELECT i.quantity FROM order_items i WHERE i.order_id = orders.id"
    "  ORDER BY i.ticket_type_id) AS quantities"
)
_ORDER_STATUS_FOR_UPDATE = text("SELECT status FROM orders WHERE id = :order_id FOR UPDATE")
# The hold becomes a sale and the tickets are written by one statement: the tier's counter row
# is the hot row every settlement for the event queues on, so it is touched by the last
# statement before COMMIT (held -= q, sold += q; the availability trigger NOTIFYs).
_SELL_HELD_AND_ISSUE = text(
    "WITH sale AS ("
    " UPDATE ticket_types t SET held = t.held - i.quantity, sold = t.sold + i.quantity"
    " FROM order_items i WHERE i.order_id = :order_id AND t.id = i.ticket_type_id)"
    " INSERT INTO tickets (order_id, ticket_type_id, event_id, holder_id, code)"
    " SELECT :order_id, x.type_id, :event_id, :holder_id, x.code"
    " FROM unnest(CAST(:type_ids AS uuid[]), CAST(:codes AS text[])) AS x(type_id, code)"
)
_ISSUE = text(
    "INSERT INTO tickets (order_id, ticket_type_id, event_id, holder_id, code)"
    " SELECT :order_id, x.type_id, :event_id, :holder_id, x.code"
    " FROM unnest(CAST(:type_ids AS uuid[]), CAST(:codes AS text[])) AS x(type_id, code)"
)
_RETAKE = text(
    "UPDATE ticket_types t SET sold = t.sold + i.quantity"
    " FROM order_items i WHERE i.order_id = :order_id AND t.id = i.ticket_type_id"
    " AND t.sold + t.held + i.quantity <= t.quantity RETURNING t.id"
)


@dataclass(frozen=True)
class PaidOrder:
    """An order just marked paid, with what its tickets need (one per admission)."""

    id: uuid.UUID
    event_id: uuid.UUID
    buyer_id: uuid.UUID
    lines: tuple[tuple[uuid.UUID, int], ...]  # (ticket type, quantity), sorted by type

    def ticket_params(self) -> dict[str, Any]:
        type_ids = [type_id for type_id, quantity in self.lines for _ in range(quantity)]
        return {
            "order_id": self.id,
            "event_id": self.event_id,
            "holder_id": self.buyer_id,
            "type_ids": type_ids,
            "codes": [new_ticket_code() for _ in type_ids],
        }


class IssuanceRepository:
    """Settling an order and issuing its tickets with the fewest round trips, on a Core
    connection inside the caller's transaction (free orders, and the M-Pesa callback's hot
    path), in two or three statements."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def mark_paid(self, order_id: uuid.UUID, *, from_status: str) -> PaidOrder | None:
        """`from_status` → paid, once (row-locked); None if the order is not in that status."""
        row = (
            await self.conn.execute(_MARK_PAID, {"order_id": order_id, "from_status": from_status})
        ).first()
        if row is None:
            return None
        return PaidOrder(
            id=row.id,
            event_id=row.event_id,
            buyer_id=row.buyer_id,
            lines=tuple(zip(row.type_ids, row.quantities, strict=True)),
        )

    async def status_for_update(self, order_id: uuid.UUID) -> str | None:
        return (
            await self.conn.execute(_ORDER_STATUS_FOR_UPDATE, {"order_id": order_id})
        ).scalar_one_or_none()

    async def sell_held_and_issue(self, order: PaidOrder) -> None:
        """The order's hold becomes a sale and one ticket per admission is written."""
        await self.conn.execute(_SELL_HELD_AND_ISSUE, order.ticket_params())

    async def retake_as_sales(self, order: PaidOrder) -> bool:
        """For an order whose hold lapsed: True if every line could be sold again (the caller
        rolls back to a savepoint on False: some lines may have been taken)."""
        retaken = (await self.conn.execute(_RETAKE, {"order_id": order.id})).all()
        return len(retaken) == len(order.lines)

    async def issue(self, order: PaidOrder) -> None:
        await self.conn.execute(_ISSUE, order.ticket_params())
