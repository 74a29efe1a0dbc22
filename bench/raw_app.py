"""The `event_read` baseline: `GET /events/{id}` as a minimal Starlette + asyncpg endpoint.

It runs the same two statements as tiketi (captured from tiketi's EventRepository at startup,
so they stay the same when the repository changes) and answers the same JSON document
(`EventRead`: the event, its tiers, `available` and `on_sale`), with none of the framework:
no dependency injection, no ORM session or transaction, no pydantic, no middleware.

Served by uvicorn like tiketi: `uvicorn bench.raw_app:app --workers N` with uvloop/httptools.
Environment: BENCH_RAW_DSN (asyncpg DSN), BENCH_RAW_POOL (pool size, default 10: tiketi's
DB_POOL_SIZE + DB_MAX_OVERFLOW).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.sqlcapture import capture

_sql: dict[str, str] = {}
_pool: asyncpg.Pool | None = None


async def _capture_sql() -> None:
    from tiketi.events.repository import EventRepository

    probe = uuid.uuid4()
    (detail,) = await capture(lambda s: EventRepository(s).detail(probe))  # type: ignore[arg-type]
    (tiers,) = await capture(lambda s: EventRepository(s).tiers(probe))  # type: ignore[arg-type]
    if detail.args != (probe,) or tiers.args != (probe,):
        raise RuntimeError("tiketi's event queries changed shape; update bench/raw_app.py")
    _sql["detail"] = detail.sql
    _sql["tiers"] = tiers.sql


@asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    global _pool
    await _capture_sql()
    size = int(os.environ.get("BENCH_RAW_POOL", "10"))
    _pool = await asyncpg.create_pool(
        os.environ["BENCH_RAW_DSN"],
        min_size=size,
        max_size=size,
        server_settings={"application_name": "tiketi-bench-raw", "timezone": "UTC"},
    )
    try:
        yield
    finally:
        await _pool.close()


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _on_sale(status: str, starts_at: datetime, tier: Any, now: datetime) -> bool:
    if status != "published" or now >= starts_at:
        return False
    if tier["sales_start"] is not None and now < tier["sales_start"]:
        return False
    return not (tier["sales_end"] is not None and now >= tier["sales_end"])


_NOT_FOUND = Response(
    b'{"type":"about:blank","title":"Not Found","status":404,"code":"not_found"}',
    status_code=404,
    media_type="application/problem+json",
)


async def read_event(request: Request) -> Response:
    try:
        event_id = uuid.UUID(request.path_params["event_id"])
    except ValueError:
        return _NOT_FOUND
    assert _pool is not None
    async with _pool.acquire() as conn:
        row = await conn.fetchrow(_sql["detail"], event_id)
        if row is None or row["status"] == "draft":
            return _NOT_FOUND
        tiers = await conn.fetch(_sql["tiers"], event_id)
    now = datetime.now(UTC)
    status, starts_at = row["status"], row["starts_at"]
    document = {
        "id": str(row["id"]),
        "organizer_id": str(row["organizer_id"]),
        "title": row["title"],
        "description": row["description"],
        "category": row["category"],
        "tags": list(row["tags"] or []),
        "venue": row["venue"],
        "city": row["city"],
        "address": row["address"],
        "latitude": float(row["latitude"]) if row["latitude"] is not None else None,
        "longitude": float(row["longitude"]) if row["longitude"] is not None else None,
        "starts_at": _iso(starts_at),
        "ends_at": _iso(row["ends_at"]),
        "timezone": row["timezone"],
        "image_url": row["image_url"],
        "status": status,
        "ticket_types": [
            {
                "id": str(t["id"]),
                "name": t["name"],
                "description": t["description"],
                "price": t["price"],
                "quantity": t["quantity"],
                "available": t["quantity"] - t["sold"] - t["held"],
                "sales_start": _iso(t["sales_start"]),
                "sales_end": _iso(t["sales_end"]),
                "max_per_order": t["max_per_order"],
                "on_sale": _on_sale(status, starts_at, t, now),
            }
            for t in tiers
        ],
        "published_at": _iso(row["published_at"]),
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, media_type="application/json")


async def live(_request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


app = Starlette(
    routes=[Route("/events/{event_id}", read_event), Route("/health/live", live)],
    lifespan=lifespan,
)
