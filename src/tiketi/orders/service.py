from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from tiketi.auth.dependencies import is_admin
from tiketi.auth.exceptions import InvalidAccessToken
from tiketi.auth.service import AuthService
from tiketi.core.database import ConnectionQueue
from tiketi.core.errors import TiketiError
from tiketi.core.idempotency import run_idempotent
from tiketi.core.security import AccessClaims, TokenCodec
from tiketi.core.settings import Settings
from tiketi.events.exceptions import EventNotFound
from tiketi.orders.exceptions import (
    InvalidOrderItems,
    LimitExceeded,
    NotOnSale,
    OrderNotFound,
    OrderNotPending,
    SoldOut,
)
from tiketi.orders.models import OrderStatus
from tiketi.orders.repository import OrderRepository, Placement, PlacementRefused, place_order
from tiketi.orders.schemas import OrderCreate, OrderItemRead, OrderRead
from tiketi.orders.sold_out import SoldOutTiers
from tiketi.tickets.repository import TicketRepository
from tiketi.tickets.service import fulfil_paid_order, ticket_view
from tiketi.users.models import User


async def hold(
    conn: AsyncConnection,
    settings: Settings,
    sold_out: SoldOutTiers | None,
    *,
    order_id: uuid.UUID,
    buyer_id: uuid.UUID,
    token_version: int,
    data: OrderCreate,
    allow_free: bool,
) -> Placement:
    """Place the order in one statement (`repository.place_order`); a refusal becomes the
    API's error, except a free order refused for want of `allow_free` (PlacementRefused)."""
    try:
        return await place_order(
            conn,
            order_id=order_id,
            buyer_id=buyer_id,
            token_version=token_version,
            event_id=data.event_id,
            lines=[(line.ticket_type_id, line.quantity) for line in data.items],
            ttl=timedelta(seconds=settings.hold_ttl_seconds),
            max_pending=settings.max_pending_orders_per_user,
            max_tickets=settings.max_tickets_per_event_per_user,
            allow_free=allow_free,
        )
    except PlacementRefused as refusal:
        if refusal.reason == "free_order":
            raise
        raise refusal_error(refusal, settings, sold_out, data.event_id) from None


def refusal_error(
    refusal: PlacementRefused,
    settings: Settings,
    sold_out: SoldOutTiers | None,
    event_id: uuid.UUID,
) -> TiketiError:
    """The API's answer to what `tiketi_place_order` refused. A tier seen with nothing left
    is remembered for the sold-out fast path."""
    facts = refusal.facts
    name = str(facts.get("name", "This tier"))
    match refusal.reason:
        case "token_revoked":
            return InvalidAccessToken("The access token has been revoked")
        case "account_deactivated":
            return InvalidAccessToken("This account is deactivated")
        case "event_not_found":
            return EventNotFound()
        case "event_not_on_sale" if refusal.detail == "started":
            return NotOnSale("This event has already started; tickets are no longer on sale")
        case "event_not_on_sale":
            return NotOnSale(f"This event is {refusal.detail}; tickets are not on sale")
        case "not_in_event":
            return InvalidOrderItems(f"Ticket type {refusal.detail} is not part of this event")
        case "over_max_per_order":
            return InvalidOrderItems(f"At most {facts['max_per_order']} {name} tickets per order")
        case "not_on_sale":
            return NotOnSale(f"{name} tickets are not on sale now")
        case "pending_orders":
            return LimitExceeded(
                f"You already have {refusal.detail} unpaid orders; pay or cancel one first"
            )
        case "tickets_per_event":
            return LimitExceeded(
                f"At most {settings.max_tickets_per_event_per_user} tickets per person may be"
                f" held for one event (you hold {refusal.detail})"
            )
    available = facts.get("available")
    if sold_out is not None and available is not None and available <= 0:
        sold_out.remember(
            event_id=event_id,
            tier_id=uuid.UUID(str(facts["tier"])),
            name=name,
            max_per_order=int(facts["max_per_order"]),
        )
    return sold_out_error(name, available)


def sold_out_error(name: str, available: int | None) -> SoldOut:
    if not available:
        return SoldOut(f"{name} is sold out", extra={"ticket_type": name})
    return SoldOut(
        f"Only {available} {name} tickets are left",
        extra={"ticket_type": name, "available": available},
    )


