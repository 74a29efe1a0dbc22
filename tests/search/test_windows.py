"""Text searches find their matches by start order in one of three ways (a bounded walk, the
text index ANDed with a range of starts, every match), decided in the statement by what the walk
saw; relevance ranks the RANK_WINDOW soonest matches. Shrunk here so a few events show it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.factories import future, make_event
from tests.search.conftest import all_pages, search, titles
from tiketi.search import repository
from tiketi.users.models import User


@pytest.fixture
def small_windows(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(repository, "WALK_ROWS", 4)
    monkeypatch.setattr(repository, "FUZZY_WALK_ROWS", 4)
    monkeypatch.setattr(repository, "WALK_PER_ROW", 1)
    monkeypatch.setattr(repository, "RANK_WINDOW", 3)
    monkeypatch.setattr(repository, "FUZZY_RANK_WINDOW", 3)
    repository._statement.cache_clear()  # statements carry the constants in their text
    yield
    repository._statement.cache_clear()


async def _catalogue(app: FastAPI, organizer: User) -> dict[int, str]:
    """An event a day for 14 days; their descriptions hold the words each pattern matches:
    `dense` the first days (the walk is enough), `near` one early and then a run (the range),
    `sparse` only late ones (the walk sees none: every match)."""
    words = {
        "dense": {1, 2, 3, 5, 9},
        "near": {2, 6, 7, 8, 10},
        "sparse": {11, 13, 14},
    }
    made = {}
    for day in range(1, 15):
        described = " ".join(word for word, days in words.items() if day in days) or "none"
        event = await make_event(
            app,
            organizer,
            title=f"Day {day}",
            description=f"Words: {described}.",
            tags=[],
            starts_at=future(day),
        )
        made[day] = str(event.id)
    return made


@pytest.mark.usefixtures("small_windows")
async def test_every_way_of_finding_matches_gives_the_same_events(
    app: FastAPI, client: httpx.AsyncClient, organizer: User
) -> None:
    await _catalogue(app, organizer)
    expected = {
        "dense": ["Day 1", "Day 2", "Day 3", "Day 5", "Day 9"],
        "near": ["Day 2", "Day 6", "Day 7", "Day 8", "Day 10"],
        "sparse": ["Day 11", "Day 13", "Day 14"],
    }
    for word, days in expected.items():
        for limit in (1, 2, 100):
            page = await search(client, q=word, sort="date", limit=limit)
            assert titles(page) == days[:limit], (word, limit)
            paged = await all_pages(client, q=word, sort="date", limit=limit)
            assert [i["title"] for i in paged] == days, (word, limit)
        # With the price filter, the walk and the index join the stored prices.
        assert titles(await search(client, q=word, sort="date", min_price=1)) == days


@pytest.mark.usefixtures("small_windows")
async def test_relevance_ranks_the_soonest_matches(
    app: FastAPI, client: httpx.AsyncClient, organizer: User
) -> None:
    await _catalogue(app, organizer)
    # The best match (a title) starts after the window of the three soonest matches.
    await make_event(
        app, organizer, title="Dense", description="Title match.", tags=[], starts_at=future(20)
    )
    for word, window in (
        ("dense", {"Day 1", "Day 2", "Day 3"}),
        ("near", {"Day 2", "Day 6", "Day 7"}),
        ("sparse", {"Day 11", "Day 13", "Day 14"}),
    ):
        whole = await search(client, q=word, limit=100)
        assert set(titles(whole)) == window, word
        assert whole["next_cursor"] is None
        paged = await all_pages(client, q=word, limit=1)
        assert [i["id"] for i in paged] == [i["id"] for i in whole["items"]], word


@pytest.mark.usefixtures("small_windows")
async def test_relevance_pages_keep_their_window_while_events_are_added(
    app: FastAPI, client: httpx.AsyncClient, organizer: User
) -> None:
    days = await _catalogue(app, organizer)
    first = await search(client, q="dense", limit=1)
    seen = [i["id"] for i in first["items"]]
    # Inside the window (day 2.5): it slots in before or after the cursor. After the window's
    # end (day 4): it stays out, as day 5 does.
    inside = await make_event(app, organizer, description="dense", starts_at=future(2.5), tags=[])
    await make_event(app, organizer, description="dense", starts_at=future(4), tags=[])
    cursor = first["next_cursor"]
    while cursor:
        page = await search(client, q="dense", limit=1, cursor=cursor)
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
    assert len(seen) == len(set(seen))
    assert {days[1], days[2], days[3]} <= set(seen) <= {days[1], days[2], days[3], str(inside.id)}


async def test_relevance_cursor_window_must_be_whole(
    app: FastAPI, client: httpx.AsyncClient, organizer: User
) -> None:
    from tests.search.test_paging import _tamper

    for _ in range(3):
        await make_event(app, organizer, title="Reggae Sunday", starts_at=future(3))
    cursor: Any = (await search(client, q="reggae", limit=1))["next_cursor"]
    moment, ident = (
        {"t": "2026-01-01T00:00:00+00:00"},
        {"u": "00000000-0000-0000-0000-000000000000"},
    )
    for index, value in ((6, moment), (7, ident), (6, "x"), (7, moment)):
        response = await client.get(
            "/search", params={"q": "reggae", "limit": 1, "cursor": _tamper(cursor, index, value)}
        )
        assert response.status_code == 422, (index, value, response.text)
