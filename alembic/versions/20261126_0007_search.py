"""search: full-text vector, trigram and filter indexes on events

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26

Text search configuration: `tiketi_simple` = the `simple` parser and dictionary (lower-case, no
stemming, no stop words) with `unaccent` in front of it for words that carry accents. Events are
mostly named in Swahili and after Kenyan places, and PostgreSQL has no Swahili stemmer; an
English one applies English suffix rules to them (harambee -> harambe, sherehe -> shereh,
Bomas -> boma), conflating unrelated words, and drops English stop words. `simple` keeps every
word as written. What that costs (festivals vs festival), the category aliases (plural and
singular of every category word) and the trigram fallback make up for in part.

`unaccent()` itself is only STABLE (it looks its dictionary up through search_path), so the
generated columns use small IMMUTABLE wrappers whose bodies are SQL-standard
(`BEGIN ATOMIC`, PostgreSQL 14+): the dictionary and every function are bound by OID when the
function is created, so they behave the same whatever the caller's search_path (dump/restore,
pooled connections) on PostgreSQL 15 and 18.

The category of an event lives in another table, which a generated column cannot read. The
vector therefore carries a category *token* (`tiketi_category_token(category_id)`, letters only)
with weight B, and the search query rewrites every word that names a category ("comedy",
"sports", ...) into `word | token` (see `tiketi.search.repository`), so renaming or adding a
category needs no rewrite of the events table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _unaccent_schema() -> str:
    """Where 0001 put unaccent (usually `public`; managed servers sometimes use another schema)."""
    schema = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT n.nspname FROM pg_extension e"
                " JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'unaccent'"
            )
        )
        .scalar_one()
    )
    return '"' + str(schema).replace('"', '""') + '"'


def upgrade() -> None:
    unaccent = _unaccent_schema()
    op.execute("CREATE TEXT SEARCH CONFIGURATION tiketi_simple (COPY = pg_catalog.simple)")
    op.execute(
        "ALTER TEXT SEARCH CONFIGURATION tiketi_simple"
        f" ALTER MAPPING FOR word, hword, hword_part WITH {unaccent}.unaccent, pg_catalog.simple"
    )
    op.execute(
        f"""
        CREATE FUNCTION tiketi_unaccent(value text) RETURNS text
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        BEGIN ATOMIC
            SELECT {unaccent}.unaccent('{unaccent}.unaccent'::regdictionary, value);
        END
        """
    )
    op.execute(
        """
        COMMENT ON FUNCTION tiketi_unaccent(text) IS
        'unaccent() with its dictionary bound at creation, so it may be declared IMMUTABLE'
        """
    )
    op.execute(
        """
        CREATE FUNCTION tiketi_category_token(category_id uuid) RETURNS text
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        BEGIN ATOMIC
            SELECT 'tiketicategory'
                || translate(replace(category_id::text, '-', ''), '0123456789', 'ghijklmnop');
        END
        """
    )
    op.execute(
        """
        COMMENT ON FUNCTION tiketi_category_token(uuid) IS
        'The single letters-only lexeme that stands for a category inside events.search_vector'
        """
    )
    op.execute(
        """
        CREATE FUNCTION tiketi_event_search_vector(
            title varchar, tags varchar[], category_id uuid,
            venue varchar, city varchar, description text
        ) RETURNS tsvector
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        BEGIN ATOMIC
            SELECT setweight(to_tsvector('tiketi_simple', coalesce(title, '')), 'A')
                || setweight(
                    to_tsvector('tiketi_simple', coalesce(array_to_string(tags, ' '), '')), 'B')
                || setweight(
                    to_tsvector('simple', coalesce(tiketi_category_token(category_id), '')), 'B')
                || setweight(
                    to_tsvector('tiketi_simple', coalesce(venue, '') || ' ' || coalesce(city, '')),
                    'C')
                || setweight(to_tsvector('tiketi_simple', coalesce(description, '')), 'D');
        END
        """
    )
    op.execute(
        """
        COMMENT ON FUNCTION tiketi_event_search_vector(
            varchar, varchar[], uuid, varchar, varchar, text) IS
        'events.search_vector: title A, tags and category B, venue and city C, description D.'
        ' IMMUTABLE although array_to_string is STABLE: varchar output never changes.'
        """
    )
    op.execute(
        """
        CREATE FUNCTION tiketi_event_search_text(title varchar, venue varchar, city varchar)
        RETURNS text
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        BEGIN ATOMIC
            SELECT tiketi_unaccent(
                coalesce(title, '') || ' ' || coalesce(venue, '') || ' ' || coalesce(city, ''));
        END
        """
    )
    op.execute(
        """
        COMMENT ON FUNCTION tiketi_event_search_text(varchar, varchar, varchar) IS
        'What the typo-tolerant (trigram) fallback of search compares the query with'
        """
    )
    op.execute(
        """
        CREATE FUNCTION tiketi_city_key(city varchar) RETURNS text
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        BEGIN ATOMIC
            SELECT lower(regexp_replace(btrim(tiketi_unaccent(city)), '\\s+', ' ', 'g'));
        END
        """
    )
    op.execute(
        """
        COMMENT ON FUNCTION tiketi_city_key(varchar) IS
        'A city compared without case, accents or extra spaces (the search filter)'
        """
    )

    op.add_column(
        "events",
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed(
                "tiketi_event_search_vector(title, tags, category_id, venue, city, description)",
                persisted=True,
            ),
            nullable=True,
        ),
    )
    # Stored rather than an index expression: the trigram fallback rechecks and scores every
    # candidate row, and re-running unaccent for each of them cost about a quarter of its time.
    op.add_column(
        "events",
        sa.Column(
            "search_text",
            sa.Text(),
            sa.Computed("tiketi_event_search_text(title, venue, city)", persisted=True),
            nullable=True,
        ),
    )
    # Stored too: the city filter compares it on every candidate row that another index found.
    op.add_column(
        "events",
        sa.Column(
            "city_key",
            sa.Text(),
            sa.Computed("tiketi_city_key(city)", persisted=True),
            nullable=True,
        ),
    )
    op.create_index(
        "ix_events_search_vector",
        "events",
        ["search_vector"],
        unique=False,
        postgresql_using="gin",
    )
    op.create_index(
        "ix_events_search_text_trgm",
        "events",
        ["search_text"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"search_text": "gin_trgm_ops"},
    )
    op.create_index(
        "ix_events_status_city_key_starts_at",
        "events",
        ["status", "city_key", "starts_at"],
        unique=False,
    )
    op.create_index(
        "ix_events_status_category_id_starts_at",
        "events",
        ["status", "category_id", "starts_at"],
        unique=False,
    )
    op.create_index("ix_events_tags", "events", ["tags"], unique=False, postgresql_using="gin")


def downgrade() -> None:
    op.drop_index("ix_events_tags", table_name="events")
    op.drop_index("ix_events_status_category_id_starts_at", table_name="events")
    op.drop_index("ix_events_status_city_key_starts_at", table_name="events")
    op.drop_index("ix_events_search_text_trgm", table_name="events")
    op.drop_index("ix_events_search_vector", table_name="events")
    op.drop_column("events", "city_key")
    op.drop_column("events", "search_text")
    op.drop_column("events", "search_vector")
    op.execute("DROP FUNCTION tiketi_city_key(varchar)")
    op.execute("DROP FUNCTION tiketi_event_search_text(varchar, varchar, varchar)")
    op.execute(
        "DROP FUNCTION tiketi_event_search_vector(varchar, varchar[], uuid, varchar, varchar, text)"
    )
    op.execute("DROP FUNCTION tiketi_category_token(uuid)")
    op.execute("DROP FUNCTION tiketi_unaccent(text)")
    op.execute("DROP TEXT SEARCH CONFIGURATION tiketi_simple")
