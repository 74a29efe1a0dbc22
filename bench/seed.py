"""Seeding straight over asyncpg: set-based INSERTs, thousands of rows in milliseconds.

Rows are shaped exactly as the services write them (statuses, counters, expiry, one shared
argon2 hash), so the API treats them like any other: the CHECK constraints of the schema
(`sold + held <= quantity`, phone format, statuses) validate every row inserted here.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

PASSWORD = "bench-Password-2026"  # noqa: S105 - a benchmark account's password
_password_hash: str | None = None


async def password_hash() -> str:
    """One argon2id hash of PASSWORD with the app's parameters, shared by every account."""
    global _password_hash
    if _password_hash is None:
        from tiketi.core.security import password_context

        _password_hash = str(await asyncio.to_thread(password_context.hash, PASSWORD))
    return _password_hash


@dataclass(frozen=True)
class Account:
    id: uuid.UUID
    email: str
    phone: str


async def create_users(
    conn: asyncpg.Connection, count: int, *, prefix: str, role: str = "customer"
) -> list[Account]:
    """`count` accounts `<prefix><n>@bench.tiketi.test` with the shared password hash."""
    hashed = await password_hash()
    rows = await conn.fetch(
        """
        INSERT INTO users (email, phone_number, first_name, last_name, password_hash, role)
        SELECT $1 || g || '@bench.tiketi.test',
               '2547' || lpad((g % 100000000)::text, 8, '0'),
               'Bench', 'User ' || g, $2, $3
        FROM generate_series(1, $4::int) AS g
        RETURNING id, email::text AS email, phone_number
        """,
        prefix,
        hashed,
        role,
        count,
    )
    accounts = [Account(r["id"], r["email"], r["phone_number"]) for r in rows]
    accounts.sort(key=lambda a: int(a.email.split("@")[0].removeprefix(prefix)))
    return accounts


@dataclass(frozen=True)
class Tier:
    id: uuid.UUID
    name: str
    price: int
    quantity: int


@dataclass(frozen=True)
class SeededEvent:
    id: uuid.UUID
    tiers: list[Tier]


async def create_event(
    conn: asyncpg.Connection,
    organizer_id: uuid.UUID,
    *,
    title: str,
    tiers: list[tuple[str, int, int, int]],
    category: str = "music",
    days_ahead: int = 30,
) -> SeededEvent:
    """A published event starting in `days_ahead` days with tiers (name, price, quantity,
    max_per_order), like EventService.create + add_ticket_type + publish would leave it."""
    starts_at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=days_ahead)
    event_id = await conn.fetchval(
        """
        INSERT INTO events (organizer_id, category_id, title, description, tags, venue, city,
                            address, starts_at, ends_at, status, published_at)
        SELECT $1, c.id, $2, $3, $4::varchar[], 'Carnivore Grounds', 'Nairobi',
               'Langata Road', $5, $6, 'published', now()
        FROM categories AS c WHERE c.slug = $7
        RETURNING id
        """,
        organizer_id,
        title,
        "A benchmark event: two stages of Kenyan jazz under the stars.",
        ["jazz", "live music", "outdoor"],
        starts_at,
        starts_at + timedelta(hours=6),
        category,
    )
    if event_id is None:
        raise RuntimeError(f"no category {category!r}: were the migrations run?")
    created: list[Tier] = []
    for order, (name, price, quantity, max_per_order) in enumerate(tiers):
        tier_id = await conn.fetchval(
            """
            INSERT INTO ticket_types (event_id, name, description, price, quantity,
                                      max_per_order, sort_order)
            VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id
            """,
            event_id,
            name,
            f"{name} admission",
            price,
            quantity,
            max_per_order,
            order,
        )
        created.append(Tier(tier_id, name, price, quantity))
    return SeededEvent(event_id, created)


@dataclass(frozen=True)
class PendingPayment:
    """An order holding tickets with a pending STK payment, as `POST /orders` then
    `POST /payments/mpesa` (push accepted by Daraja) leave it."""

    order_id: uuid.UUID
    payment_id: uuid.UUID
    buyer: Account
    quantity: int
    amount: int
    checkout_request_id: str
    merchant_request_id: str


async def create_pending_payments(
    conn: asyncpg.Connection,
    *,
    event: SeededEvent,
    buyers: list[Account],
    quantities: list[int],
    tag: str,
) -> list[PendingPayment]:
    """One pending order (one line on the event's first tier, `quantities[i]` tickets, its
    hold taken) and one pending payment with a known checkout id per buyer, in one
    transaction."""
    tier = event.tiers[0]
    pending: list[PendingPayment] = []
    for buyer, quantity in zip(buyers, quantities, strict=True):
        suffix = secrets.token_hex(6)
        pending.append(
            PendingPayment(
                order_id=uuid.uuid4(),
                payment_id=uuid.uuid4(),
                buyer=buyer,
                quantity=quantity,
                amount=quantity * tier.price,
                checkout_request_id=f"ws_CO_{tag}_{suffix}",
                merchant_request_id=f"{secrets.token_hex(2)}-{tag}-{suffix}",
            )
        )
    order_ids = [p.order_id for p in pending]
    async with conn.transaction():
        await conn.execute(
            """
            INSERT INTO orders (id, buyer_id, event_id, status, total, expires_at)
            SELECT o.id, o.buyer, $3, 'pending', o.total, now() + interval '30 minutes'
            FROM unnest($1::uuid[], $2::uuid[], $4::int[]) AS o(id, buyer, total)
            """,
            order_ids,
            [p.buyer.id for p in pending],
            event.id,
            [p.amount for p in pending],
        )
        await conn.execute(
            """
            INSERT INTO order_items (order_id, ticket_type_id, name, quantity, unit_price)
            SELECT i.order_id, $2, $3, i.quantity, $4
            FROM unnest($1::uuid[], $5::int[]) AS i(order_id, quantity)
            """,
            order_ids,
            tier.id,
            tier.name,
            tier.price,
            [p.quantity for p in pending],
        )
        await conn.execute(
            "UPDATE ticket_types SET held = held + $2 WHERE id = $1",
            tier.id,
            sum(p.quantity for p in pending),
        )
        await conn.execute(
            """
            INSERT INTO payments (id, order_id, payer_id, amount, phone_number,
                                  account_reference, status, merchant_request_id,
                                  checkout_request_id, customer_message, next_query_at)
            SELECT p.id, p.order_id, p.payer, p.amount, p.phone,
                   'TKT' || upper(substr(replace(p.order_id::text, '-', ''), 1, 9)),
                   'pending', p.merchant, p.checkout,
                   'Success. Request accepted for processing', now() + interval '1 hour'
            FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::int[], $5::text[],
                        $6::text[], $7::text[])
                 AS p(id, order_id, payer, amount, phone, merchant, checkout)
            """,
            [p.payment_id for p in pending],
            order_ids,
            [p.buyer.id for p in pending],
            [p.amount for p in pending],
            [p.buyer.phone for p in pending],
            [p.merchant_request_id for p in pending],
            [p.checkout_request_id for p in pending],
        )
    return pending
