from __future__ import annotations

import uuid
from typing import Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from tiketi.auth.dependencies import (
    AdminUser,
    BearerToken,
    OptionalUser,
    OrganizerUser,
    authenticate,
)
from tiketi.core.database import SessionDep
from tiketi.core.errors import problem_responses
from tiketi.core.pagination import CursorQuery, LimitQuery, Page
from tiketi.events.dependencies import EventServiceDep, ManagedEvent
from tiketi.events.schemas import (
    Attendee,
    Availability,
    CategoryCreate,
    CategoryRead,
    EventCreate,
    EventRead,
    EventSummary,
    EventUpdate,
    SalesReport,
    TicketTypeCreate,
    TicketTypeRead,
    TicketTypeUpdate,
)
from tiketi.events.service import (
    CategoryService,
    EventReportService,
    EventService,
    attendees_csv,
)
from tiketi.tickets.models import TicketStatus

categories_router = APIRouter(prefix="/categories", tags=["categories"])
router = APIRouter(prefix="/events", tags=["events"])

OWNED = problem_responses(401, 403, 404, 409)


@categories_router.get("", response_model=list[CategoryRead])
async def list_categories(session: SessionDep) -> list[CategoryRead]:
    categories = await CategoryService(session).list()
    return [CategoryRead(id=c.id, slug=c.slug, name=c.name) for c in categories]


@categories_router.post(
    "", status_code=201, response_model=CategoryRead, responses=problem_responses(401, 403, 409)
)
async def create_category(
    body: CategoryCreate, admin: AdminUser, session: SessionDep
) -> CategoryRead:
    category = await CategoryService(session).create(body)
    return CategoryRead(id=category.id, slug=category.slug, name=category.name)


@router.get("", response_model=Page[EventSummary])
async def list_events(
    events: EventServiceDep,
    category: str | None = Query(default=None, max_length=50, description="Category slug"),
    city: str | None = Query(default=None, max_length=100),
    limit: LimitQuery = 20,
    cursor: CursorQuery = None,
) -> Page[EventSummary]:
    """Published events that have not ended, soonest first."""
    items, next_cursor = await events.list_public(
        category=category, city=city, cursor=cursor, limit=limit
    )
    return Page(items=items, next_cursor=next_cursor)


@router.get("/mine", response_model=Page[EventSummary], responses=problem_responses(401, 403))
async def list_my_events(
    user: OrganizerUser, events: EventServiceDep, limit: LimitQuery = 20, cursor: CursorQuery = None
) -> Page[EventSummary]:
    """The caller's own events in every status, newest first."""
    items, next_cursor = await events.list_mine(user, cursor=cursor, limit=limit)
    return Page(items=items, next_cursor=next_cursor)


@router.post("", status_code=201, response_model=EventRead, responses=problem_responses(401, 403))
async def create_event(
    body: EventCreate, user: OrganizerUser, events: EventServiceDep
) -> EventRead:
    """Create a draft event; add ticket types, then publish it."""
    event = await events.create(user, body)
    return await events.view(event.id, user)


@router.get("/{event_id}", response_model=EventRead, responses=problem_responses(401, 404))
async def read_event(
    event_id: uuid.UUID, request: Request, token: BearerToken
) -> Response | EventRead:
    """The event with its ticket types and their live availability. Anonymous readers share
    one document per process, at most `PUBLIC_CACHE_SECONDS` old (availability changes
    replace it at once); owners and admins (with a token) also see drafts."""
    if token is None:
        document = await request.app.state.public_events.document(event_id)
        return Response(document, media_type="application/json")
    async with request.app.state.sessionmaker() as session:
        viewer = await authenticate(request, session, token)
        return await EventService(session).view(event_id, viewer)


@router.patch("/{event_id}", response_model=EventRead, responses=OWNED)
async def update_event(
    event: ManagedEvent, body: EventUpdate, user: OrganizerUser, events: EventServiceDep
) -> EventRead:
    await events.update(event, body)
    return await events.view(event.id, user)


