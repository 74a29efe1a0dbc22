from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends

from tiketi.auth.dependencies import OrganizerUser
from tiketi.core.database import SessionDep
from tiketi.events.models import Event
from tiketi.events.service import EventService


async def get_event_service(session: SessionDep) -> EventService:
    return EventService(session)


EventServiceDep = Annotated[EventService, Depends(get_event_service)]


async def get_managed_event(
    event_id: uuid.UUID, user: OrganizerUser, events: EventServiceDep
) -> Event:
    """The event, locked for this transaction, if the caller owns it or is an admin (else 404)."""
    return await events.managed(event_id, user, lock=True)


ManagedEvent = Annotated[Event, Depends(get_managed_event)]