def pending_order_view(order_id: uuid.UUID, data: OrderCreate, placement: Placement) -> OrderRead:
    return OrderRead(
        id=order_id,
        event_id=data.event_id,
        status=OrderStatus.pending.value,
        total=placement.total,
        expires_at=placement.expires_at,
        created_at=placement.created_at,
        paid_at=None,
        items=[
            OrderItemRead(
                ticket_type_id=line.ticket_type_id,
                name=name,
                quantity=line.quantity,
                unit_price=price,
            )
            for line, name, price in zip(data.items, placement.names, placement.prices, strict=True)
        ],
        tickets=[],
    )


class OrderPlacement:
    """`POST /orders`: hold tickets for the caller, every line or none, never beyond capacity.

    Without an `Idempotency-Key`, the common case, a hold costs the access token's signature
    check here and one autocommit statement (`tiketi_place_order` checks the caller's user row
    too), on a connection taken in turn like every request's. An order for tiers this process
    has just seen sold out is answered from memory (`SoldOutTiers`) before any of that: a
    token revoked in the last moments then hears "sold out" rather than 401, which tells it
    nothing the public event page does not.

    With a key, or for a free order (paid at once: its tickets are issued in the hold's
    transaction), the caller's user is read first, and the placement, the tickets and the
    stored response share one transaction.
    """

    def __init__(
        self,
        *,
        autocommit_engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession],
        queue: ConnectionQueue,
        settings: Settings,
        codec: TokenCodec,
        sold_out: SoldOutTiers | None,
    ) -> None:
        self.autocommit_engine = autocommit_engine
        self.sessionmaker = sessionmaker
        self.queue = queue
        self.settings = settings
        self.codec = codec
        self.sold_out = sold_out

    def _refuse_if_known_sold_out(self, data: OrderCreate) -> None:
        if self.sold_out is not None:
            requested = [(line.ticket_type_id, line.quantity) for line in data.items]
            if known := self.sold_out.answer(data.event_id, requested):
                raise sold_out_error(known.name, 0)

    async def place(
        self, caller: AccessClaims, data: OrderCreate, idempotency_key: str | None
    ) -> tuple[int, dict[str, Any], bool]:
        """(status, JSON body, replayed?) of the placement."""
        if idempotency_key is None:
            self._refuse_if_known_sold_out(data)
            order_id = uuid.uuid4()
            try:
                async with self.queue.turn():
                    # In a flash sale most requests still waiting here when the tier sells out
                    # ask for it: they are answered now, not after a statement each.
                    self._refuse_if_known_sold_out(data)
                    async with self.autocommit_engine.connect() as conn:
                        placement = await hold(
                            conn,
                            self.settings,
                            self.sold_out,
                            order_id=order_id,
                            buyer_id=caller.user_id,
                            token_version=caller.token_version,
                            data=data,
                            allow_free=False,
                        )
                view = pending_order_view(order_id, data, placement)
                return 201, view.model_dump(mode="json"), False
            except PlacementRefused:
                pass  # a free order: placed below, in a transaction that issues its tickets
        async with self.queue.turn(), self.sessionmaker() as session, session.begin():
            buyer = await AuthService(session, self.settings, self.codec).user_for(caller)
            orders = OrderService(session, self.settings, self.sold_out)
            return await run_idempotent(
                session,
                user_id=buyer.id,
                key=idempotency_key,
                scope="POST /orders",
                request=data,
                status=201,
                work=lambda: orders.place(buyer, data),
            )


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

    async def place(self, buyer: User, data: OrderCreate) -> OrderRead:
        """Hold tickets for `buyer` in the session's transaction: every line or none, never
        beyond capacity. A free order comes back paid, with its tickets, from the same
        transaction. (The API's own path is `OrderPlacement.place`.)"""
        order_id = uuid.uuid4()
        placement = await hold(
            await self.session.connection(),
            self.settings,
            self.sold_out,
            order_id=order_id,
            buyer_id=buyer.id,
            token_version=buyer.token_version,
            data=data,
            allow_free=True,
        )
        if placement.total == 0:
            await self.issue_tickets(order_id)
            return await self._read(order_id)
        return pending_order_view(order_id, data, placement)

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