@router.delete("/{event_id}", status_code=204, response_class=Response, responses=OWNED)
async def delete_event(event: ManagedEvent, events: EventServiceDep) -> Response:
    """Delete a draft that has no orders."""
    await events.delete(event)
    return Response(status_code=204)


@router.post("/{event_id}/publish", response_model=EventRead, responses=OWNED)
async def publish_event(
    event: ManagedEvent, user: OrganizerUser, events: EventServiceDep
) -> EventRead:
    await events.publish(event)
    return await events.view(event.id, user)


@router.post("/{event_id}/cancel", response_model=EventRead, responses=OWNED)
async def cancel_event(
    event: ManagedEvent, user: OrganizerUser, events: EventServiceDep
) -> EventRead:
    """Cancel the event: its tickets become void and paid orders are due a refund."""
    await events.cancel(event)
    return await events.view(event.id, user)


@router.post(
    "/{event_id}/ticket-types", status_code=201, response_model=TicketTypeRead, responses=OWNED
)
async def create_ticket_type(
    event: ManagedEvent, body: TicketTypeCreate, events: EventServiceDep
) -> TicketTypeRead:
    tier = await events.add_ticket_type(event, body)
    return events.tier_read(event, tier)


@router.patch("/{event_id}/ticket-types/{type_id}", response_model=TicketTypeRead, responses=OWNED)
async def update_ticket_type(
    event: ManagedEvent, type_id: uuid.UUID, body: TicketTypeUpdate, events: EventServiceDep
) -> TicketTypeRead:
    """Partial update; `quantity` may not drop below what is sold or held (409)."""
    tier = await events.update_ticket_type(event, type_id, body)
    return events.tier_read(event, tier)


@router.delete(
    "/{event_id}/ticket-types/{type_id}",
    status_code=204,
    response_class=Response,
    responses=OWNED,
)
async def delete_ticket_type(
    event: ManagedEvent, type_id: uuid.UUID, events: EventServiceDep
) -> Response:
    await events.delete_ticket_type(event, type_id)
    return Response(status_code=204)


@router.get(
    "/{event_id}/availability",
    response_model=list[Availability],
    responses=problem_responses(401, 404),
)
async def read_availability(
    event_id: uuid.UUID, user: OptionalUser, events: EventServiceDep
) -> list[Availability]:
    """Tickets left per tier, and whether each tier is on sale now."""
    return await events.availability(event_id, user)


@router.get("/{event_id}/sales", response_model=SalesReport, responses=OWNED)
async def read_sales(event: ManagedEvent, session: SessionDep) -> SalesReport:
    """Per ticket type: sold, held, revenue (paid orders) and checked in; and totals."""
    return await EventReportService(session).sales(event)


@router.get(
    "/{event_id}/attendees",
    response_model=Page[Attendee],
    responses={
        200: {"content": {"text/csv": {}}, "description": "A page, or the whole list as CSV"},
        **OWNED,
    },
)
async def list_attendees(
    event: ManagedEvent,
    request: Request,
    session: SessionDep,
    status: TicketStatus | None = None,
    format: Literal["json", "csv"] = "json",
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Page[Attendee] | StreamingResponse:
    """Ticket holders of the event, in order of purchase. `?format=csv` streams the whole
    list as CSV (for the gate or a spreadsheet)."""
    if format == "csv":
        rows = attendees_csv(
            request.app.state.sessionmaker, event.id, status=status.value if status else None
        )
        filename = f"attendees-{event.id}.csv"
        return StreamingResponse(
            rows,
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{filename}"',
                "Cache-Control": "private, no-store",
            },
        )
    items, next_cursor = await EventReportService(session).attendees(
        event, status=status.value if status else None, cursor=cursor, limit=limit
    )
    return Page(items=items, next_cursor=next_cursor)
