"""Sold-out tiers, remembered per process for a moment.

After a flash sale sells out, most buyers are still pressing "buy": every one of those
requests would read the tier and the event only to answer 409. Each process remembers the
tiers it saw with nothing left for `PUBLIC_CACHE_SECONDS` (default 1 s), and answers an order
for them without a query. A released hold (expiry, cancellation, a failed payment) reaches
every process through the availability notification (`events/live.py`) and forgets the event's
tiers at once, so the memory never hides capacity for longer than that notification takes —
or than the TTL, if notifications are down. It never takes a hold: those always go through
the conditional UPDATE, so it can make a buyer wait less but never sell what is not there.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SoldOutTier:
    event_id: uuid.UUID
    name: str
    max_per_order: int
    seen_at: float


class SoldOutTiers:
    def __init__(self, *, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._tiers: dict[uuid.UUID, SoldOutTier] = {}
        self.hits = 0  # for tests and metrics

    def remember(
        self, *, event_id: uuid.UUID, tier_id: uuid.UUID, name: str, max_per_order: int
    ) -> None:
        """The tier of `event_id` had nothing left (read in a transaction just now)."""
        if self.ttl_seconds <= 0:
            return
        self._tiers.pop(tier_id, None)
        if len(self._tiers) >= self.max_entries:
            self._tiers.pop(next(iter(self._tiers)))
        self._tiers[tier_id] = SoldOutTier(event_id, name, max_per_order, time.monotonic())

    def answer(
        self, event_id: uuid.UUID, lines: Sequence[tuple[uuid.UUID, int]]
    ) -> SoldOutTier | None:
        """The tier to report sold out if *every* line asks for a remembered sold-out tier of
        this event within its per-order limit — exactly when a full check would also answer
        "sold out" for the first line; else None (let the database decide)."""
        if not self._tiers or not lines:
            return None
        now = time.monotonic()
        found: list[SoldOutTier] = []
        for tier_id, quantity in lines:
            tier = self._tiers.get(tier_id)
            if tier is None or tier.event_id != event_id or quantity > tier.max_per_order:
                return None
            if now - tier.seen_at >= self.ttl_seconds:
                del self._tiers[tier_id]
                return None
            found.append(tier)
        self.hits += 1
        return found[0]

    def forget(self, event_id: uuid.UUID | None) -> None:
        """Capacity of the event may have come back (None: of any event)."""
        if event_id is None:
            self._tiers.clear()
            return
        for tier_id in [t for t, tier in self._tiers.items() if tier.event_id == event_id]:
            del self._tiers[tier_id]
