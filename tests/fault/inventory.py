"""The money-path invariants, read straight from the database (asyncpg, no app code)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass

import asyncpg

from tiketi.core.embedded import to_asyncpg_dsn

Lines = frozenset[tuple[uuid.UUID, int]]


@dataclass(frozen=True)
class Tier:
    id: uuid.UUID
    name: str
    quantity: int
    sold: int
    held: int
    in_pending_orders: int
    in_paid_orders: int

    def problems(self) -> list[str]:
        found = []
        if self.held != self.in_pending_orders:
            found.append(
                f"{self.name}: held={self.held} but pending orders hold {self.in_pending_orders}"
            )
        if self.sold != self.in_paid_orders:
            found.append(
                f"{self.name}: sold={self.sold} but paid orders have {self.in_paid_orders}"
            )
        if not 0 <= self.sold + self.held <= self.quantity:
            found.append(f"{self.name}: sold+held={self.sold + self.held} > {self.quantity}")
        return found


async def connect(database_url: str) -> asyncpg.Connection:
    return await asyncpg.connect(to_asyncpg_dsn(database_url))


async def tiers(database_url: str, event_id: uuid.UUID) -> list[Tier]:
    conn = await connect(database_url)
    try:
        rows = await conn.fetch(
            """
            SELECT t.id, t.name, t.quantity, t.sold, t.held,
              coalesce((SELECT sum(i.quantity) FROM order_items i JOIN orders o ON o.id = i.order_id
                        WHERE i.ticket_type_id = t.id AND o.status = 'pending'), 0) AS pending,
              coalesce((SELECT sum(i.quantity) FROM order_items i JOIN orders o ON o.id = i.order_id
                        WHERE i.ticket_type_id = t.id AND o.status = 'paid'), 0) AS paid
            FROM ticket_types t WHERE t.event_id = $1 ORDER BY t.sort_order, t.created_at
            """,
            event_id,
        )
    finally:
        await conn.close()
    return [
        Tier(r["id"], r["name"], r["quantity"], r["sold"], r["held"], r["pending"], r["paid"])
        for r in rows
    ]


async def assert_inventory_consistent(database_url: str, event_id: uuid.UUID) -> list[Tier]:
    found = await tiers(database_url, event_id)
    problems = [p for tier in found for p in tier.problems()]
    assert not problems, problems
    return found


@dataclass(frozen=True)
class StoredOrder:
    id: uuid.UUID
    buyer_id: uuid.UUID
    status: str
    lines: Lines


async def orders_of_event(database_url: str, event_id: uuid.UUID) -> list[StoredOrder]:
    conn = await connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT o.id, o.buyer_id, o.status, i.ticket_type_id, i.quantity FROM orders o"
            " LEFT JOIN order_items i ON i.order_id = o.id WHERE o.event_id = $1",
            event_id,
        )
    finally:
        await conn.close()
    lines: dict[uuid.UUID, set[tuple[uuid.UUID, int]]] = defaultdict(set)
    heads: dict[uuid.UUID, tuple[uuid.UUID, str]] = {}
    for row in rows:
        heads[row["id"]] = (row["buyer_id"], row["status"])
        if row["ticket_type_id"] is not None:
            lines[row["id"]].add((row["ticket_type_id"], row["quantity"]))
    return [
        StoredOrder(order_id, buyer, status, frozenset(lines[order_id]))
        for order_id, (buyer, status) in heads.items()
    ]


async def wait_for_quiet_database(database_url: str, timeout: float = 10.0) -> None:
    """After a SIGKILL, PostgreSQL ends the dead client's backends (rolling back whatever they
    had open) as it notices; wait until no session of this database is inside a statement or
    a transaction, so the state read next is final."""
    conn = await connect(database_url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            count = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND backend_type = 'client backend' AND state <> 'idle'"
                " AND pid <> pg_backend_pid()"
            )
            if count == 0:
                return
            assert time.monotonic() < deadline, f"{count} sessions still busy"
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
