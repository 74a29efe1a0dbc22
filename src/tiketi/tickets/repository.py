from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from tiketi.core.repository import AnyRow, AnySelect, keyset_page
from tiketi.events.models import TicketType
from tiketi.orders.models import Order, OrderItem
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

    async def issue_for_order(self, order_id: uuid.UUID) -> int:
        """One ticket per admission of every line of the order."""
        lines = await self.session.execute(
            select(OrderItem.ticket_type_id, OrderItem.quantity, Order.event_id, Order.buyer_id)
            .join(Order, Order.id == OrderItem.order_id)
            .where(OrderItem.order_id == order_id)
        )
        rows = [
            {
                "order_id": order_id,
                "ticket_type_id": line.ticket_type_id,
                "event_id": line.event_id,
                "holder_id": line.buyer_id,
                "code": new_ticket_code(),
            }
            for line in lines
            for _ in range(line.quantity)
        ]
        if rows:
            await self.session.execute(insert(Ticket), rows)
        return len(rows)

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
