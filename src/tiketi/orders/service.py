from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from tiketi.auth.dependencies import is_admin
from tiketi.core.settings import Settings
from tiketi.events.exceptions import EventNotFound
from tiketi.events.models import EventStatus
from tiketi.orders.exceptions import (
    InvalidOrderItems,
    LimitExceeded,
    NotOnSale,
    OrderNotFound,
    OrderNotPending,
    SoldOut,
)
from tiketi.orders.models import OrderStatus
from tiketi.orders.repository import OrderRepository, PlacementRefused
from tiketi.orders.schemas import OrderCreate, OrderItemRead, OrderRead
from tiketi.orders.sold_out import SoldOutTiers
from tiketi.tickets.repository import TicketRepository
from tiketi.tickets.service import fulfil_paid_order, ticket_view
from tiketi.users.models import User


def _window_open(tier: Row[Any], now: datetime) -> bool:
    if tier.sales_start is not None and now < tier.sales_start:
        return False
    return not (tier.sales_end is not None and now >= tier.sales_end)


async def settle_event_cancellation(session: AsyncSession, event_id: uuid.UUID) -> None:
    """The event is cancelled: pending orders are cancelled (holds released), paid orders
    await a refund (`refund_pending`), and every valid ticket becomes void."""
    orders = OrderRepository(session)
    pending = await orders.pending_of_event(event_id)
    if pending:
        await orders.cancel_many(pending)
        await orders.release_holds(pending)
    await orders.mark_refund_pending(event_id)
    await TicketRepository(session).void_for_event(event_id)


