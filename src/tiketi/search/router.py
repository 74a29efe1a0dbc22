"""`GET /search`: parse the query parameters, call the search service, return a page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from tiketi.core.database import ReadSessionDep
from tiketi.core.errors import problem_responses
from tiketi.core.pagination import Page
from tiketi.events.schemas import EventSummary
from tiketi.search.schemas import SearchParams, encode_page
from tiketi.search.service import SearchService

router = APIRouter(prefix="/search", tags=["search"])


async def get_search_service(session: ReadSessionDep) -> SearchService:
    # async: a plain `def` dependency runs in FastAPI's threadpool on every request.
    # Autocommit: a search only reads, so no BEGIN/COMMIT round trips around its statement.
    return SearchService(session)


SearchServiceDep = Annotated[SearchService, Depends(get_search_service)]


@router.get("", response_model=Page[EventSummary], responses=problem_responses(422))
async def search_events(
    params: Annotated[SearchParams, Query()], search: SearchServiceDep
) -> Response:
    """Search published events that have not ended.

    With `q`: full text over title, tags, category, venue, city and description, ranked by
    relevance among the 100 soonest matches (title first, exact phrases before scattered
    words, a small boost for events starting soon); when it finds almost nothing,
    similar-looking titles, venues and cities match too ("nairobbi jaz festval"). Filters
    combine with AND. Prices are compared with the cheapest ticket on sale. Pages follow
    `next_cursor`, which only works with the same parameters.
    """
    items, next_cursor = await search.search(params)
    # The JSON of Page[EventSummary], encoded from the items as they are (no models).
    return Response(encode_page(items, next_cursor), media_type="application/json")
