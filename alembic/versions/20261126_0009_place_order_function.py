"""place order in one statement: caps, the order, its items and the holds, server-side

The hot ticket row stays locked from its UPDATE to the commit. When the transaction is driven
from Python, that includes waiting for the application to send COMMIT — behind every other
request on its event loop, which during a flash sale is most of the lock's life
(docs/benchmarks.md). `tiketi_place_order` does the whole write in one call, so run as a single
autocommit statement the lock is held only for the server's own work and the commit's flush.

Errors leave nothing behind (an exception undoes the statement) and carry their own SQLSTATE,
with the figures the API reports in DETAIL:
  TK001 too many pending orders (DETAIL: how many)
  TK002 too many tickets held for the event (DETAIL: how many)
  TK003 a line's tier is sold out (DETAIL: the tier id)
  TK004 a line's tier is not on sale now (DETAIL: the tier id)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PLACE_ORDER = """
CREATE FUNCTION tiketi_place_order(
    p_order_id uuid,
    p_buyer_id uuid,
    p_event_id uuid,
    p_total integer,
    p_ttl interval,
    p_type_ids uuid[],
    p_names text[],
    p_quantities integer[],
    p_prices integer[],
    p_max_pending integer,
    p_max_tickets integer
) RETURNS SETOF orders
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    pending integer;
    held integer;
    line record;
BEGIN
    -- One buyer's purchases in turn, so the caps cannot be raced. Each statement below
    -- takes a fresh snapshot (READ COMMITTED), so it sees what the previous holder committed.
    PERFORM 1 FROM users WHERE id = p_buyer_id FOR NO KEY UPDATE;

    SELECT count(*) INTO pending FROM orders
     WHERE buyer_id = p_buyer_id AND status = 'pending';
    IF pending >= p_max_pending THEN
        RAISE EXCEPTION 'pending order limit' USING ERRCODE = 'TK001', DETAIL = pending::text;
    END IF;

    SELECT coalesce(sum(i.quantity), 0) INTO held
      FROM order_items i JOIN orders o ON o.id = i.order_id
     WHERE o.buyer_id = p_buyer_id AND o.event_id = p_event_id AND o.status = 'pending';
    IF held + (SELECT sum(q) FROM unnest(p_quantities) AS q) > p_max_tickets THEN
        RAISE EXCEPTION 'ticket limit' USING ERRCODE = 'TK002', DETAIL = held::text;
    END IF;

    RETURN QUERY
    INSERT INTO orders (id, buyer_id, event_id, total, status, expires_at)
    VALUES (p_order_id, p_buyer_id, p_event_id, p_total, 'pending', now() + p_ttl)
    RETURNING *;

    INSERT INTO order_items (order_id, ticket_type_id, name, quantity, unit_price)
    SELECT p_order_id, l.type_id, l.name, l.quantity, l.unit_price
      FROM unnest(p_type_ids, p_names, p_quantities, p_prices)
           AS l(type_id, name, quantity, unit_price);

    -- The hot rows last, in id order (no deadlocks between multi-line orders): one
    -- conditional UPDATE each, so nothing can oversell.
    FOR line IN
        SELECT l.type_id, l.quantity
          FROM unnest(p_type_ids, p_quantities) AS l(type_id, quantity)
         ORDER BY l.type_id
    LOOP
        UPDATE ticket_types t SET held = t.held + line.quantity
         WHERE t.id = line.type_id
           AND t.sold + t.held + line.quantity <= t.quantity
           AND (t.sales_start IS NULL OR t.sales_start <= now())
           AND (t.sales_end IS NULL OR t.sales_end > now())
           AND EXISTS (SELECT 1 FROM events e
                        WHERE e.id = t.event_id AND e.status = 'published'
                          AND e.starts_at > now());
        IF NOT FOUND THEN
            IF EXISTS (SELECT 1 FROM ticket_types t JOIN events e ON e.id = t.event_id
                        WHERE t.id = line.type_id
                          AND (t.sales_start IS NULL OR t.sales_start <= now())
                          AND (t.sales_end IS NULL OR t.sales_end > now())
                          AND e.status = 'published' AND e.starts_at > now()) THEN
                RAISE EXCEPTION 'sold out' USING ERRCODE = 'TK003', DETAIL = line.type_id::text;
            END IF;
            RAISE EXCEPTION 'not on sale' USING ERRCODE = 'TK004', DETAIL = line.type_id::text;
        END IF;
    END LOOP;
END;
$$
"""


def upgrade() -> None:
    op.execute(PLACE_ORDER)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION tiketi_place_order(uuid, uuid, uuid, integer, interval, uuid[], text[],"
        " integer[], integer[], integer, integer)"
    )
