"""Every filter alone and combined; prices against the cheapest ticket on sale."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI

from tests.factories import future, make_event
from tests.search.conftest import search, titles
from tiketi.users.models import User

EAT = ZoneInfo("Africa/Nairobi")


@pytest.fixture
async def catalogue(app: FastAPI, organizer: User) -> dict[str, Any]:
    """Five events that differ in every filterable way."""
    past, later = datetime.now(UTC) - timedelta(days=1), future(30)
    return {
        "benga": await make_event(
            app,
            organizer,
            title="Benga Night",
            category="music",
            tags=["benga", "live music"],
            city="Nairobi",
            description="Dance all night.",
            starts_at=future(3),
        ),  # tiers 1500 / 5000 / 2500
        "sevens": await make_event(
            app,
            organizer,
            title="Safari Sevens",
            category="sports",
            tags=["rugby", "outdoor"],
            city="Nairobi",
            description="Rugby weekend.",
            starts_at=future(10),
            tiers=[{"name": "Regular", "price": 1000, "quantity": 500}],
        ),
        "carnival": await make_event(
            app,
            organizer,
            title="Mombasa Carnival",
            category="festivals",
            tags=["carnival", "outdoor", "live music"],
            city="Mombasa",
            description="Floats and taarab.",
            starts_at=future(20),
            tiers=[
                {"name": "Free Entry", "price": 0, "quantity": 1000},
                {"name": "VIP", "price": 3000, "quantity": 50},
            ],
        ),
        "food": await make_event(
            app,
            organizer,
            title="Kisumu Food Fest",
            category="food-drink",
            tags=["food"],
            city="Kisumu",
            description="Fish from the lake.",
            starts_at=future(40),
            tiers=[
                # Early Bird sales are over: the cheapest ticket *on sale* is 1200.
                {"name": "Early Bird", "price": 300, "quantity": 100, "sales_end": past},
                {"name": "Regular", "price": 1200, "quantity": 100},
            ],
        ),
        "thika": await make_event(
            app,
            organizer,
            title="Thika Road Run",
            category="sports",
            tags=["running"],
            city="Thíka",
            description="Ten kilometres.",
            starts_at=future(60),
            # Not on sale yet: no price to compare, sorted after the priced events.
            tiers=[
                {"name": "Regular", "price": 15000, "quantity": 100, "sales_start": later},
            ],
        ),
    }


async def _titles(client: httpx.AsyncClient, **params: Any) -> set[str]:
    return set(titles(await search(client, **params)))


async def test_city_ignores_case_accents_and_spaces(
    client: httpx.AsyncClient, catalogue: dict[str, Any]
) -> None:
    assert await _titles(client, city="nairobi") == {"Benga Night", "Safari Sevens"}
    assert await _titles(client, city="  NAIRÓBI ") == {"Benga Night", "Safari Sevens"}
    assert await _titles(client, city="thika") == {"Thika Road Run"}
    assert await _titles(client, city="Mombasa") == {"Mombasa Carnival"}
    assert await _titles(client, city="Nairob") == set()


async def test_category_and_tags(client: httpx.AsyncClient, catalogue: dict[str, Any]) -> None:
    assert await _titles(client, category="sports") == {"Safari Sevens", "Thika Road Run"}
    assert await _titles(client, category="no-such-category") == set()
    assert await _titles(client, tags="outdoor") == {"Safari Sevens", "Mombasa Carnival"}
    assert await _titles(client, tags="outdoor,live music") == {"Mombasa Carnival"}
    assert await _titles(client, tags=" OUTDOOR , Live  Music,outdoor") == {"Mombasa Carnival"}
    assert await _titles(client, tags="outdoor,unknown") == set()


async def test_date_range(client: httpx.AsyncClient, catalogue: dict[str, Any]) -> None:
    middle = future(15).astimezone(EAT).date().isoformat()
    assert await _titles(client, date_from=middle) == {
        "Mombasa Carnival",
        "Kisumu Food Fest",
        "Thika Road Run",
    }
    assert await _titles(client, date_to=middle) == {"Benga Night", "Safari Sevens"}
    # Date-times are exact and inclusive at both ends.
    sevens = catalogue["sevens"].starts_at
    assert await _titles(
        client, date_from=sevens.isoformat(), date_to=catalogue["carnival"].starts_at.isoformat()
    ) == {"Safari Sevens", "Mombasa Carnival"}
    assert (
        await _titles(
            client,
            date_from=(sevens + timedelta(microseconds=1)).isoformat(),
            date_to=(sevens + timedelta(days=1)).isoformat(),
        )
        == set()
    )


async def test_a_date_is_a_whole_day_in_east_africa(
    app: FastAPI, client: httpx.AsyncClient, organizer: User
) -> None:
    day = (datetime.now(EAT) + timedelta(days=5)).date()
    late = datetime.combine(day, time(23, 30), tzinfo=EAT)  # 20:30 UTC
    await make_event(app, organizer, title="Late Show", starts_at=late)

    assert await _titles(client, date_from=day.isoformat(), date_to=day.isoformat()) == {
        "Late Show"
    }
    assert await _titles(client, date_to=(day - timedelta(days=1)).isoformat()) == set()
    assert await _titles(client, date_from=(day + timedelta(days=1)).isoformat()) == set()


async def test_prices_compare_the_cheapest_ticket_on_sale(
    client: httpx.AsyncClient, catalogue: dict[str, Any]
) -> None:
    assert await _titles(client, min_price=1000) == {
        "Benga Night",
        "Safari Sevens",
        "Kisumu Food Fest",
    }
    assert await _titles(client, max_price=1200) == {
        "Safari Sevens",
        "Mombasa Carnival",
        "Kisumu Food Fest",
    }
    assert await _titles(client, min_price=1100, max_price=1500) == {
        "Benga Night",
        "Kisumu Food Fest",
    }
    assert await _titles(client, free="true") == {"Mombasa Carnival"}
    assert await _titles(client, free="true", min_price=1) == set()

    by_price = await search(client, sort="price")
    assert titles(by_price) == [
        "Mombasa Carnival",
        "Safari Sevens",
        "Kisumu Food Fest",
        "Benga Night",
        "Thika Road Run",
    ]
    # What the summary shows is unchanged: the cheapest tier of all (as on /events).
    food = next(i for i in by_price["items"] if i["title"] == "Kisumu Food Fest")
    assert food["min_price"] == 300


async def test_default_order_is_by_date(
    client: httpx.AsyncClient, catalogue: dict[str, Any]
) -> None:
    expected = [
        "Benga Night",
        "Safari Sevens",
        "Mombasa Carnival",
        "Kisumu Food Fest",
        "Thika Road Run",
    ]
    assert titles(await search(client)) == expected
    assert titles(await search(client, sort="relevance")) == expected  # no query: by date


async def test_filters_combine(client: httpx.AsyncClient, catalogue: dict[str, Any]) -> None:
    start = future(1).isoformat()
    end = future(25).isoformat()
    assert await _titles(
        client,
        q="night",
        city="nairobi",
        category="music",
        tags="benga",
        date_from=start,
        date_to=end,
        min_price=1000,
        max_price=2000,
    ) == {"Benga Night"}
    assert await _titles(client, city="nairobi", tags="outdoor") == {"Safari Sevens"}
    assert await _titles(client, tags="live music", max_price=0) == {"Mombasa Carnival"}
    assert await _titles(client, category="sports", date_from=start, date_to=end) == {
        "Safari Sevens"
    }
    assert await _titles(client, q="rugby", city="mombasa") == set()
    assert await _titles(client, q="carnival", free="true", tags="outdoor") == {"Mombasa Carnival"}
    assert titles(await search(client, city="nairobi", sort="price")) == [
        "Safari Sevens",
        "Benga Night",
    ]
    assert titles(await search(client, q="outdoor", sort="price")) == [
        "Mombasa Carnival",
        "Safari Sevens",
    ]
