"""Only published events that have not ended: never drafts, cancelled or ended ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI

from tests.factories import make_event
from tests.search.conftest import cancel_event, end_event, run_sql, search, titles
from tiketi.users.models import User


async def test_drafts_cancelled_and_ended_events_never_appear(
    app: FastAPI, client: httpx.AsyncClient, organizer: User
) -> None:
    common = {"description": "Kenyan jazz.", "tags": ["jazz", "outdoor"], "city": "Nairobi"}
    await make_event(app, organizer, title="Jazz Open", **common)
    await make_event(app, organizer, title="Jazz Draft", publish=False, **common)
    cancelled = await make_event(app, organizer, title="Jazz Cancelled", **common)
    await cancel_event(app, cancelled.id)
    ended = await make_event(app, organizer, title="Jazz Ended", **common)
    await end_event(app, ended.id)
    # Started two hours ago, ends tomorrow: still on, so still found.
    ongoing = await make_event(app, organizer, title="Jazz Weekend", **common)
    await run_sql(
        app,
        "UPDATE events SET starts_at = :start, ends_at = :end WHERE id = :id",
        start=datetime.now(UTC) - timedelta(hours=2),
        end=datetime.now(UTC) + timedelta(days=1),
        id=ongoing.id,
    )

    visible = {"Jazz Open", "Jazz Weekend"}
    for params in (
        {},
        {"q": "jazz"},
        {"q": "jaz"},  # the trigram fallback
        {"q": "kenyan", "sort": "date"},
        {"city": "nairobi"},
        {"tags": "jazz,outdoor"},
        {"category": "music", "sort": "price"},
        {"max_price": 5000},
    ):
        found = set(titles(await search(client, **params)))
        assert found <= visible, params
        assert "Jazz Open" in found, params
    assert set(titles(await search(client, q="jazz"))) == visible
