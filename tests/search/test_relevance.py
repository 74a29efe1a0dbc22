"""Relevance: field weights, phrases, web-search syntax, accents, categories as words."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.factories import future, make_event
from tests.search.conftest import search, titles
from tiketi.users.models import User


async def test_title_beats_tags_beats_venue_beats_description(
    app: FastAPI, client: httpx.AsyncClient, organizer: User
) -> None:
    # The later the event, the better its field: the boost for "soon" must not reorder them.
    await make_event(
        app,
        organizer,
        title="Beach Party",
        description="Dance on the sand and watch the tamasha of colours.",
        tags=["party"],
        venue="Nyali Beach",
        starts_at=future(1),
    )
    await make_event(
        app,
        organizer,
        title="Open Air Cinema",
        description="Films under the stars.",
        tags=["film"],
        venue="Tamasha Gardens",
        starts_at=future(2),
    )
    await make_event(
        app,
        organizer,
        title="Acoustic Evening",
        description="Guitars and a fire pit.",
        tags=["tamasha", "acoustic"],
        starts_at=future(3),
    )
    await make_event(
        app,
        organizer,
        title="Tamasha la Pwani",
        description="Music from the coast.",
        tags=["coast"],
        starts_at=future(60),
    )

    page = await search(client, q="tamasha")
    assert titles(page) == [
        "Tamasha la Pwani",
        "Acoustic Evening",
        "Open Air Cinema",
        "Beach Party",
    ]


async def test_exact_phrase_beats_scattered_words(
    app: FastAPI, client: httpx.AsyncClient, organizer: User
) -> None:
    await make_event(
        app,
        organizer,
        title="Jazz Brunch and Food Festival",
        description="Pancakes and a band.",
        tags=["brunch"],
        starts_at=future(1),
    )
    await make_event(
        app,
        organizer,
        title="Safari Jazz Festival",
        description="Three days of music.",
        tags=["music"],
        starts_at=future(45),
    )

    assert titles(await search(client, q="jazz festival")) == [
        "Safari Jazz Festival",
        "Jazz Brunch and Food Festival",
    ]
    # Web-search syntax: a quoted phrase, an exclusion, `or`.
    assert titles(await search(client, q='"jazz festival"')) == ["Safari Jazz Festival"]
    assert titles(await search(client, q="jazz -brunch")) == ["Safari Jazz Festival"]
    assert set(titles(await search(client, q="pancakes or safari"))) == {
        "Safari Jazz Festival",
        "Jazz Brunch and Food Festival",
    }
    # Relevance is the default order with a query; `sort=date` still matches the same way.
    assert titles(await search(client, q="jazz festival", sort="date")) == [
        "Jazz Brunch and Food Festival",
        "Safari Jazz Festival",
    ]


async def test_case_and_accents_do_not_matter(
    app: FastAPI, client: httpx.AsyncClient, organizer: User
) -> None:
    await make_event(
        app,
        organizer,
        title="Fête de la Musique",
        description="Musique partout.",
        tags=["french"],
        venue="Alliance Française de Nairobi",
    )
    await make_event(
        app, organizer, title="Cafe Poetry Evening", description="Spoken word.", tags=["poetry"]
    )

    for q in ("fete", "FÊTE", "fête musique", "alliance francaise"):
        assert titles(await search(client, q=q)) == ["Fête de la Musique"], q
    assert titles(await search(client, q="Café")) == ["Cafe Poetry Evening"]


async def test_words_naming_a_category_match_its_events(
    app: FastAPI, client: httpx.AsyncClient, organizer: User
) -> None:
    await make_event(
        app,
        organizer,
        title="Churchill Show Live",
        category="comedy",
        description="Stand-up from the best.",
        tags=["stand-up"],
    )
    await make_event(
        app,
        organizer,
        title="Benga Night",
        category="music",
        description="Dance all night.",
        tags=["benga"],
    )
    await make_event(
        app,
        organizer,
        title="Sifa Concert",
        category="religious",  # named "Faith & Gospel"
        description="Choirs from across the country.",
        tags=["choir"],
        city="Kisumu",
    )

    assert titles(await search(client, q="comedy")) == ["Churchill Show Live"]
    assert titles(await search(client, q="Comedy Nairobi")) == ["Churchill Show Live"]
    assert titles(await search(client, q="nairobi -comedy")) == ["Benga Night"]
    assert titles(await search(client, q="gospel kisumu")) == ["Sifa Concert"]
    # Tags, venue and city are part of the text too.
    assert titles(await search(client, q="benga")) == ["Benga Night"]
    assert set(titles(await search(client, q="carnivore grounds"))) == {
        "Churchill Show Live",
        "Benga Night",
        "Sifa Concert",
    }
