"""Every query of the catalogue. Read paths use Core rows (no ORM identity-map cost)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, delete, func, literal_column, select, true, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from tiketi.core.repository import AnyRow, AnySelect, Repository, keyset_page
from tiketi.events.models import Category, Event, EventStatus, TicketType
from tiketi.orders.models import Order, OrderItem, OrderStatus
from tiketi.tickets.models import Ticket, TicketStatus
from tiketi.users.models import User


class CategoryRepository(Repository[Category]):
    model = Category

    async def list_all(self) -> Sequence[Category]:
        result = await self.session.execute(select(Category).order_by(Category.name))
        return result.scalars().all()

    async def get_by_slug(self, slug: str) -> Category | None:
        result = await self.session.execute(select(Category).where(Category.slug == slug))
        return result.scalar_one_or_none()

    async def insert(self, *, slug: str, name: str) -> Category | None:
        result = await self.session.execute(
            insert(Category)
            .values(slug=slug, name=name)
            .on_conflict_do_nothing(index_elements=[Category.slug])
            .returning(Category)
        )
        return result.scalar_one_or_none()


_tier_totals = (
    select(
        func.min(TicketType.price).label("min_price"),
        func.coalesce(func.sum(TicketType.quantity - TicketType.sold - TicketType.held), 0).label(
            "available"
        ),
    )
    .where(TicketType.event_id == Event.id)
    .correlate(Event)
    .lateral("tier_totals")
)

SUMMARY_COLUMNS = (
    Event.id,
    Event.title,
    Category.slug.label("category"),
    Event.tags,
    Event.venue,
    Event.city,
    Event.starts_at,
    Event.ends_at,
    Event.image_url,
    Event.status,
    Event.created_at,
    _tier_totals.c.min_price,
    _tier_totals.c.available,
)


def summary_select() -> Select[Any]:
    """EventSummary rows with `min_price` and `available` computed in the same query."""
    return (
        select(*SUMMARY_COLUMNS)
        .join(Category, Category.id == Event.category_id)
        .join(_tier_totals, true())
    )


# Every stored column but the generated search ones (large, and only search reads them).
EVENT_COLUMNS = tuple(
    c for c in Event.__table__.c if c.name not in ("search_vector", "search_text", "city_key")
)


class EventRepository(Repository[Event]):
    model = Event

    async def detail(self, event_id: uuid.UUID) -> AnyRow | None:
        """The event row with its category slug, in one round trip."""
        result = await self.session.execute(
            select(*EVENT_COLUMNS, Category.slug.label("category"))
            .join(Category, Category.id == Event.category_id)
            .where(Event.id == event_id)
        )
        return result.one_or_none()

    async def tiers(self, event_id: uuid.UUID) -> Sequence[Row[Any]]:
        result = await self.session.execute(
            select(TicketType.__table__)
            .where(TicketType.event_id == event_id)
            .order_by(TicketType.sort_order, TicketType.created_at, TicketType.id)
        )
        return result.all()

    async def list_public(
        self,
        *,
        category: str | None,
        city: str | None,
        now: datetime,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[Row[Any]], str | None]:
        stmt = summary_select().where(
            Event.status == EventStatus.published.value, Event.ends_at > now
        )
        if category:
            stmt = stmt.where(Category.slug == category)
        if city:
            stmt = stmt.where(func.lower(Event.city) == city.strip().lower())
        return await keyset_page(
            self.session,
            stmt,
            order=[Event.starts_at, Event.id],
            key_types=(datetime, uuid.UUID),
            row_key=lambda r: [r.starts_at, r.id],
            cursor=cursor,
            limit=limit,
            scalars=False,
        )

    async def list_by_organizer(
        self, organizer_id: uuid.UUID, *, cursor: str | None, limit: int
    ) -> tuple[list[Row[Any]], str | None]:
        stmt = summary_select().where(Event.organizer_id == organizer_id)
        return await keyset_page(
            self.session,
            stmt,
            order=[Event.created_at, Event.id],
            key_types=(datetime, uuid.UUID),
            row_key=lambda r: [r.created_at, r.id],
            cursor=cursor,
            limit=limit,
            descending=True,
            scalars=False,
        )

    async def count_tiers(self, event_id: uuid.UUID) -> int:
        result = await self.session.execute(
            select(func.count()).select_from(TicketType).where(TicketType.event_id == event_id)
        )
        return int(result.scalar_one())

    async def committed_tickets(self, event_id: uuid.UUID) -> int:
        result = await self.session.execute(
            select(func.coalesce(func.sum(TicketType.sold + TicketType.held), 0)).where(
                TicketType.event_id == event_id
            )
        )
        return int(result.scalar_one())

    async def delete(self, event_id: uuid.UUID) -> None:
        await self.session.execute(delete(Event).where(Event.id == event_id))


class TicketTypeRepository(Repository[TicketType]):
    model = TicketType

    async def get_in_event(self, event_id: uuid.UUID, type_id: uuid.UUID) -> TicketType | None:
        result = await self.session.execute(
            select(TicketType).where(TicketType.id == type_id, TicketType.event_id == event_id)
        )
        return result.scalar_one_or_none()

    async def name_taken(
        self, event_id: uuid.UUID, name: str, *, except_id: uuid.UUID | None = None
    ) -> bool:
        stmt: Select[Any] = select(literal_column("1")).where(
            TicketType.event_id == event_id, func.lower(TicketType.name) == name.lower()
        )
        if except_id is not None:
            stmt = stmt.where(TicketType.id != except_id)
        return (await self.session.execute(stmt.limit(1))).first() is not None

    async def set_quantity(self, type_id: uuid.UUID, quantity: int) -> bool:
        """Atomic against concurrent holds: refuses to drop below what is sold or held."""
        result = await self.session.execute(
            update(TicketType)
            .where(TicketType.id == type_id, TicketType.sold + TicketType.held <= quantity)
            .values(quantity=quantity)
            .returning(TicketType.id)
        )
        return result.first() is not None

    async def delete_if_unused(self, type_id: uuid.UUID) -> bool:
        result = await self.session.execute(
            delete(TicketType)
            .where(and_(TicketType.id == type_id, TicketType.sold == 0, TicketType.held == 0))
            .returning(TicketType.id)
        )
        return result.first() is not None


class EventReportRepository:
    """The organizer's views of an event: sales per tier and the attendee list."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def sales(self, event_id: uuid.UUID) -> Sequence[AnyRow]:
        paid = OrderStatus.paid.value
        revenue = (
            select(func.coalesce(func.sum(OrderItem.quantity * OrderItem.unit_price), 0))
            .join(Order, Order.id == OrderItem.order_id)
            .where(OrderItem.ticket_type_id == TicketType.id, Order.status == paid)
            .correlate(TicketType)
            .scalar_subquery()
        )
        checked_in = (
            select(func.count())
            .select_from(Ticket)
            .where(
                Ticket.ticket_type_id == TicketType.id,
                Ticket.status == TicketStatus.checked_in.value,
            )
            .correlate(TicketType)
            .scalar_subquery()
        )
        result = await self.session.execute(
            select(
                TicketType.id,
                TicketType.name,
                TicketType.price,
                TicketType.quantity,
                TicketType.sold,
                TicketType.held,
                revenue.label("revenue"),
                checked_in.label("checked_in"),
            )
            .where(TicketType.event_id == event_id)
            .order_by(TicketType.sort_order, TicketType.created_at, TicketType.id)
        )
        rows: Sequence[AnyRow] = result.all()
        return rows

    async def order_counts(self, event_id: uuid.UUID) -> dict[str, int]:
        result = await self.session.execute(
            select(Order.status, func.count())
            .where(Order.event_id == event_id)
            .group_by(Order.status)
        )
        return {status: int(count) for status, count in result.all()}

    def _attendees(self, event_id: uuid.UUID) -> AnySelect:
        return (
            select(
                Ticket.id,
                Ticket.created_at,
                Ticket.code,
                TicketType.name.label("ticket_type"),
                func.concat(User.first_name, " ", User.last_name).label("holder_name"),
                User.email.label("holder_email"),
                Ticket.status,
                Ticket.checked_in_at,
            )
            .join(TicketType, TicketType.id == Ticket.ticket_type_id)
            .join(User, User.id == Ticket.holder_id)
            .where(Ticket.event_id == event_id)
        )

    async def attendees(
        self, event_id: uuid.UUID, *, status: str | None, cursor: str | None, limit: int
    ) -> tuple[list[AnyRow], str | None]:
        stmt = self._attendees(event_id)
        if status is not None:
            stmt = stmt.where(Ticket.status == status)
        return await keyset_page(
            self.session,
            stmt,
            order=[Ticket.created_at, Ticket.id],
            key_types=(datetime, uuid.UUID),
            row_key=lambda r: [r.created_at, r.id],
            cursor=cursor,
            limit=limit,
            scalars=False,
        )
