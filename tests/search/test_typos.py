"""The trigram fallback: typos find their event; it only steps in when full text finds little."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.factories import future, make_event
from tests.search.conftest import all_pages, search, titles
from tiketi.users.models import User


async def _catalogue(app: FastAPI, organizer: User) -> None:
    await make_event(
        app,
        organizer,
        title="Nairobi Jazz Festival",
        description="Kenyan jazz under the stars.",
        tags=["jazz"],
        venue="Carnivore Grounds",
    )
    await make_event(
        app,
        organizer,
        title="Mashemeji Derby",
        category="sports",
        description="Gor Mahia against AFC Leopards.",
        tags=["football"],
        venue="Moi International Sports Centre Kasarani",
    )
    await make_event(
        app,
        organizer,
        title="Mombasa Carnival",
        category="festivals",
        description="Floats and taarab down Moi Avenue.",
        tags=["carnival"],
        venue="Mama Ngina Waterfront",
        city="Mombasa",
    )


async def test_typo_queries_find_their_event(
    app: FastAPI, client: httpx.AsyncClient, organizer: User
) -> None:
    await _catalogue(app, organizer)

    assert titles(await search(client, q="nairobbi jaz festval"))[0] == "Nairobi Jazz Festival"
    assert titles(await search(client, q="Nairobi Jaz Festivall"))[0] == "Nairobi Jazz Festival"
    assert titles(await search(client, q="kasaranii")) == ["Mashemeji Derby"]
    assert titles(await search(client, q="mombsa karnival"))[0] == "Mombasa Carnival"
    assert titles(await search(client, q="mashemegi derbby"))[0] == "Mashemeji Derby"
    # Nothing alike: nothing found. Every wanted word needs a look-alike, and excluded words
    # never attract any.
    assert titles(await search(client, q="eldoret marathon")) == []
    assert titles(await search(client, q="nairobbi marathon")) == []
    assert titles(await search(client, q="kasaranii -derby")) == []
    # A quoted phrase asks for exact words.
    assert titles(await search(client, q='"nairobi jaz festival"')) == []


async def test_fallback_only_when_full_text_finds_little(
    app: FastAPI, client: httpx.AsyncClient, organizer: User
) -> None:
    for day, title in enumerate(("Jazz on the Lawn", "Jazz Brunch", "Sunday Jazz"), start=1):
        await make_event(
            app, organizer, title=title, description="Music.", tags=["live"], starts_at=future(day)
        )
    await make_event(app, organizer, title="Jaz Bar Opening", description="Drinks.", tags=["bar"])

    # Three full-text matches: enough, no look-alikes.
    assert set(titles(await search(client, q="jazz"))) == {
        "Jazz on the Lawn",
        "Jazz Brunch",
        "Sunday Jazz",
    }
    # One full-text match: the look-alikes join, after it.
    page = await search(client, q="jaz")
    assert titles(page)[0] == "Jaz Bar Opening"
    assert set(titles(page)) == {
        "Jaz Bar Opening",
        "Jazz on the Lawn",
        "Jazz Brunch",
        "Sunday Jazz",
    }


async def test_fallback_pages_deterministically(
    app: FastAPI, client: httpx.AsyncClient, organizer: User
) -> None:
    ids = set()
    for day in (5, 5, 9, 12, 30):  # identical titles: equal similarity, ties broken by id
        event = await make_event(
            app,
            organizer,
            title="Nairobi Jazz Festival",
            description="Under the stars.",
            tags=["jazz"],
            starts_at=future(day),
        )
        ids.add(str(event.id))

    one_page = await search(client, q="nairobbi jaz festval", limit=100)
    items = await all_pages(client, q="nairobbi jaz festval", limit=2)
    assert [i["id"] for i in items] == [i["id"] for i in one_page["items"]]
    assert len(items) == 5
    assert {i["id"] for i in items} == ids
