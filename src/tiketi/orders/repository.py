"""Every query of the purchase path: Core statements, fewest round trips, hot row touched last."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Uuid, and_, any_, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from tiketi.core.errors import sqlstate
from tiketi.core.repository import AnyRow, keyset_page
from tiketi.events.models import Event, TicketType
from tiketi.orders.models import Order, OrderItem, OrderStatus

# The SQLSTATEs `tiketi_place_order` (migration 0009) refuses with; DETAIL carries the figure.
_REFUSALS = {
    "TK001": "pending_orders",
    "TK002": "tickets_per_event",
    "TK003": "sold_out",
    "TK004": "not_on_sale",
}

_PLACE_ORDER = text(
    "SELECT * FROM tiketi_place_order(:order_id, :buyer_id, :event_id, :total,"
    " CAST(:ttl AS interval), CAST(:type_ids AS uuid[]), CAST(:names AS text[]),"
    " CAST(:quantities AS integer[]), CAST(:prices AS integer[]), :max_pending, :max_tickets)"
)


# Built once: this runs on every hold, and building a select (and its cache key) costs more
# CPU than executing it.
_TIERS_FOR_HOLD = (
    select(
        Event.status.label("event_status"),
        Event.starts_at,
        Event.ends_at,
        TicketType.id,
        TicketType.event_id,
        TicketType.name,
        TicketType.price,
        TicketType.max_per_order,
        TicketType.sales_start,
        TicketType.sales_end,
        (TicketType.quantity - TicketType.sold - TicketType.held).label("available"),
    )
    .select_from(Event)
    .outerjoin(
        TicketType,
        and_(
            TicketType.event_id == Event.id,
            TicketType.id == any_(bindparam("type_ids", type_=ARRAY(Uuid()))),
        ),
    )
    .where(Event.id == bindparam("event_id", type_=Uuid()))
)


class PlacementRefused(Exception):
    """The database refused the order: `reason` is one of `_REFUSALS`' values, `detail` the
    figure (orders or tickets the buyer already has) or the tier id concerned."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


class OrderRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- holding ---------------------------------------------------------------------------

    async def tiers_for_hold(
        self, event_id: uuid.UUID, type_ids: Sequence[uuid.UUID]
    ) -> tuple[AnyRow | None, dict[uuid.UUID, AnyRow]]:
        """The event and the requested tiers of it, read in one round trip (no locks)."""
        rows = (
            await self.session.execute(
                _TIERS_FOR_HOLD, {"event_id": event_id, "type_ids": list(type_ids)}
            )
        ).all()
        if not rows:
            return None, {}
        return rows[0], {r.id: r for r in rows if r.id is not None}

    async def place(
        self,
        *,
        buyer_id: uuid.UUID,
        event_id: uuid.UUID,
        total: int,
        ttl: timedelta,
        lines: Sequence[tuple[uuid.UUID, str, int, int]],
        max_pending: int,
        max_tickets: int,
    ) -> AnyRow:
        """The new pending order's row, with its items and holds, in one statement
        (`tiketi_place_order`): the buyer's caps checked under their row lock, then one
        conditional UPDATE per tier, in id order. Raises `PlacementRefused`; a refusal leaves
        nothing behind."""
        try:
            result = await self.session.execute(
                _PLACE_ORDER,
                {
                    "order_id": uuid.uuid4(),
                    "buyer_id": buyer_id,
                    "event_id": event_id,
                    "total": total,
                    "ttl": ttl,
                    "type_ids": [type_id for type_id, _, _, _ in lines],
                    "names": [name for _, name, _, _ in lines],
                    "quantities": [quantity for _, _, quantity, _ in lines],
                    "prices": [price for _, _, _, price in lines],
                    "max_pending": max_pending,
                    "max_tickets": max_tickets,
                },
            )
        except DBAPIError as error:
            reason = _REFUSALS.get(sqlstate(error) or "")
            if reason is None:
                raise
            cause = getattr(error.orig, "__cause__", None)
            raise PlacementRefused(reason, str(getattr(cause, "detail", "") or "")) from None
        return result.one()

    # -- settling --------------------------------------------------------------------------

    async def close_pending(self, order_id: uuid.UUID, status: OrderStatus) -> bool:
        """pending → expired/cancelled, once: only the transition that happens releases."""
        result = await self.session.execute(
            update(Order)
            .where(Order.id == order_id, Order.status == OrderStatus.pending.value)
            .values(status=status.value, closed_at=func.now())
            .returning(Order.id)
        )
        return result.first() is not None

    async def release_holds(self, order_ids: Sequence[uuid.UUID]) -> None:
        if not order_ids:
            return
        await self.session.execute(
            text(
                "UPDATE ticket_types t SET held = t.held - x.quantity FROM ("
                " SELECT ticket_type_id, sum(quantity) AS quantity FROM order_items"
                " WHERE order_id = ANY(:ids) GROUP BY ticket_type_id) x"
                " WHERE t.id = x.ticket_type_id"
            ),
            {"ids": list(order_ids)},
        )

    async def expire_stale(self, *, limit: int, extra_guard: Any = None) -> list[uuid.UUID]:
        """Claim up to `limit` overdue pending orders (SKIP LOCKED: many workers, no overlap)
        and mark them expired; the caller releases their holds in the same transaction."""
        stale = (
            select(Order.id)
            .where(Order.status == OrderStatus.pending.value, Order.expires_at < func.now())
            .order_by(Order.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        if extra_guard is not None:
            stale = stale.where(extra_guard)
        claimed = stale.cte("claimed")
        result = await self.session.execute(
            update(Order)
            .where(Order.id == claimed.c.id)
            .values(status=OrderStatus.expired.value, closed_at=func.now())
            .returning(Order.id)
        )
        return [row.id for row in result]

    async def extend_hold(self, order_id: uuid.UUID, until: datetime) -> None:
        await self.session.execute(
            update(Order)
            .where(Order.id == order_id, Order.expires_at < until)
            .values(expires_at=until)
        )

    # -- event cancellation ----------------------------------------------------------------

    async def pending_of_event(self, event_id: uuid.UUID) -> list[uuid.UUID]:
        result = await self.session.execute(
            select(Order.id)
            .where(Order.event_id == event_id, Order.status == OrderStatus.pending.value)
            .with_for_update()
        )
        return [r.id for r in result]

    async def cancel_many(self, order_ids: Sequence[uuid.UUID]) -> None:
        await self.session.execute(
            update(Order)
            .where(Order.id.in_(list(order_ids)), Order.status == OrderStatus.pending.value)
            .values(status=OrderStatus.cancelled.value, closed_at=func.now())
        )

    async def mark_refund_pending(self, event_id: uuid.UUID) -> int:
        result = await self.session.execute(
            update(Order)
            .where(Order.event_id == event_id, Order.status == OrderStatus.paid.value)
            .values(status=OrderStatus.refund_pending.value)
            .returning(Order.id)
        )
        return len(result.all())

    # -- reading ---------------------------------------------------------------------------

    async def get(self, order_id: uuid.UUID) -> AnyRow | None:
        result = await self.session.execute(select(Order.__table__).where(Order.id == order_id))
        return result.one_or_none()

    async def get_for_update(self, order_id: uuid.UUID) -> AnyRow | None:
        result = await self.session.execute(
            select(Order.__table__).where(Order.id == order_id).with_for_update()
        )
        return result.one_or_none()

    async def items_of(self, order_ids: Sequence[uuid.UUID]) -> Sequence[AnyRow]:
        result = await self.session.execute(
            select(OrderItem.__table__)
            .where(OrderItem.order_id.in_(list(order_ids)))
            .order_by(OrderItem.order_id, OrderItem.name)
        )
        return result.all()

    async def list_by_buyer(
        self, buyer_id: uuid.UUID, *, cursor: str | None, limit: int
    ) -> tuple[list[AnyRow], str | None]:
        return await keyset_page(
            self.session,
            select(Order.__table__).where(Order.buyer_id == buyer_id),
            order=[Order.created_at, Order.id],
            key_types=(datetime, uuid.UUID),
            row_key=lambda r: [r.created_at, r.id],
            cursor=cursor,
            limit=limit,
            descending=True,
            scalars=False,
        )
