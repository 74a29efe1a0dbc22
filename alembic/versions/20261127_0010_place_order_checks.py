"""place order: the caller's token and every check of the order in the one statement

`tiketi_place_order` (0009) did the write; the API first read the caller's user row (its
token still current?) and the event with the requested tiers (on sale? within the per-order
limit? anything left?), two round trips and most of a hold's CPU in the API. This version
takes those checks in, so a hold is the access token's signature check in the API and this one
statement. Checks run in the order the API reported them before, each refusal its own SQLSTATE
(DETAIL, where given, is what the API needs to word the answer):

  TK010 the token's version is not the user's (revoked) or the user is gone
  TK011 the user is deactivated
  TK005 no such event, or a draft
  TK006 the event is not on sale (DETAIL: its status, or 'started')
  TK007 a tier is not part of the event (DETAIL: the tier id)
  TK008 a line asks for more than the tier's per-order limit
        (DETAIL: {"name", "max_per_order"})
  TK004 a tier's sales window is closed (DETAIL: {"name"})
  TK003 a tier has fewer tickets left than asked (DETAIL: {"tier", "name", "max_per_order",
        "available"}; without "available" when the conditional UPDATE lost a race)
  TK009 the order is free and `p_allow_free` is false: nothing written (the API places free
        orders in a transaction that also issues their tickets)
  TK001 too many pending orders (DETAIL: how many)
  TK002 too many tickets held for the event (DETAIL: how many)

Prices and names come from the tiers (the caller sends none); the order's total, expiry and
creation time, and the items' names and prices (in the order of the lines) are returned.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PLACE_ORDER = """
CREATE FUNCTION tiketi_place_order(
    p_order_id uuid,
    p_buyer_id uuid,
    p_token_version integer,
    p_event_id uuid,
    p_type_ids uuid[],
    p_quantities integer[],
    p_ttl interval,
    p_max_pending integer,
    p_max_tickets integer,
    p_allow_free boolean
) RETURNS TABLE (
    order_total integer,
    order_expires_at timestamptz,
    order_created_at timestamptz,
    item_names text[],
    item_prices integer[]
)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    buyer record;
    ev record;
    tier record;
    line record;
    names text[] := '{}';
    prices integer[] := '{}';
    total integer := 0;
    pending integer;
    held integer;
    expires timestamptz;
    created timestamptz;
