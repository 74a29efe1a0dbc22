from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tiketi.auth.dependencies import is_admin
from tiketi.core.errors import InvalidInput
from tiketi.events.exceptions import (
    CategoryExists,
    DuplicateTicketType,
    EventHasSales,
    EventNotFound,
    InvalidEventState,
    NotPublishable,
    QuantityBelowCommitted,
    TicketTypeInUse,
    TicketTypeNotFound,
    UnknownCategory,
)
from tiketi.events.models import Category, Event, EventStatus, TicketType
from tiketi.events.repository import (
    CategoryRepository,
    EventReportRepository,
    EventRepository,
    TicketTypeRepository,
)
from tiketi.events.schemas import (
    Attendee,
    Availability,
    CategoryCreate,
    EventCreate,
    EventRead,
    EventSummary,
    EventUpdate,
    SalesReport,
    SalesTotals,
    TicketTypeCreate,
    TicketTypeRead,
    TicketTypeUpdate,
    TierSales,
)
from tiketi.users.models import User


def utcnow() -> datetime:
    return datetime.now(UTC)


def is_on_sale(
    *,
    status: str,
    starts_at: datetime,
    sales_start: datetime | None,
    sales_end: datetime | None,
    now: datetime,
) -> bool:
    """A tier sells while its event is published and not started, inside its sales window."""
    if status != EventStatus.published.value or now >= starts_at:
        return False
    if sales_start is not None and now < sales_start:
        return False
    return not (sales_end is not None and now >= sales_end)


def tier_view(tier: Any, *, status: str, starts_at: datetime, now: datetime) -> TicketTypeRead:
    return TicketTypeRead(
        id=tier.id,
        name=tier.name,
        description=tier.description,
        price=tier.price,
        quantity=tier.quantity,
        available=tier.quantity - tier.sold - tier.held,
        sales_start=tier.sales_start,
        sales_end=tier.sales_end,
        max_per_order=tier.max_per_order,
        on_sale=is_on_sale(
            status=status,
            starts_at=starts_at,
            sales_start=tier.sales_start,
            sales_end=tier.sales_end,
            now=now,
        ),
    )


def summary_view(row: Row[Any]) -> EventSummary:
    # Built without validation: the row comes from our own query with the contract's types
    # already (uuid, text, timestamptz, integers), and pages of these are the hottest reads.
    return EventSummary.model_construct(
        id=row.id,
        title=row.title,
        category=row.category,
        tags=list(row.tags or []),
        venue=row.venue,
        city=row.city,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        image_url=row.image_url,
        status=row.status,
        min_price=row.min_price,
        available=int(row.available or 0),
    )


def can_manage(user: User | None, organizer_id: uuid.UUID) -> bool:
    return user is not None and (user.id == organizer_id or is_admin(user))


class CategoryService:
    def __init__(self, session: AsyncSession) -> None:
        self.categories = CategoryRepository(session)

    async def list(self) -> Sequence[Category]:
        return await self.categories.list_all()

    async def create(self, data: CategoryCreate) -> Category:
        category = await self.categories.insert(slug=data.slug, name=data.name)
        if category is None:
            raise CategoryExists(f"Category `{data.slug}` already exists")
        return category


