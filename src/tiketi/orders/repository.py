"""Every query of the purchase path: Core statements, fewest round trips, hot row touched last."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tiketi.core.errors import sqlstate
from tiketi.core.repository import AnyRow, keyset_page
from tiketi.orders.models import Order, OrderItem, OrderStatus

# The SQLSTATEs `tiketi_place_order` (migration 0010) refuses with; DETAIL, where given, is a
# figure, a tier id or a small JSON object (`PlacementRefused.facts`).
_REFUSALS = {
    "TK001": "pending_orders",
    "TK002": "tickets_per_event",
    "TK003": "sold_out",
    "TK004": "not_on_sale",
    "TK005": "event_not_found",
    "TK006": "event_not_on_sale",
    "TK007": "not_in_event",
    "TK008": "over_max_per_order",
    "TK009": "free_order",
    "TK010": "token_revoked",
    "TK011": "account_deactivated",
}

_PLACE_ORDER = text(
    "SELECT * FROM tiketi_place_order(:order_id, :buyer_id, :token_version, :event_id,"
    " CAST(:type_ids AS uuid[]), CAST(:quantities AS integer[]), CAST(:ttl AS interval),"
    " :max_pending, :max_tickets, :allow_free)"
)


class PlacementRefused(Exception):
    """The database refused the order: `reason` is one of `_REFUSALS`' values, `detail` the
    figure (orders or tickets the buyer already has), the tier id or the JSON object that
    migration 0010 documents for it."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    @property
    def facts(self) -> dict[str, Any]:
        """The DETAIL's JSON object ({} when it is a plain figure or empty)."""
        if not self.detail.startswith("{"):
            return {}
        facts: dict[str, Any] = json.loads(self.detail)
        return facts


@dataclass(frozen=True, slots=True)
class Placement:
    """A new pending order as `tiketi_place_order` wrote it; items in the order of the lines."""

    total: int
    expires_at: datetime
    created_at: datetime
    names: list[str]
    prices: list[int]


async def place_order(
    conn: AsyncConnection,
    *,
    order_id: uuid.UUID,
    buyer_id: uuid.UUID,
    token_version: int,
    event_id: uuid.UUID,
    lines: Sequence[tuple[uuid.UUID, int]],
    ttl: timedelta,
    max_pending: int,
    max_tickets: int,
    allow_free: bool,
) -> Placement:
    """Check and write a whole order in one statement (`tiketi_place_order`): the buyer's
    token still current, the event and every line on sale and within limits, the buyer's caps
    under their row lock, then the order, its items and one conditional UPDATE per tier, in id
    order. Raises `PlacementRefused`; a refusal leaves nothing behind. In an autocommit
    connection the statement commits on the server the moment it ends: the hot ticket row is
    not kept locked while this process gets round to sending COMMIT."""
    try:
        result = await conn.execute(
            _PLACE_ORDER,
            {
                "order_id": order_id,
                "buyer_id": buyer_id,
                "token_version": token_version,
                "event_id": event_id,
                "type_ids": [type_id for type_id, _ in lines],
                "quantities": [quantity for _, quantity in lines],
                "ttl": ttl,
                "max_pending": max_pending,
                "max_tickets": max_tickets,
                "allow_free": allow_free,
            },
        )
    except DBAPIError as error:
        reason = _REFUSALS.get(sqlstate(error) or "")
        if reason is None:
            raise
        cause = getattr(error.orig, "__cause__", None)
        raise PlacementRefused(reason, str(getattr(cause, "detail", "") or "")) from None
    total, expires_at, created_at, names, prices = result.one()
    return Placement(total, expires_at, created_at, list(names), list(prices))


class OrderRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

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
