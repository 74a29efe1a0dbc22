"""Every query of the purchase path: Core statements, fewest round trips, hot row touched last."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, literal_column, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from tiketi.core.repository import AnyRow, keyset_page
from tiketi.events.models import Event, EventStatus, TicketType
from tiketi.orders.models import Order, OrderItem, OrderStatus
from tiketi.users.models import User

_ON_SALE_NOW = and_(
    or_(TicketType.sales_start.is_(None), TicketType.sales_start <= func.now()),
    or_(TicketType.sales_end.is_(None), TicketType.sales_end > func.now()),
    exists().where(
        Event.id == TicketType.event_id,
        Event.status == EventStatus.published.value,
        Event.starts_at > func.now(),
    ),
)

_INSERT_ORDER = text(
    "WITH new_order AS ("
    " INSERT INTO orders (id, buyer_id, event_id, total, status, expires_at)"
    " VALUES (:id, :buyer_id, :event_id, :total, 'pending', now() + CAST(:ttl AS interval))"
    " RETURNING *"
    "), new_items AS ("
    " INSERT INTO order_items (order_id, ticket_type_id, name, quantity, unit_price)"
    " SELECT new_order.id, line.type_id, line.name, line.quantity, line.unit_price"
    " FROM new_order, unnest(CAST(:type_ids AS uuid[]), CAST(:names AS text[]),"
    " CAST(:quantities AS integer[]), CAST(:prices AS integer[]))"
    " AS line(type_id, name, quantity, unit_price)"
    ")"
    " SELECT * FROM new_order"
)


class OrderRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- holding ---------------------------------------------------------------------------

    async def lock_buyer(self, user_id: uuid.UUID) -> None:
        """Serialises one buyer's purchases so the anti-hoarding caps cannot be raced."""
        await self.session.execute(
            select(User.id).where(User.id == user_id).with_for_update(key_share=True)
        )

    async def buyer_exposure(self, user_id: uuid.UUID, event_id: uuid.UUID) -> tuple[int, int]:
        """(pending orders of the buyer, tickets they hold in pending orders for this event)."""
        pending = and_(Order.buyer_id == user_id, Order.status == OrderStatus.pending.value)
        orders = select(func.count()).select_from(Order).where(pending).scalar_subquery()
        tickets = (
            select(func.coalesce(func.sum(OrderItem.quantity), 0))
            .join(Order, Order.id == OrderItem.order_id)
            .where(pending, Order.event_id == event_id)
            .scalar_subquery()
        )
        row = (await self.session.execute(select(orders, tickets))).one()
        return int(row[0]), int(row[1])

    async def tiers_for_hold(
        self, event_id: uuid.UUID, type_ids: Sequence[uuid.UUID]
    ) -> tuple[AnyRow | None, dict[uuid.UUID, AnyRow]]:
        """The event and the requested tiers of it, read in one round trip (no locks)."""
        rows = (
            await self.session.execute(
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
                    and_(TicketType.event_id == Event.id, TicketType.id.in_(list(type_ids))),
                )
                .where(Event.id == event_id)
            )
        ).all()
        if not rows:
            return None, {}
        return rows[0], {r.id: r for r in rows if r.id is not None}

    async def insert_order(
        self,
        *,
        buyer_id: uuid.UUID,
        event_id: uuid.UUID,
        total: int,
        ttl: timedelta,
        lines: Sequence[tuple[uuid.UUID, str, int, int]],
    ) -> AnyRow:
        """The new pending order's row (id, created_at, expires_at...), inserted with its
        items in one statement."""
        result = await self.session.execute(
            _INSERT_ORDER,
            {
                "id": uuid.uuid4(),
                "buyer_id": buyer_id,
                "event_id": event_id,
                "total": total,
                "ttl": ttl,
                "type_ids": [type_id for type_id, _, _, _ in lines],
                "names": [name for _, name, _, _ in lines],
                "quantities": [quantity for _, _, quantity, _ in lines],
                "prices": [price for _, _, _, price in lines],
            },
        )
        return result.one()

    async def hold(self, type_id: uuid.UUID, quantity: int) -> bool:
        """One atomic conditional UPDATE: no read-then-write race can oversell."""
        result = await self.session.execute(
            update(TicketType)
            .where(
                TicketType.id == type_id,
                TicketType.sold + TicketType.held + quantity <= TicketType.quantity,
                _ON_SALE_NOW,
            )
            .values(held=TicketType.held + quantity)
            .returning(TicketType.id)
        )
        return result.first() is not None

    async def is_on_sale(self, type_id: uuid.UUID) -> bool:
        result: Any = await self.session.execute(
            select(literal_column("1")).where(TicketType.id == type_id, _ON_SALE_NOW)
        )
        return result.first() is not None

    # -- settling --------------------------------------------------------------------------

    async def mark_paid(self, order_id: uuid.UUID, *, from_statuses: Sequence[str]) -> bool:
        result = await self.session.execute(
            update(Order)
            .where(Order.id == order_id, Order.status.in_(list(from_statuses)))
            .values(status=OrderStatus.paid.value, paid_at=func.now())
            .returning(Order.id)
        )
        return result.first() is not None

    async def convert_holds_to_sales(self, order_id: uuid.UUID) -> None:
        """held -= q, sold += q for every line of the order (its hold becomes a sale)."""
        await self.session.execute(
            text(
                "UPDATE ticket_types t SET held = t.held - i.quantity, sold = t.sold + i.quantity"
                " FROM order_items i WHERE i.order_id = :order_id AND t.id = i.ticket_type_id"
            ),
            {"order_id": order_id},
        )

    async def retake_as_sales(self, order_id: uuid.UUID) -> bool:
        """For an order whose hold lapsed: sell its lines again only if capacity remains."""
        result: Any = await self.session.execute(
            text(
                "UPDATE ticket_types t SET sold = t.sold + i.quantity"
                " FROM order_items i WHERE i.order_id = :order_id AND t.id = i.ticket_type_id"
                " AND t.sold + t.held + i.quantity <= t.quantity RETURNING t.id"
            ),
            {"order_id": order_id},
        )
        retaken = len(result.all())
        lines = await self.session.execute(
            select(func.count()).select_from(OrderItem).where(OrderItem.order_id == order_id)
        )
        return retaken == int(lines.scalar_one())

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
