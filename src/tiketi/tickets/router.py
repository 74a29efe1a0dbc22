from __future__ import annotations

import uuid
from typing import Literal

from fastapi import APIRouter, Query, Response

from tiketi.auth.dependencies import CurrentUser, OrganizerUser
from tiketi.core.database import SessionDep
from tiketi.core.errors import problem_responses
from tiketi.core.pagination import CursorQuery, LimitQuery, Page
from tiketi.tickets.schemas import CheckIn, CheckInResult, TicketRead
from tiketi.tickets.service import TicketService

router = APIRouter(prefix="/tickets", tags=["tickets"])


@router.get("", response_model=Page[TicketRead], responses=problem_responses(401))
async def list_tickets(
    user: CurrentUser,
    session: SessionDep,
    event_id: uuid.UUID | None = None,
    limit: LimitQuery = 20,
    cursor: CursorQuery = None,
) -> Page[TicketRead]:
    """The caller's tickets, newest first; `event_id` narrows to one event."""
    items, next_cursor = await TicketService(session).list_mine(
        user, event_id=event_id, cursor=cursor, limit=limit
    )
    return Page(items=items, next_cursor=next_cursor)


@router.post(
    "/check-in", response_model=CheckInResult, responses=problem_responses(401, 403, 404, 409)
)
async def check_in(body: CheckIn, scanner: OrganizerUser, session: SessionDep) -> CheckInResult:
    """Admit the ticket with this code at the gate, once. A second scan is 409
    `already_checked_in` with when (and by whom) it was first scanned."""
    return await TicketService(session).check_in(scanner, body)


@router.get("/{ticket_id}", response_model=TicketRead, responses=problem_responses(401, 404))
async def read_ticket(ticket_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> TicketRead:
    return await TicketService(session).get(ticket_id, user)


@router.get(
    "/{ticket_id}/qr",
    response_class=Response,
    responses={
        200: {"content": {"image/svg+xml": {}, "image/png": {}}, "description": "The QR code"},
        **problem_responses(401, 404),
    },
)
async def ticket_qr(
    ticket_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    format: Literal["svg", "png"] = Query(default="svg"),
) -> Response:
    """The ticket's QR code (it encodes the ticket code the gate scans)."""
    image = await TicketService(session).qr(ticket_id, user, format)
    media = "image/png" if format == "png" else "image/svg+xml"
    return Response(image, media_type=media, headers={"Cache-Control": "private, no-store"})