class EventService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.events = EventRepository(session)
        self.tiers = TicketTypeRepository(session)
        self.categories = CategoryRepository(session)

    # -- reading ---------------------------------------------------------------------------

    async def view(self, event_id: uuid.UUID, viewer: User | None) -> EventRead:
        """Published and cancelled events are public; drafts exist only for owner and admins."""
        row = await self.events.detail(event_id)
        if row is None or (
            row.status == EventStatus.draft.value and not can_manage(viewer, row.organizer_id)
        ):
            raise EventNotFound()
        now = utcnow()
        tiers = await self.events.tiers(event_id)
        return EventRead(
            id=row.id,
            organizer_id=row.organizer_id,
            title=row.title,
            description=row.description,
            category=row.category,
            tags=list(row.tags or []),
            venue=row.venue,
            city=row.city,
            address=row.address,
            latitude=float(row.latitude) if row.latitude is not None else None,
            longitude=float(row.longitude) if row.longitude is not None else None,
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            timezone=row.timezone,
            image_url=row.image_url,
            status=row.status,
            ticket_types=[
                tier_view(t, status=row.status, starts_at=row.starts_at, now=now) for t in tiers
            ],
            published_at=row.published_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    async def availability(self, event_id: uuid.UUID, viewer: User | None) -> list[Availability]:
        row = await self.events.detail(event_id)
        if row is None or (
            row.status == EventStatus.draft.value and not can_manage(viewer, row.organizer_id)
        ):
            raise EventNotFound()
        return await self._availability(row)

    async def availability_snapshot(self, event_id: uuid.UUID) -> list[Availability] | None:
        """The availability of any event (None if it is gone), without a viewer check: the
        live streams share one read among subscribers who each passed `availability`."""
        row = await self.events.detail(event_id)
        return None if row is None else await self._availability(row)

    async def _availability(self, row: Row[Any]) -> list[Availability]:
        now = utcnow()
        views = [
            tier_view(t, status=row.status, starts_at=row.starts_at, now=now)
            for t in await self.events.tiers(row.id)
        ]
        return [
            Availability(
                ticket_type_id=v.id,
                name=v.name,
                price=v.price,
                quantity=v.quantity,
                available=v.available,
                on_sale=v.on_sale,
            )
            for v in views
        ]

    async def list_public(
        self, *, category: str | None, city: str | None, cursor: str | None, limit: int
    ) -> tuple[list[EventSummary], str | None]:
        rows, next_cursor = await self.events.list_public(
            category=category, city=city, now=utcnow(), cursor=cursor, limit=limit
        )
        return [summary_view(r) for r in rows], next_cursor

    async def list_mine(
        self, user: User, *, cursor: str | None, limit: int
    ) -> tuple[list[EventSummary], str | None]:
        rows, next_cursor = await self.events.list_by_organizer(user.id, cursor=cursor, limit=limit)
        return [summary_view(r) for r in rows], next_cursor

    async def managed(self, event_id: uuid.UUID, user: User, *, lock: bool = False) -> Event:
        """The event if `user` owns it or is an admin; 404 otherwise (never 403)."""
        event = await (self.events.get_for_update(event_id) if lock else self.events.get(event_id))
        if event is None or not can_manage(user, event.organizer_id):
            raise EventNotFound()
        return event

    # -- writing ---------------------------------------------------------------------------

    async def _category_id(self, slug: str) -> uuid.UUID:
        category = await self.categories.get_by_slug(slug)
        if category is None:
            raise UnknownCategory(f"Unknown category `{slug}`; see GET /categories")
        return category.id

    async def create(self, organizer: User, data: EventCreate) -> Event:
        values = data.model_dump(exclude={"category"})
        event = Event(
            organizer_id=organizer.id,
            category_id=await self._category_id(data.category),
            status=EventStatus.draft.value,
            **values,
        )
        return await self.events.add(event)

    async def update(self, event: Event, data: EventUpdate) -> Event:
        """Edit details. Cancelled events are frozen; the dates must stay coherent."""
        if event.status == EventStatus.cancelled.value:
            raise InvalidEventState("A cancelled event cannot be edited")
        changes = data.model_dump(exclude_unset=True)
        for required in (
            "title",
            "category",
            "venue",
            "city",
            "starts_at",
            "ends_at",
            "timezone",
            "tags",
            "description",
        ):
            if required in changes and changes[required] is None:
                raise InvalidInput(f"{required} cannot be null")
        if "category" in changes:
            event.category_id = await self._category_id(changes.pop("category"))
        starts_at = changes.get("starts_at", event.starts_at)
        ends_at = changes.get("ends_at", event.ends_at)
        if ends_at <= starts_at:
            raise InvalidInput("ends_at must be after starts_at")
        if (
            event.status == EventStatus.published.value
            and "starts_at" in changes
            and starts_at <= utcnow()
        ):
            raise InvalidInput("A published event cannot be moved into the past")
        for field, value in changes.items():
            setattr(event, field, value)
        await self.session.flush()
        await self.session.refresh(event)
        return event

    async def delete(self, event: Event) -> None:
        """Only drafts can be deleted (a published event is cancelled instead)."""
        if event.status != EventStatus.draft.value:
            raise InvalidEventState("Only draft events can be deleted; cancel it instead")
        if await self.events.committed_tickets(event.id):
            raise EventHasSales("This event has orders; cancel it instead")
        await self.events.delete(event.id)

    async def publish(self, event: Event) -> Event:
        """Needs at least one ticket type and a start in the future."""
        if event.status != EventStatus.draft.value:
            raise InvalidEventState(f"Only drafts can be published; this event is {event.status}")
        if await self.events.count_tiers(event.id) == 0:
            raise NotPublishable("Add at least one ticket type before publishing")
        if event.starts_at <= utcnow():
            raise NotPublishable("The event start is in the past")
        event.status = EventStatus.published.value
        event.published_at = utcnow()
        await self.session.flush()
        await self.session.refresh(event)
        return event

    async def cancel(self, event: Event) -> Event:
        """Cancel: pending orders are cancelled, paid ones await a refund, tickets are void."""
        from tiketi.orders.service import settle_event_cancellation  # orders build on events

        if event.status == EventStatus.cancelled.value:
            raise InvalidEventState("The event is already cancelled")
        await settle_event_cancellation(self.session, event.id)
        event.status = EventStatus.cancelled.value
        event.cancelled_at = utcnow()
        await self.session.flush()
        await self.session.refresh(event)
        return event

    # -- ticket types ----------------------------------------------------------------------

    def _editable(self, event: Event) -> None:
        if event.status == EventStatus.cancelled.value:
            raise InvalidEventState("Ticket types of a cancelled event cannot change")

    async def add_ticket_type(self, event: Event, data: TicketTypeCreate) -> TicketType:
        self._editable(event)
        if await self.tiers.name_taken(event.id, data.name):
            raise DuplicateTicketType(f"This event already has a ticket type named {data.name!r}")
        values = data.model_dump()
        if values["sort_order"] is None:
            values["sort_order"] = await self.events.count_tiers(event.id)
        return await self.tiers.add(TicketType(event_id=event.id, **values))

    async def update_ticket_type(
        self, event: Event, type_id: uuid.UUID, data: TicketTypeUpdate
    ) -> TicketType:
        self._editable(event)
        tier = await self.tiers.get_in_event(event.id, type_id)
        if tier is None:
            raise TicketTypeNotFound()
        changes = data.model_dump(exclude_unset=True)
        for required in ("name", "price", "quantity", "max_per_order", "sort_order"):
            if required in changes and changes[required] is None:
                raise InvalidInput(f"{required} cannot be null")
        start = changes.get("sales_start", tier.sales_start)
        end = changes.get("sales_end", tier.sales_end)
        if start is not None and end is not None and end <= start:
            raise InvalidInput("sales_end must be after sales_start")
        if "name" in changes and await self.tiers.name_taken(
            event.id, changes["name"], except_id=tier.id
        ):
            raise DuplicateTicketType(
                f"This event already has a ticket type named {changes['name']!r}"
            )
        if "quantity" in changes and not await self.tiers.set_quantity(
            tier.id, changes.pop("quantity")
        ):
            raise QuantityBelowCommitted(
                "quantity cannot drop below the tickets already sold or held"
            )
        for field, value in changes.items():
            setattr(tier, field, value)
        await self.session.flush()
        await self.session.refresh(tier)
        return tier

    async def delete_ticket_type(self, event: Event, type_id: uuid.UUID) -> None:
        self._editable(event)
        if await self.tiers.get_in_event(event.id, type_id) is None:
            raise TicketTypeNotFound()
        try:
            async with self.session.begin_nested():
                deleted = await self.tiers.delete_if_unused(type_id)
        except IntegrityError:  # referenced by orders (even expired ones)
            deleted = False
        if not deleted:
            raise TicketTypeInUse(
                "Tickets of this type were sold or are held; it cannot be deleted"
            )

    def tier_read(self, event: Event, tier: TicketType) -> TicketTypeRead:
        return tier_view(tier, status=event.status, starts_at=event.starts_at, now=utcnow())


CSV_COLUMNS = (
    "ticket_id",
    "code_suffix",
    "ticket_type",
    "holder_name",
    "holder_email",
    "status",
    "checked_in_at",
)
CODE_SUFFIX_LENGTH = 6
CSV_BATCH = 500


def attendee_view(row: Row[Any]) -> Attendee:
    return Attendee(
        ticket_id=row.id,
        code_suffix=row.code[-CODE_SUFFIX_LENGTH:],
        ticket_type=row.ticket_type,
        holder_name=row.holder_name,
        holder_email=row.holder_email,
        status=row.status,
        checked_in_at=row.checked_in_at,
    )


def _csv_cell(value: object) -> str:
    """Spreadsheets execute cells starting with = + - @ (CSV injection): quote them as text."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def _csv_line(values: Sequence[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([_csv_cell(v) for v in values])
    return buffer.getvalue()


class EventReportService:
    """Sales and attendees of one event, for its organizer (and admins)."""

    def __init__(self, session: AsyncSession) -> None:
        self.reports = EventReportRepository(session)

    async def sales(self, event: Event) -> SalesReport:
        rows = await self.reports.sales(event.id)
        counts = await self.reports.order_counts(event.id)
        tiers = [
            TierSales(
                ticket_type_id=r.id,
                name=r.name,
                price=r.price,
                quantity=r.quantity,
                sold=r.sold,
                held=r.held,
                available=r.quantity - r.sold - r.held,
                revenue=int(r.revenue),
                checked_in=int(r.checked_in),
            )
            for r in rows
        ]
        return SalesReport(
            event_id=event.id,
            ticket_types=tiers,
            totals=SalesTotals(
                quantity=sum(t.quantity for t in tiers),
                sold=sum(t.sold for t in tiers),
                held=sum(t.held for t in tiers),
                available=sum(t.available for t in tiers),
                revenue=sum(t.revenue for t in tiers),
                checked_in=sum(t.checked_in for t in tiers),
                paid_orders=counts.get("paid", 0),
                refund_pending_orders=counts.get("refund_pending", 0),
            ),
        )

    async def attendees(
        self, event: Event, *, status: str | None, cursor: str | None, limit: int
    ) -> tuple[list[Attendee], str | None]:
        rows, next_cursor = await self.reports.attendees(
            event.id, status=status, cursor=cursor, limit=limit
        )
        return [attendee_view(r) for r in rows], next_cursor


async def attendees_csv(
    sessions: async_sessionmaker[AsyncSession], event_id: uuid.UUID, *, status: str | None
) -> AsyncIterator[str]:
    """The whole attendee list as CSV, streamed in batches, each read in its own short
    session: a slow download never holds a database connection."""
    yield _csv_line(CSV_COLUMNS)
    cursor: str | None = None
    while True:
        async with sessions() as session:
            rows, cursor = await EventReportRepository(session).attendees(
                event_id, status=status, cursor=cursor, limit=CSV_BATCH
            )
        for row in rows:
            a = attendee_view(row)
            yield _csv_line(
                [
                    a.ticket_id,
                    a.code_suffix,
                    a.ticket_type,
                    a.holder_name,
                    a.holder_email,
                    a.status,
                    a.checked_in_at.isoformat() if a.checked_in_at else "",
                ]
            )
        if cursor is None:
            return
