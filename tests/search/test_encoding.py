"""A page's items are encoded from the rows, without models: the same JSON as Page[EventSummary]."""

from __future__ import annotations

import typing

import httpx
import pytest
from fastapi import FastAPI

from tests.factories import future, make_event
from tests.search.conftest import run_sql
from tiketi.core.database import driver_connection
from tiketi.core.pagination import Page
from tiketi.core.responses import to_json
from tiketi.events.schemas import EventSummary
from tiketi.search.schemas import ITEM_FIELDS, SearchItem, SearchParams, encode_page
from tiketi.search.service import SearchService
from tiketi.users.models import User


def test_items_have_the_fields_of_event_summary() -> None:
    """Same names, order and types, so the route's document (`Page[EventSummary]`) stays true."""
    assert list(ITEM_FIELDS) == list(EventSummary.model_fields)
    assert typing.get_type_hints(SearchItem) == {
        name: field.annotation for name, field in EventSummary.model_fields.items()
    }


@pytest.mark.parametrize(
    "params",
    [{"limit": 2}, {"q": "jazz", "limit": 2}, {"q": "jaz festivl"}, {"sort": "price"}],
    ids=["date", "relevance", "fuzzy", "price"],
)
async def test_pages_encode_as_event_summary_pages(
    app: FastAPI, client: httpx.AsyncClient, organizer: User, params: dict[str, object]
) -> None:
    await make_event(app, organizer, starts_at=future(2))
    await make_event(app, organizer, title="Jazz Festival Warmup", tags=[], starts_at=future(3))
    brunch = await make_event(
        app,
        organizer,
        title="Jazz Brunch",
        tiers=[{"name": "Free", "price": 0, "quantity": 10}],
        starts_at=future(4),
    )
    await run_sql(
        app,
        "UPDATE events SET image_url = 'https://example.com/brunch.jpg' WHERE id = :id",
        id=brunch.id,
    )
    async with driver_connection(app.state.engine) as connection:
        items, next_cursor = await SearchService(connection).search(
            SearchParams.model_validate(params)
        )
    assert items
    expected = to_json(
        Page[EventSummary](
            items=[EventSummary.model_construct(**item) for item in items],
            next_cursor=next_cursor,
        )
    )
    response = await client.get("/search", params=params)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    # The route's bytes are that encoding (the cursor's `as_of` differs between the two calls).
    assert [item["id"] for item in body["items"]] == [str(item["id"]) for item in items]
    assert response.content == to_json(
        Page[EventSummary](
            items=[EventSummary.model_validate(item) for item in body["items"]],
            next_cursor=body["next_cursor"],
        )
    )
    assert encode_page(items, next_cursor) == expected
