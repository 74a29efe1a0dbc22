"""`GET /search`: parse the query parameters, call the search service, return a page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from tiketi.core.database import ConnectionQueue, driver_connection
from tiketi.core.errors import problem_responses
from tiketi.core.pagination import Page
from tiketi.core.routing import QueryModelRoute
from tiketi.events.schemas import EventSummary
from tiketi.search.schemas import SearchParams, encode_page
from tiketi.search.service import SearchService

router = APIRouter(prefix="/search", tags=["search"], route_class=QueryModelRoute)


@router.get("", response_model=Page[EventSummary], responses=problem_responses(422))
async def search_events(params: Annotated[SearchParams, Query()], request: Request) -> Response:
    """Search published events that have not ended.

    With `q`: full text over title, tags, category, venue, city and description, ranked by
    relevance among the 100 soonest matches (title first, exact phrases before scattered
    words, a small boost for events starting soon); when it finds almost nothing,
    similar-looking titles, venues and cities match too ("nairobbi jaz festval"). Filters
    combine with AND. Prices are compared with the cheapest ticket on sale. Pages follow
    `next_cursor`, which only works with the same parameters.
    """
    # One pooled connection for the one statement, used through asyncpg (the statement is
    # compiled per shape already): no request session, no SQLAlchemy Connection around it
    # (docs/search.md, "No request session", "The driver's connection"). It takes its turn
    # for the pool like the request session does (ConnectionQueue).
    state = request.app.state
    queue: ConnectionQueue = state.connection_queue
    async with queue.turn(), driver_connection(state.engine) as connection:
        items, next_cursor = await SearchService(connection).search(params)
    # The JSON of Page[EventSummary], encoded from the items as they are (no models).
    return Response(encode_page(items, next_cursor), media_type="application/json")
