"""The anonymous event page, served from memory for at most a second.

`GET /events/{id}` without a token is the hottest read of a sale: everyone refreshing the page
of the concert that goes on sale at noon. The answer is the same bytes for every anonymous
reader, so each process keeps the encoded document for `PUBLIC_CACHE_SECONDS` (default 1 s;
0 turns the cache off) and builds it once per miss however many readers arrive together
(single flight). Availability changes arrive through the availability LISTEN connection
(`events/live.py`, any process's hold or sale) and drop the entry at once, so counters are
not stale for longer than the notification takes; edits of the event itself are visible
within the TTL. Authenticated readers (owners see drafts, buyers their own view) never use
it. Drafts and unknown ids are not cached: they answer 404 through the database every time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tiketi.core.responses import to_json
from tiketi.core.settings import Settings
from tiketi.events.schemas import EventRead
from tiketi.events.service import EventService

Loader = Callable[[uuid.UUID], Awaitable[EventRead]]


class PublicEventCache:
    def __init__(self, load: Loader, *, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self._load = load
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[uuid.UUID, tuple[float, bytes]] = {}
        self._filling: dict[uuid.UUID, asyncio.Future[bytes]] = {}
        # Counters for tests and metrics.
        self.hits = 0
        self.loads = 0

    @property
    def enabled(self) -> bool:
        return self.ttl_seconds > 0

    async def document(self, event_id: uuid.UUID) -> bytes:
        """The event's public JSON document; raises what the loader raises (404, 503...)."""
        entry = self._entries.get(event_id)
        if entry is not None and time.monotonic() - entry[0] < self.ttl_seconds:
            self.hits += 1
            return entry[1]
        pending = self._filling.get(event_id)
        if pending is not None:
            # Shielded: one reader going away must not cancel the load the others wait on.
            return await asyncio.shield(pending)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._filling[event_id] = future
        try:
            document = await self._encode(event_id)
        except BaseException as error:
            if self._filling.get(event_id) is future:
                del self._filling[event_id]
            if isinstance(error, Exception):
                future.set_exception(error)
                future.exception()  # retrieved: no "never retrieved" warning without waiters
            else:
                future.cancel()
            raise
        # Store only if no change was announced while it loaded (`forget` drops the flight).
        if self._filling.get(event_id) is future:
            del self._filling[event_id]
            self._store(event_id, document)
        future.set_result(document)
        return document

    def forget(self, event_id: uuid.UUID | None) -> None:
        """The event changed (None: anything may have, e.g. notifications were missed)."""
        if event_id is None:
            self._entries.clear()
            self._filling.clear()
            return
        self._entries.pop(event_id, None)
        self._filling.pop(event_id, None)

    async def _encode(self, event_id: uuid.UUID) -> bytes:
        self.loads += 1
        event = await self._load(event_id)
        return to_json(event)

    def _store(self, event_id: uuid.UUID, document: bytes) -> None:
        self._entries.pop(event_id, None)
        if len(self._entries) >= self.max_entries:
            # Oldest first (dicts keep insertion order): bounded memory for any id pattern.
            self._entries.pop(next(iter(self._entries)))
        self._entries[event_id] = (time.monotonic(), document)


def public_event_cache(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> PublicEventCache:
    """The cache, loading through a short session of its own (released before the answer)."""

    async def load(event_id: uuid.UUID) -> EventRead:
        async with sessionmaker() as session:
            return await EventService(session).view(event_id, None)

    return PublicEventCache(load, ttl_seconds=settings.public_cache_seconds)