class OrderService:
    def __init__(
        self, session: AsyncSession, settings: Settings, sold_out: SoldOutTiers | None = None
    ) -> None:
        self.session = session
        self.settings = settings
        self.sold_out = sold_out
        self.orders = OrderRepository(session)
        self.tickets = TicketRepository(session)

    async def place(
        self, buyer: User, data: OrderCreate, *, own_transaction: bool = False
    ) -> OrderRead:
        """Hold tickets for `buyer`: every line or none, never beyond capacity.

        Validation and the sold-out fast path read without locks; the write (caps, order,
        items, one conditional UPDATE per tier in id order) is one statement. With
        `own_transaction` the session is in autocommit (`get_placement_key`) and that
        statement commits on the server the moment it ends: the hot ticket row is not kept
        locked while this process gets round to sending COMMIT.
        """
        if self.sold_out is not None:
            requested = [(line.ticket_type_id, line.quantity) for line in data.items]
            if known := self.sold_out.answer(data.event_id, requested):
                raise self._sold_out(known.name, 0)
        now = datetime.now(UTC)
        ids = [line.ticket_type_id for line in data.items]
        event, tiers = await self.orders.tiers_for_hold(data.event_id, ids)
        if event is None or event.event_status == EventStatus.draft.value:
            raise EventNotFound()
        if event.event_status != EventStatus.published.value:
            raise NotOnSale(f"This event is {event.event_status}; tickets are not on sale")
        if event.starts_at <= now:
            raise NotOnSale("This event has already started; tickets are no longer on sale")

        lines: list[tuple[uuid.UUID, str, int, int]] = []
        for line in data.items:
            tier = tiers.get(line.ticket_type_id)
            if tier is None:
                raise InvalidOrderItems(
                    f"Ticket type {line.ticket_type_id} is not part of this event"
                )
            if line.quantity > tier.max_per_order:
                raise InvalidOrderItems(
                    f"At most {tier.max_per_order} {tier.name} tickets per order"
                )
            if not _window_open(tier, now):
                raise NotOnSale(f"{tier.name} tickets are not on sale now")
            if tier.available < line.quantity:
                if tier.available <= 0 and self.sold_out is not None:
                    self.sold_out.remember(
                        event_id=data.event_id,
                        tier_id=tier.id,
                        name=tier.name,
                        max_per_order=tier.max_per_order,
                    )
                raise self._sold_out(tier.name, tier.available)
            lines.append((tier.id, tier.name, line.quantity, tier.price))

        total = sum(q * price for _, _, q, price in lines)
        if own_transaction and total == 0:
            # A free order is paid in the same transaction as its hold: leave autocommit.
            await self.session.commit()
            await self.session.connection(execution_options={"isolation_level": "READ COMMITTED"})
        try:
            order = await self.orders.place(
                buyer_id=buyer.id,
                event_id=data.event_id,
                total=total,
                lines=lines,
                ttl=timedelta(seconds=self.settings.hold_ttl_seconds),
                max_pending=self.settings.max_pending_orders_per_user,
                max_tickets=self.settings.max_tickets_per_event_per_user,
            )
        except PlacementRefused as refusal:
            raise self._refusal(refusal, lines) from None
        if total == 0:
            await self.issue_tickets(order.id)
            return await self._read(order.id)
        return OrderRead(
            id=order.id,
            event_id=order.event_id,
            status=order.status,
            total=order.total,
            expires_at=order.expires_at,
            created_at=order.created_at,
            paid_at=None,
            items=[
                OrderItemRead(ticket_type_id=t, name=n, quantity=q, unit_price=p)
                for t, n, q, p in lines
            ],
            tickets=[],
        )

    @staticmethod
    def _sold_out(name: str, available: int | None) -> SoldOut:
        if not available:
            return SoldOut(f"{name} is sold out", extra={"ticket_type": name})
        return SoldOut(
            f"Only {available} {name} tickets are left",
            extra={"ticket_type": name, "available": available},
        )

    def _refusal(
        self, refusal: PlacementRefused, lines: list[tuple[uuid.UUID, str, int, int]]
    ) -> LimitExceeded | SoldOut | NotOnSale:
        """The API's answer to what `tiketi_place_order` refused (anti-hoarding caps first)."""
        if refusal.reason == "pending_orders":
            return LimitExceeded(
                f"You already have {refusal.detail} unpaid orders; pay or cancel one first"
            )
        if refusal.reason == "tickets_per_event":
            cap = self.settings.max_tickets_per_event_per_user
            return LimitExceeded(
                f"At most {cap} tickets per person may be held for one event"
                f" (you hold {refusal.detail})"
            )
        name = next((n for t, n, _, _ in lines if str(t) == refusal.detail), "This tier")
        if refusal.reason == "not_on_sale":
            return NotOnSale(f"{name} tickets are not on sale now")
        return self._sold_out(name, None)

    async def issue_tickets(self, order_id: uuid.UUID) -> bool:
        """Settle a pending order: paid, holds become sales, one ticket per admission.

        Runs in the caller's transaction (the payment callback's path does the same through
        `tickets.service.fulfil_paid_order`). Idempotent: an order that is no longer pending
        (already paid, say) issues nothing and returns False.
        """
        fulfilment = await fulfil_paid_order(
            await self.session.connection(), order_id, only_pending=True
        )
        return fulfilment.issued

    async def cancel(self, order_id: uuid.UUID, actor: User) -> OrderRead:
        """A pending order can be cancelled by its buyer (or an admin); the hold is released."""
        order = await self.orders.get_for_update(order_id)
        if order is None or not (order.buyer_id == actor.id or is_admin(actor)):
            raise OrderNotFound()
        if not await self.orders.close_pending(order_id, OrderStatus.cancelled):
            raise OrderNotPending(
                f"Only pending orders can be cancelled; this one is {order.status}"
            )
        await self.orders.release_holds([order_id])
        return await self._read(order_id)

    async def get(self, order_id: uuid.UUID, viewer: User) -> OrderRead:
        order = await self.orders.get(order_id)
        if order is None or not (order.buyer_id == viewer.id or is_admin(viewer)):
            raise OrderNotFound()
        return (await self._views([order]))[0]

    async def list_mine(
        self, buyer: User, *, cursor: str | None, limit: int
    ) -> tuple[list[OrderRead], str | None]:
        rows, next_cursor = await self.orders.list_by_buyer(buyer.id, cursor=cursor, limit=limit)
        return await self._views(rows), next_cursor

    async def _read(self, order_id: uuid.UUID) -> OrderRead:
        order = await self.orders.get(order_id)
        if order is None:
            raise OrderNotFound()
        return (await self._views([order]))[0]

    async def _views(self, orders: Sequence[Row[Any]]) -> list[OrderRead]:
        """Orders with their items and tickets: three queries for a whole page, not N+1."""
        if not orders:
            return []
        ids = [o.id for o in orders]
        items: dict[uuid.UUID, list[OrderItemRead]] = defaultdict(list)
        for item in await self.orders.items_of(ids):
            items[item.order_id].append(
                OrderItemRead(
                    ticket_type_id=item.ticket_type_id,
                    name=item.name,
                    quantity=item.quantity,
                    unit_price=item.unit_price,
                )
            )
        tickets = defaultdict(list)
        for ticket in await self.tickets.of_orders(ids):
            tickets[ticket.order_id].append(ticket_view(ticket))
        return [
            OrderRead(
                id=o.id,
                event_id=o.event_id,
                status=o.status,
                total=o.total,
                expires_at=o.expires_at,
                created_at=o.created_at,
                paid_at=o.paid_at,
                items=items[o.id],
                tickets=tickets[o.id],
            )
            for o in orders
        ]
