from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio.to_thread
import segno
from pydantic import TypeAdapter
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tiketi.auth.dependencies import is_admin
from tiketi.events.exceptions import EventNotFound
from tiketi.events.repository import EventRepository
from tiketi.orders.models import OrderStatus
from tiketi.tickets.exceptions import AlreadyCheckedIn, TicketNotFound, TicketVoid, UnknownTicket
from tiketi.tickets.models import TicketStatus
from tiketi.tickets.repository import IssuanceRepository, TicketRepository
from tiketi.tickets.schemas import CheckIn, CheckInResult, TicketRead
from tiketi.users.models import User

_TIMESTAMP = TypeAdapter(datetime)  # the same ISO form as every response body


def ticket_view(row: Row[Any]) -> TicketRead:
    return TicketRead(
        id=row.id,
        event_id=row.event_id,
        order_id=row.order_id,
        ticket_type_id=row.ticket_type_id,
        ticket_type_name=row.ticket_type_name,
        code=row.code,
        status=row.status,
        checked_in_at=row.checked_in_at,
        holder_name=row.holder_name,
    )


def render_qr(code: str, fmt: str) -> bytes:
    """The QR image of a ticket code (blocking: call through a worker thread)."""
    import io

    qr = segno.make_qr(code, error="m")
    out = io.BytesIO()
    if fmt == "png":
        qr.save(out, kind="png", scale=8, border=4)
    else:
        qr.save(out, kind="svg", scale=8, border=4, xmldecl=False, title="tiketi ticket")
    return out.getvalue()


class TicketService:
    def __init__(self, session: AsyncSession) -> None:
        self.tickets = TicketRepository(session)
        self.events = EventRepository(session)

    async def _organizer_of(self, event_id: uuid.UUID) -> uuid.UUID | None:
        event = await self.events.get(event_id)
        return event.organizer_id if event is not None else None

    async def get(self, ticket_id: uuid.UUID, viewer: User) -> TicketRead:
        """Visible to its holder, the event's organizer and admins; 404 to everyone else."""
        row = await self.tickets.get(ticket_id)
        if row is None:
            raise TicketNotFound()
        if (
            row.holder_id != viewer.id
            and not is_admin(viewer)
            and await self._organizer_of(row.event_id) != viewer.id
        ):
            raise TicketNotFound()
        return ticket_view(row)

    async def list_mine(
        self, holder: User, *, event_id: uuid.UUID | None, cursor: str | None, limit: int
    ) -> tuple[list[TicketRead], str | None]:
        rows, next_cursor = await self.tickets.list_by_holder(
            holder.id, event_id=event_id, cursor=cursor, limit=limit
        )
        return [ticket_view(r) for r in rows], next_cursor

    async def qr(self, ticket_id: uuid.UUID, holder: User, fmt: str) -> bytes:
        row = await self.tickets.get(ticket_id)
        if row is None or row.holder_id != holder.id:
            raise TicketNotFound()
        code: str = row.code
        image: bytes = await anyio.to_thread.run_sync(render_qr, code, fmt)
        return image

    async def check_in(self, scanner: User, data: CheckIn) -> CheckInResult:
        """Admit a ticket at the gate exactly once, even when two scanners send it together."""
        organizer = await self._organizer_of(data.event_id)
        if organizer is None or not (organizer == scanner.id or is_admin(scanner)):
            raise EventNotFound()
        admitted = await self.tickets.check_in(
            event_id=data.event_id, code=data.code, scanner_id=scanner.id
        )
        row = await self.tickets.by_code(data.event_id, data.code)
        if row is None:
            raise UnknownTicket()
        if admitted is None:
            if row.status == TicketStatus.void.value:
                raise TicketVoid()
            scanned_by = await self.tickets.scanner_name(row.checked_in_by)
            scanned_at = _TIMESTAMP.dump_python(row.checked_in_at, mode="json")
            raise AlreadyCheckedIn(
                f"Already checked in at {scanned_at}" + (f" by {scanned_by}" if scanned_by else ""),
                extra={"checked_in_at": scanned_at, "checked_in_by": scanned_by},
            )
        return CheckInResult(ticket=ticket_view(row))


@dataclass(frozen=True)
class Fulfilment:
    """What a confirmed payment did to its order: tickets issued, or the status that stopped it
    (`expired` here means the hold lapsed and the capacity is gone)."""

    issued: bool
    order_status: str


async def fulfil_paid_order(
    conn: AsyncConnection, order_id: uuid.UUID, *, only_pending: bool = False
) -> Fulfilment:
    """Money arrived for `order_id`: settle it and issue one ticket per admission, in the
    caller's transaction, on a Core connection (the payment callback's fast path).

    A pending order is paid and its hold becomes a sale. An order whose hold already expired
    is sold again only if capacity remains, all lines or none (a savepoint) — never oversold.
    Any other order (paid, cancelled, ...) issues nothing. Idempotent: only the transition
    from pending/expired issues, under the order's row lock. `only_pending`: an expired order
    issues nothing either (free orders, paid in the transaction that holds them).
    """
    issuance = IssuanceRepository(conn)
    order = await issuance.mark_paid(order_id, from_status=OrderStatus.pending.value)
    if order is not None:
        await issuance.sell_held_and_issue(order)
        return Fulfilment(issued=True, order_status=OrderStatus.paid.value)
    status = await issuance.status_for_update(order_id)
    if status != OrderStatus.expired.value or only_pending:
        return Fulfilment(issued=False, order_status=status or "missing")
    savepoint = await conn.begin_nested()
    try:
        order = await issuance.mark_paid(order_id, from_status=OrderStatus.expired.value)
        if order is not None and await issuance.retake_as_sales(order):
            await issuance.issue(order)
            await savepoint.commit()
            return Fulfilment(issued=True, order_status=OrderStatus.paid.value)
        await savepoint.rollback()
    except BaseException:
        await savepoint.rollback()
        raise
    return Fulfilment(issued=False, order_status=status)
