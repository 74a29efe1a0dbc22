"""`GET /events/{id}/availability/stream`: live availability as Server-Sent Events."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from tiketi.auth.dependencies import OptionalUser
from tiketi.core.errors import problem_responses
from tiketi.events.dependencies import EventServiceDep
from tiketi.events.exceptions import StreamsUnavailable
from tiketi.events.live import (
    EVENT_NAME,
    STREAM_MEDIA_TYPE,
    AvailabilityBroadcaster,
    AvailabilityStreamResponse,
)

router = APIRouter(prefix="/events", tags=["events"])


async def get_availability_broadcaster(request: Request) -> AvailabilityBroadcaster:
    broadcaster: AvailabilityBroadcaster | None = getattr(request.app.state, "availability", None)
    if broadcaster is None:
        raise StreamsUnavailable("Live availability is not running on this server")
    return broadcaster


AvailabilityBroadcasterDep = Annotated[
    AvailabilityBroadcaster, Depends(get_availability_broadcaster)
]

_EXAMPLE = (
    "retry: 4200\n"
    "id: 5c1f0e0b9a3d7e21\n"
    f"event: {EVENT_NAME}\n"
    'data: [{"ticket_type_id":"6f9c1a52-3f3e-4a53-9a8f-0d6d3c1c2b11","name":"Early Bird",'
    '"price":1500,"quantity":100,"available":42,"on_sale":true}]\n'
    "\n"
    ": ping\n"
    "\n"
)

STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            f"An `{EVENT_NAME}` event on connect and after every change, whose `data` is the "
            "JSON list `GET /events/{event_id}/availability` returns; `: ping` comments keep "
            "idle connections open. `id` is a tag of the content (equal in every process)."
        ),
        "content": {
            STREAM_MEDIA_TYPE: {
                "schema": {"type": "string"},
                # OpenAPI 3.2's description of each event, as FastAPI writes it for its own SSE.
                "itemSchema": {
                    "type": "object",
                    "required": ["event", "data"],
                    "properties": {
                        "event": {"type": "string", "const": EVENT_NAME},
                        "id": {"type": "string"},
                        "retry": {"type": "integer", "minimum": 0},
                        "data": {
                            "type": "string",
                            "contentMediaType": "application/json",
                            "contentSchema": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/Availability"},
                            },
                        },
                    },
                },
                "example": _EXAMPLE,
            }
        },
    },
    # Without their `model`: FastAPI would also list each problem under the route's own media
    # type (text/event-stream). The `$ref` to Problem stays.
    **{
        status: {key: value for key, value in response.items() if key != "model"}
        for status, response in problem_responses(401, 404, 422, 503).items()
    },
}


@router.get(
    "/{event_id}/availability/stream",
    status_code=200,
    response_class=AvailabilityStreamResponse,
    responses=STREAM_RESPONSES,
)
async def stream_availability(
    event_id: uuid.UUID,
    user: OptionalUser,
    events: EventServiceDep,
    live: AvailabilityBroadcasterDep,
) -> AvailabilityStreamResponse:
    """Live tickets-left per tier (Server-Sent Events), from whichever process sold them.

    Visible like `GET /events/{event_id}/availability`: drafts only to their organizer and
    admins (404 otherwise, answered before any stream starts). A server that is shutting down
    ends its streams; clients reconnect after the `retry` delay.
    """
    # Subscribe before reading, so no change can slip between the first snapshot and the
    # updates. The request's session is released when this handler returns (SessionDep is
    # function-scoped), so an open stream holds no pooled connection.
    subscription = live.subscribe(event_id)
    try:
        current = await events.availability(event_id, user)
    except BaseException:
        subscription.close()
        raise
    return live.response(subscription, current)
