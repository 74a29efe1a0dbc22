"""Keyset pages: every event exactly once, in order, while events are being added."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.factories import future, make_event
from tests.search.conftest import all_pages, count_statements, search
from tiketi.users.models import User

SAME_TIME = future(9)


async def _ties(app: FastAPI, organizer: User, count: int = 5) -> set[str]:
    """Identical events: same start, same price, same text, so only the id breaks ties."""
    ids = set()
    for _ in range(count):
        event = await make_event(
            app,
            organizer,
            title="Reggae Sunday",
            description="Roots and dub.",
            tags=["reggae"],
            starts_at=SAME_TIME,
            tiers=[{"name": "Regular", "price": 800, "quantity": 100}],
        )
        ids.add(str(event.id))
    return ids


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"sort": "price"},
        {"q": "reggae"},
        {"q": "regae sundae"},  # the trigram fallback
        {"q": "reggae", "sort": "date"},
        {"q": "reggae", "sort": "price"},
        {"city": "nairobi", "tags": "reggae", "max_price": 1000},
    ],
    ids=["date", "price", "relevance", "fuzzy", "q-date", "q-price", "filters"],
)
async def test_each_event_exactly_once_across_pages(
    app: FastAPI, client: httpx.AsyncClient, organizer: User, params: dict[str, Any]
) -> None:
    ids = await _ties(app, organizer)
    for day in (2, 4, 7):
        event = await make_event(
            app,
            organizer,
            title="Reggae Sunday Special",
            description="Roots and dub.",
            tags=["reggae"],
            starts_at=future(day),
            tiers=[{"name": "Regular", "price": 100 * day, "quantity": 100}],
        )
        ids.add(str(event.id))

    whole = (await search(client, **params, limit=100))["items"]
    paged = await all_pages(client, **params, limit=2)
    assert [i["id"] for i in paged] == [i["id"] for i in whole]
    assert {i["id"] for i in paged} == ids


async def test_pages_stay_stable_while_events_are_added(
    app: FastAPI, client: httpx.AsyncClient, organizer: User
) -> None:
    original = {
        str((await make_event(app, organizer, title=f"Gig {day}", starts_at=future(day))).id)
        for day in (2, 3, 5, 8, 13)
    }
    seen: list[str] = []
    first = await search(client, limit=2)
    seen += [i["id"] for i in first["items"]]
    # One event before the cursor (it is not shown again), one after it (it is).
    await make_event(app, organizer, title="Early Gig", starts_at=future(1))
    late = await make_event(app, organizer, title="Late Gig", starts_at=future(20))

    cursor = first["next_cursor"]
    while cursor:
        page = await search(client, limit=2, cursor=cursor)
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
    assert len(seen) == len(set(seen))
    assert set(seen) == original | {str(late.id)}


async def test_relevance_pages_stay_stable_while_events_are_added(
    app: FastAPI, client: httpx.AsyncClient, organizer: User
) -> None:
    original = {
        str(
            (
                await make_event(
                    app, organizer, title=f"Jazz Night {day}", tags=["jazz"], starts_at=future(day)
                )
            ).id
        )
        for day in (2, 3, 5, 8)
    }
    first = await search(client, q="jazz", limit=2)
    seen = [i["id"] for i in first["items"]]
    await make_event(app, organizer, title="Jazz Jazz Jazz", tags=["jazz"], starts_at=future(1))
    second = await search(client, q="jazz", limit=10, cursor=first["next_cursor"])
    seen += [i["id"] for i in second["items"]]
    assert len(seen) == len(set(seen))
    assert original <= set(seen)


async def test_one_statement_per_page(
    app: FastAPI, client: httpx.AsyncClient, organizer: User
) -> None:
    await _ties(app, organizer, count=3)
    for params in ({}, {"q": "reggae"}, {"q": "regae"}, {"sort": "price", "free": "false"}):
        with count_statements(app) as statements:
            page = await search(client, **params, limit=2)
            await search(client, **params, limit=2, cursor=page["next_cursor"])
        assert len(statements) == 2, statements


def _forge(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


async def test_bad_cursors_are_422(
    app: FastAPI, client: httpx.AsyncClient, organizer: User
) -> None:
    await _ties(app, organizer, count=3)
    jazz_cursor = (await search(client, q="reggae", limit=1))["next_cursor"]
    date_cursor = (await search(client, limit=1))["next_cursor"]
    assert jazz_cursor and date_cursor

    bad = [
        {"cursor": "%%%"},
        {"cursor": "not-base64!"},
        {"cursor": _forge(["s1", "x", "all", {"t": "2026-01-01T00:00:00+00:00"}])},
        {"cursor": _forge(["s1", "x", "all", None, None, None])},
        {"cursor": _forge({"a": 1})},
        {"cursor": _forge(["s1", "x", "all", {"t": "2026-01-01T00:00:00+00:00"}, 1, 2])},
        {"cursor": "A" * 1025},
        {"cursor": jazz_cursor, "q": "roots"},  # another search
        {"cursor": jazz_cursor, "q": "reggae", "sort": "date"},
        {"cursor": date_cursor, "sort": "price"},
        {"cursor": date_cursor, "city": "Mombasa"},
        {"cursor": date_cursor, "q": "reggae"},
    ]
    for params in bad:
        response = await client.get("/search", params=params)
        assert response.status_code == 422, (params, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] in {"invalid_cursor", "validation_error"}


def _tamper(cursor: str, index: int, value: Any) -> str:
    payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    payload[index] = value
    return _forge(payload)


async def test_tampered_cursors_of_the_same_search_are_422(
    app: FastAPI, client: httpx.AsyncClient, organizer: User
) -> None:
    await _ties(app, organizer, count=3)
    price = (await search(client, sort="price", limit=1))["next_cursor"]
    phrase = (await search(client, q='"reggae sunday"', limit=1))["next_cursor"]
    ranked = (await search(client, q="reggae", limit=1))["next_cursor"]
    tampered = [
        ({"sort": "price"}, _tamper(price, 4, 10**30)),  # not an int4
        ({"sort": "price"}, _tamper(price, 4, -1)),
        ({"sort": "price"}, _tamper(price, 2, "fts")),  # no query, no text mode
        ({"q": '"reggae sunday"'}, _tamper(phrase, 2, "fuzzy")),  # a phrase has no fallback
        ({"q": '"reggae sunday"'}, _tamper(phrase, 2, "all")),
        ({"q": "reggae"}, _tamper(ranked, 4, float("nan"))),
        ({"q": "reggae"}, _tamper(ranked, 4, float("inf"))),
        ({"q": "reggae"}, _tamper(ranked, 4, "1.0")),
        ({"q": "reggae"}, _tamper(ranked, 0, "s0")),
    ]
    for params, cursor in tampered:
        response = await client.get("/search", params={**params, "limit": 1, "cursor": cursor})
        assert response.status_code == 422, (params, response.text)
        assert response.json()["code"] == "invalid_cursor"