BEGIN
    -- The caller, whose purchases go one at a time (row lock), so the caps cannot be raced.
    -- Each statement below takes a fresh snapshot (READ COMMITTED): it sees what the previous
    -- holder of the lock committed.
    SELECT u.is_active, u.token_version INTO buyer
      FROM users u WHERE u.id = p_buyer_id FOR NO KEY UPDATE;
    IF NOT FOUND OR buyer.token_version <> p_token_version THEN
        RAISE EXCEPTION 'access token revoked' USING ERRCODE = 'TK010';
    END IF;
    IF NOT buyer.is_active THEN
        RAISE EXCEPTION 'account deactivated' USING ERRCODE = 'TK011';
    END IF;

    SELECT e.status, e.starts_at INTO ev FROM events e WHERE e.id = p_event_id;
    IF NOT FOUND OR ev.status = 'draft' THEN
        RAISE EXCEPTION 'no such event' USING ERRCODE = 'TK005';
    END IF;
    IF ev.status <> 'published' THEN
        RAISE EXCEPTION 'event not on sale' USING ERRCODE = 'TK006', DETAIL = ev.status;
    END IF;
    IF ev.starts_at <= now() THEN
        RAISE EXCEPTION 'event started' USING ERRCODE = 'TK006', DETAIL = 'started';
    END IF;

    -- The lines as sent: read without locks, to refuse early and with the figures. The
    -- conditional UPDATEs at the end decide.
    FOR line IN
        SELECT l.type_id, l.quantity
          FROM unnest(p_type_ids, p_quantities) WITH ORDINALITY AS l(type_id, quantity, n)
         ORDER BY l.n
    LOOP
        SELECT t.name, t.price, t.max_per_order, t.quantity - t.sold - t.held AS available,
               (t.sales_start IS NULL OR t.sales_start <= now())
                 AND (t.sales_end IS NULL OR t.sales_end > now()) AS open
          INTO tier
          FROM ticket_types t
         WHERE t.id = line.type_id AND t.event_id = p_event_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'tier not in event' USING ERRCODE = 'TK007',
                DETAIL = line.type_id::text;
        END IF;
        IF line.quantity > tier.max_per_order THEN
            RAISE EXCEPTION 'over the per-order limit' USING ERRCODE = 'TK008',
                DETAIL = json_build_object('name', tier.name,
                                           'max_per_order', tier.max_per_order)::text;
        END IF;
        IF NOT tier.open THEN
            RAISE EXCEPTION 'not on sale' USING ERRCODE = 'TK004',
                DETAIL = json_build_object('name', tier.name)::text;
        END IF;
        IF tier.available < line.quantity THEN
            RAISE EXCEPTION 'sold out' USING ERRCODE = 'TK003',
                DETAIL = json_build_object('tier', line.type_id, 'name', tier.name,
                                           'max_per_order', tier.max_per_order,
                                           'available', tier.available)::text;
        END IF;
        names := names || tier.name;
        prices := prices || tier.price;
        total := total + line.quantity * tier.price;
    END LOOP;

    IF total = 0 AND NOT p_allow_free THEN
        RAISE EXCEPTION 'free order' USING ERRCODE = 'TK009';
    END IF;

    SELECT count(*) INTO pending FROM orders o
     WHERE o.buyer_id = p_buyer_id AND o.status = 'pending';
    IF pending >= p_max_pending THEN
        RAISE EXCEPTION 'pending order limit' USING ERRCODE = 'TK001', DETAIL = pending::text;
    END IF;

    SELECT coalesce(sum(i.quantity), 0) INTO held
      FROM order_items i JOIN orders o ON o.id = i.order_id
     WHERE o.buyer_id = p_buyer_id AND o.event_id = p_event_id AND o.status = 'pending';
    IF held + (SELECT sum(q) FROM unnest(p_quantities) AS q) > p_max_tickets THEN
        RAISE EXCEPTION 'ticket limit' USING ERRCODE = 'TK002', DETAIL = held::text;
    END IF;

    INSERT INTO orders (id, buyer_id, event_id, total, status, expires_at)
    VALUES (p_order_id, p_buyer_id, p_event_id, total, 'pending', now() + p_ttl)
    RETURNING orders.expires_at, orders.created_at INTO expires, created;

    INSERT INTO order_items (order_id, ticket_type_id, name, quantity, unit_price)
    SELECT p_order_id, l.type_id, l.name, l.quantity, l.unit_price
      FROM unnest(p_type_ids, names, p_quantities, prices)
           AS l(type_id, name, quantity, unit_price);

    -- The hot rows last, in id order (no deadlocks between multi-line orders): one
    -- conditional UPDATE each, so nothing can oversell.
    FOR line IN
        SELECT l.type_id, l.quantity, l.name
          FROM unnest(p_type_ids, p_quantities, names) AS l(type_id, quantity, name)
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
                RAISE EXCEPTION 'sold out' USING ERRCODE = 'TK003',
                    DETAIL = json_build_object('tier', line.type_id, 'name', line.name)::text;
            END IF;
            RAISE EXCEPTION 'not on sale' USING ERRCODE = 'TK004',
                DETAIL = json_build_object('name', line.name)::text;
        END IF;
    END LOOP;

    RETURN QUERY SELECT total, expires, created, names, prices;
END;
$$
"""

DROP_PLACE_ORDER = (
    "DROP FUNCTION tiketi_place_order(uuid, uuid, integer, uuid, uuid[], integer[], interval,"
    " integer, integer, boolean)"
)
DROP_PREVIOUS = (
    "DROP FUNCTION tiketi_place_order(uuid, uuid, uuid, integer, interval, uuid[], text[],"
    " integer[], integer[], integer, integer)"
)


def upgrade() -> None:
    op.execute(DROP_PREVIOUS)
    op.execute(PLACE_ORDER)


def downgrade() -> None:
    op.execute(DROP_PLACE_ORDER)
    # The previous version, from its own migration (one text, not a copy of it).
    path = Path(__file__).with_name("20261126_0009_place_order_function.py")
    spec = importlib.util.spec_from_file_location("tiketi_migration_0009", path)
    assert spec is not None
    assert spec.loader is not None
    previous = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(previous)
    op.execute(previous.PLACE_ORDER)
