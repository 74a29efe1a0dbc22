"""search speed: the cheapest ticket on sale per event, stored as intervals kept by triggers

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26

`sort=price` and the price filters compare the cheapest tier *on sale* at the search's moment.
Computed per event at query time (a LATERAL over `ticket_types`), an unfiltered price sort read
the whole catalogue (~1 s on 100,000 events, 5-7 s under load). That price is a step function
of time: it changes only at the tiers' `sales_start`/`sales_end` and at the event's start. So
`event_sale_prices` stores the steps, one row per interval `[valid_from, valid_until)` with the
cheapest tier on sale in it (2^31-1 where nothing is), and an index on
(price, starts_at, event_id) lists events in the order of the price sort. The event's start,
end, status, city key and category are copied too (INCLUDEd in that index), so a price sort
with those filters is an index-only walk that visits `events` only for the rows it keeps.

Triggers keep it exact: statement-level ones (transition tables) when tiers or events are
inserted or tiers deleted, so bulk loads recompute once per statement; row-level ones when a
tier's price, sales window or event, or an event's start, end, status, city or category
change. Updates of `sold` and `held` (every order) fire nothing. A refresh locks the events it recomputes (FOR NO KEY UPDATE,
which an event edit takes anyway and foreign-key checks do not conflict with), so concurrent
edits of one event's tiers recompute one after the other.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_sale_prices",
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("price", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("city_key", sa.Text(), nullable=True),
        sa.Column("category_id", sa.UUID(), nullable=False),
        sa.CheckConstraint("valid_until > valid_from", name=op.f("ck_event_sale_prices_interval")),
        sa.CheckConstraint("price >= 0", name=op.f("ck_event_sale_prices_price")),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.id"],
            name=op.f("fk_event_sale_prices_event_id_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", "valid_from", name=op.f("pk_event_sale_prices")),
    )
    op.create_index(
        "ix_event_sale_prices_price_starts_at_event_id",
        "event_sale_prices",
        ["price", "starts_at", "event_id"],
        unique=False,
        postgresql_include=[
            "valid_from",
            "valid_until",
            "status",
            "ends_at",
            "city_key",
            "category_id",
        ],
    )
    # A page of the price sort reads a few dozen index entries; planning parallel workers for
    # it (the planner's guess for an unfiltered walk) cost ~25 ms of worker start-up.
    op.execute("ALTER TABLE event_sale_prices SET (parallel_workers = 0)")
    # The steps of every given event, recomputed from its tiers. Only moments before the start
    # matter (nothing is on sale after it); the last step runs from the start to the end.
    op.execute(
        """
        CREATE FUNCTION tiketi_refresh_sale_prices(event_ids uuid[]) RETURNS void
        LANGUAGE plpgsql SET search_path FROM CURRENT
        AS $$
        BEGIN
            PERFORM 1 FROM events WHERE id = ANY(event_ids) ORDER BY id FOR NO KEY UPDATE;
            DELETE FROM event_sale_prices WHERE event_id = ANY(event_ids);
            INSERT INTO event_sale_prices (
                event_id, valid_from, valid_until, price,
                starts_at, ends_at, status, city_key, category_id)
            WITH e AS (
                SELECT id, starts_at, ends_at, status, city_key, category_id
                FROM events WHERE id = ANY(event_ids)
            ), steps AS (
                SELECT e.id AS event_id, e.starts_at, e.ends_at, e.status, e.city_key,
                       e.category_id, b.at AS valid_from,
                       coalesce(lead(b.at) OVER (PARTITION BY e.id ORDER BY b.at), e.ends_at)
                           AS valid_until,
                       coalesce((
                           SELECT min(t.price) FROM ticket_types AS t
                           WHERE t.event_id = e.id AND b.at < e.starts_at
                             AND (t.sales_start IS NULL OR t.sales_start <= b.at)
                             AND (t.sales_end IS NULL OR t.sales_end > b.at)
                       ), 2147483647) AS price  -- NO_PRICE: nothing on sale
                FROM e CROSS JOIN LATERAL (
                    SELECT '-infinity'::timestamptz
                    UNION SELECT e.starts_at
                    UNION SELECT t.sales_start FROM ticket_types AS t
                          WHERE t.event_id = e.id AND t.sales_start < e.starts_at
                    UNION SELECT t.sales_end FROM ticket_types AS t
                          WHERE t.event_id = e.id AND t.sales_end < e.starts_at
                ) AS b(at)
            ), changes AS (
                SELECT *, price IS DISTINCT FROM lag(price) OVER (
                           PARTITION BY event_id ORDER BY valid_from) AS changed
                FROM steps
            ), runs AS (
                SELECT *, count(*) FILTER (WHERE changed) OVER (
                           PARTITION BY event_id ORDER BY valid_from) AS run
                FROM changes
            )
            SELECT event_id, min(valid_from), max(valid_until), price,
                   starts_at, ends_at, status, city_key, category_id
            FROM runs
            GROUP BY event_id, run, price, starts_at, ends_at, status, city_key, category_id;
        END
        $$
        """
    )
    op.execute(
        """
        COMMENT ON FUNCTION tiketi_refresh_sale_prices(uuid[]) IS
        'Recomputes event_sale_prices (the cheapest ticket on sale, by interval) of the events'
        """
    )
    # Bulk inserts and deletes: once per statement, for every event they touched.
    op.execute(
        """
        CREATE FUNCTION tiketi_sale_prices_after_statement() RETURNS trigger
        LANGUAGE plpgsql SET search_path FROM CURRENT
        AS $$
        BEGIN
            IF TG_TABLE_NAME = 'events' THEN
                PERFORM tiketi_refresh_sale_prices(ARRAY(SELECT id FROM changed_rows));
            ELSE
                PERFORM tiketi_refresh_sale_prices(
                    ARRAY(SELECT DISTINCT event_id FROM changed_rows));
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    # Edits of one row: only when a column the price depends on changed.
    op.execute(
        """
        CREATE FUNCTION tiketi_sale_prices_after_row() RETURNS trigger
        LANGUAGE plpgsql SET search_path FROM CURRENT
        AS $$
        BEGIN
            IF TG_TABLE_NAME = 'events' THEN
                PERFORM tiketi_refresh_sale_prices(ARRAY[NEW.id]);
            ELSE
                PERFORM tiketi_refresh_sale_prices(ARRAY[OLD.event_id, NEW.event_id]);
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER tiketi_sale_prices_events_insert AFTER INSERT ON events
        REFERENCING NEW TABLE AS changed_rows
        FOR EACH STATEMENT EXECUTE FUNCTION tiketi_sale_prices_after_statement()
        """
    )
    op.execute(
        """
        CREATE TRIGGER tiketi_sale_prices_events_update
        AFTER UPDATE OF starts_at, ends_at, status, city, category_id ON events FOR EACH ROW
        WHEN (OLD.starts_at IS DISTINCT FROM NEW.starts_at
              OR OLD.ends_at IS DISTINCT FROM NEW.ends_at
              OR OLD.status IS DISTINCT FROM NEW.status
              OR OLD.city IS DISTINCT FROM NEW.city
              OR OLD.category_id IS DISTINCT FROM NEW.category_id)
        EXECUTE FUNCTION tiketi_sale_prices_after_row()
        """
    )
    op.execute(
        """
        CREATE TRIGGER tiketi_sale_prices_tiers_insert AFTER INSERT ON ticket_types
        REFERENCING NEW TABLE AS changed_rows
        FOR EACH STATEMENT EXECUTE FUNCTION tiketi_sale_prices_after_statement()
        """
    )
    op.execute(
        """
        CREATE TRIGGER tiketi_sale_prices_tiers_delete AFTER DELETE ON ticket_types
        REFERENCING OLD TABLE AS changed_rows
        FOR EACH STATEMENT EXECUTE FUNCTION tiketi_sale_prices_after_statement()
        """
    )
    op.execute(
        """
        CREATE TRIGGER tiketi_sale_prices_tiers_update
        AFTER UPDATE OF price, sales_start, sales_end, event_id ON ticket_types FOR EACH ROW
        WHEN (OLD.price IS DISTINCT FROM NEW.price
              OR OLD.sales_start IS DISTINCT FROM NEW.sales_start
              OR OLD.sales_end IS DISTINCT FROM NEW.sales_end
              OR OLD.event_id IS DISTINCT FROM NEW.event_id)
        EXECUTE FUNCTION tiketi_sale_prices_after_row()
        """
    )
    op.execute("SELECT tiketi_refresh_sale_prices(ARRAY(SELECT id FROM events))")


def downgrade() -> None:
    op.execute("DROP TRIGGER tiketi_sale_prices_tiers_update ON ticket_types")
    op.execute("DROP TRIGGER tiketi_sale_prices_tiers_delete ON ticket_types")
    op.execute("DROP TRIGGER tiketi_sale_prices_tiers_insert ON ticket_types")
    op.execute("DROP TRIGGER tiketi_sale_prices_events_update ON events")
    op.execute("DROP TRIGGER tiketi_sale_prices_events_insert ON events")
    op.execute("DROP FUNCTION tiketi_sale_prices_after_row()")
    op.execute("DROP FUNCTION tiketi_sale_prices_after_statement()")
    op.execute("DROP FUNCTION tiketi_refresh_sale_prices(uuid[])")
    op.drop_index("ix_event_sale_prices_price_starts_at_event_id", table_name="event_sale_prices")
    op.drop_table("event_sale_prices")
