"""Search's derived table: the cheapest ticket on sale of every event, as time intervals.

The price filters and `sort=price` compare the cheapest tier *on sale* at a moment (the event
not started, the moment inside the tier's sales window). That price is a step function of
time whose steps are the tiers' `sales_start`/`sales_end` and the event's start, so it can be
stored: one row per step, kept exact by triggers on `events` and `ticket_types` (migration
0008), with `price = NO_PRICE` where nothing is on sale. Exactly one row of an event is valid
at any moment before it ends, and the index on (price, starts_at, event_id) hands out events
in the order of the price sort, so a page reads about as many rows as it shows. The columns
the filters need (start, end, status, city key, category) are copied from `events` and
INCLUDEd in that index: a filtered price sort is checked in the index, and visits `events`
only for the rows it keeps.

Written only by those triggers; read only by `SearchRepository` (Core).
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import UUID

from tiketi.core.database import Base

# Where nothing is on sale; sorts after every real price (prices are at most 1,000,000).
NO_PRICE = 2_147_483_647

SALE_PRICES = Table(
    "event_sale_prices",
    Base.metadata,
    Column(
        "event_id",
        UUID(as_uuid=True),
        ForeignKey("events.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    # [valid_from, valid_until): -infinity before the first step; the last step ends with the
    # event (ends_at), so an event that has ended has no valid row.
    Column("valid_from", DateTime(timezone=True), primary_key=True),
    Column("valid_until", DateTime(timezone=True), nullable=False),
    Column("price", Integer, nullable=False),
    # events.starts_at, copied: the second key of the price sort, read from the same index.
    Column("starts_at", DateTime(timezone=True), nullable=False),
    # Copied from events for the filters a price sort checks in the index, before visiting
    # `events` for the rows it keeps.
    Column("ends_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),
    Column("city_key", Text),
    Column("category_id", UUID(as_uuid=True), nullable=False),
    CheckConstraint("valid_until > valid_from", name="interval"),
    CheckConstraint("price >= 0", name="price"),
    Index(
        "ix_event_sale_prices_price_starts_at_event_id",
        "price",
        "starts_at",
        "event_id",
        postgresql_include=[
            "valid_from",
            "valid_until",
            "status",
            "ends_at",
            "city_key",
            "category_id",
        ],
    ),
)
