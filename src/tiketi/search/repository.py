"""The search query: one statement per page, Core rows, every filter on an index.

Shape of a page (see docs/search.md for the plans on 100,000 events):

    WITH search_query AS MATERIALIZED (tsquery, unaccented fuzzy text)   -- once per statement
    SELECT page.*, category slug, tier totals                            -- LATERAL, page only
    FROM (SELECT <event columns>, <sort key>
          FROM events, search_query
          WHERE published AND not ended AND <match> AND <filters> AND <after cursor>
          ORDER BY <sort key> LIMIT n + 1) AS page

`min_price`/`available` are computed for the page's rows only, after the LIMIT. On a first
page with a text query the full-text page and the trigram page are one UNION ALL; the trigram
branch runs only when the full-text branch found fewer than `FUZZY_BELOW` events (a one-time
filter on an InitPlan), so deciding on the fallback costs no extra round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    CTE,
    ColumnElement,
    DateTime,
    Float,
    FromClause,
    Integer,
    Select,
    Table,
    Text,
    and_,
    bindparam,
    case,
    func,
    literal_column,
    or_,
    select,
    text,
    true,
    tuple_,
    type_coerce,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY, TSQUERY
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from tiketi.events.models import Category, Event, EventStatus, TicketType
from tiketi.search.schemas import SearchSort

EVENTS = cast("Table", Event.__table__)
TIERS = cast("Table", TicketType.__table__)
CATEGORIES = cast("Table", Category.__table__)

# Fewer full-text matches than this (with the filters applied) and the search also accepts
# trigram look-alikes of title, venue and city: "nairobbi jaz festval" finds the festival.
FUZZY_BELOW = 3
# Sorts events without a ticket on sale after every priced one.
NO_PRICE = 2_147_483_647
# Relevance gets up to +20% for events starting now, +10% a week out, +3% a month out.
SOON_BOOST = 0.2
SOON_SCALE_SECONDS = 7 * 24 * 3600


class MatchMode(StrEnum):
    """How a text query matched; a cursor keeps it so that every page uses the same one."""

    everything = "all"  # no text query
    fulltext = "fts"
    fuzzy = "fuzzy"


@dataclass(frozen=True)
class SearchFilters:
    city: str | None = None
    category: str | None = None
    tags: tuple[str, ...] = ()
    starts_from: datetime | None = None  # inclusive
    starts_before: datetime | None = None  # exclusive
    min_price: int | None = None
    max_price: int | None = None
    free: bool = False

    @property
    def on_price(self) -> bool:
        return self.free or self.min_price is not None or self.max_price is not None


@dataclass(frozen=True)
class SearchText:
    """The user's query as sent to PostgreSQL: for full text, and for the trigram fallback the
    wanted words (`fuzzy_words`, each of which needs a look-alike in title, venue or city),
    their sentence (`fuzzy`, whose similarity ranks the look-alikes) and the excluded words,
    which look-alikes must not contain either. No fallback when `fuzzy` is None."""

    query: str
    fuzzy: str | None = None
    fuzzy_words: tuple[str, ...] = ()
    excluded: str | None = None  # the `-words` of the query, as `a or b`


@dataclass(frozen=True)
class SearchPage:
    rows: list[Row[Any]]
    mode: MatchMode
    has_more: bool


# Every word of a category's slug and name (and the word without a plural "s"), with the
# lexeme that stands for that category inside events.search_vector (migration 0007).
_CATEGORY_WORDS = """
    SELECT DISTINCT v.word, tiketi_category_token(c.id) AS token
    FROM categories AS c
    CROSS JOIN LATERAL unnest(tsvector_to_array(to_tsvector(
        'tiketi_simple', replace(c.slug, '-', ' ') || ' ' || c.name))) AS l(lexeme)
    CROSS JOIN LATERAL (VALUES (l.lexeme), (CASE
        WHEN length(l.lexeme) > 3 AND right(l.lexeme, 1) = 's' THEN left(l.lexeme, -1)
    END)) AS v(word)
    WHERE v.word IS NOT NULL
"""
# For ts_rewrite(query, select): "comedy" becomes "comedy | <comedy's token>", so a word naming
# a category matches the events of that category (and "-comedy" excludes them).
_CATEGORY_ALIASES = f"""
    SELECT phraseto_tsquery('simple', w.word),
           phraseto_tsquery('simple', w.word) || phraseto_tsquery('simple', w.token)
    FROM ({_CATEGORY_WORDS}) AS w
"""  # noqa: S608 - built from constants only


def _parsed(param: str) -> str:
    """SQL for the text in `:param` parsed as web-search syntax, category words expanded.
    ts_rewrite(query, text) plans its SELECT on every call, so it only runs when a word of
    the text names a category."""
    return f"""CASE
        WHEN tsvector_to_array(to_tsvector('tiketi_simple', CAST(:{param} AS text)))
             && ARRAY(SELECT w.word FROM ({_CATEGORY_WORDS}) AS w)
        THEN ts_rewrite(
            websearch_to_tsquery('tiketi_simple', CAST(:{param} AS text)),
            CAST(:category_aliases AS text))
        ELSE websearch_to_tsquery('tiketi_simple', CAST(:{param} AS text))
    END"""  # noqa: S608 - built from constants only; the user's text is a bound parameter


# Everything derived from the user's text, computed once per statement.
_SEARCH_QUERY = f"""
    SELECT {_parsed("q")} AS tsq,
           CASE WHEN CAST(:excluded AS text) <> '' THEN {_parsed("excluded")} END AS excluded,
           tiketi_unaccent(CAST(:fuzzy AS text)) AS fuzzy,
           ARRAY(SELECT tiketi_unaccent(t.word)
                 FROM unnest(CAST(:fuzzy_words AS text[])) WITH ORDINALITY AS t(word, n)
                 ORDER BY t.n) AS fuzzy_words
"""  # noqa: S608 - built from constants only; the user's text is a bound parameter


def _search_query() -> CTE:
    return (
        text(_SEARCH_QUERY)
        .bindparams(
            bindparam("q", type_=Text),
            bindparam("category_aliases", _CATEGORY_ALIASES, type_=Text),
            bindparam("excluded", type_=Text),
            bindparam("fuzzy", type_=Text),
            bindparam("fuzzy_words", type_=ARRAY(Text)),
        )
        .columns(tsq=TSQUERY, excluded=TSQUERY, fuzzy=Text, fuzzy_words=ARRAY(Text))
        .cte("search_query")
        .prefix_with("MATERIALIZED")
    )


def _tier_totals(page: FromClause) -> FromClause:
    """What EventSummary shows (as /events does): the cheapest tier and what is left."""
    return (
        select(
            func.min(TIERS.c.price).label("min_price"),
            func.coalesce(func.sum(TIERS.c.quantity - TIERS.c.sold - TIERS.c.held), 0).label(
                "available"
            ),
        )
        .where(TIERS.c.event_id == page.c.id)
        .correlate(page)
        .lateral("tier_totals")
    )


def _on_sale_price(as_of: ColumnElement[datetime]) -> FromClause:
    """The cheapest tier on sale at `as_of` (the event not started, inside the sales window):
    what the price filters and the price sort compare."""
    return (
        select(func.min(TIERS.c.price).label("price"))
        .where(
            TIERS.c.event_id == EVENTS.c.id,
            EVENTS.c.starts_at > as_of,
            or_(TIERS.c.sales_start.is_(None), TIERS.c.sales_start <= as_of),
            or_(TIERS.c.sales_end.is_(None), TIERS.c.sales_end > as_of),
        )
        .correlate(EVENTS)
        .lateral("on_sale")
    )


_PAGE_COLUMNS = (
    EVENTS.c.id,
    EVENTS.c.title,
    EVENTS.c.category_id,
    EVENTS.c.tags,
    EVENTS.c.venue,
    EVENTS.c.city,
    EVENTS.c.starts_at,
    EVENTS.c.ends_at,
    EVENTS.c.image_url,
    EVENTS.c.status,
)


def _float8(value: float) -> ColumnElement[float]:
    """A float8 constant in the SQL text: no parameter, no numeric arithmetic."""
    return literal_column(f"{float(value)!r}::float8", Float)


def _value(expression: ColumnElement[Any]) -> ColumnElement[Any]:
    """`(SELECT expression)`: computed once per statement (an InitPlan), and to the planner a
    parameter that index scans can use."""
    return select(expression).scalar_subquery()


@dataclass(frozen=True)
class _Shape:
    """Everything that changes the SQL text of a page; values are bound at execution. One
    statement object per shape is built once and reused (`_statement`), which spares each
    request building it and computing its cache key: a search costs little more in Python
    than the same SQL sent by hand."""

    sort: SearchSort
    modes: tuple[MatchMode, ...]
    fuzzy_words: int = 0
    excluded: bool = False
    city: bool = False
    category: bool = False
    tags: bool = False
    starts_from: bool = False
    starts_before: bool = False
    min_price: bool = False
    max_price: bool = False
    free: bool = False
    after: bool = False

    @property
    def on_price(self) -> bool:
        return self.free or self.min_price or self.max_price or self.sort is SearchSort.price


class SearchRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def search(
        self,
        *,
        text_query: SearchText | None,
        filters: SearchFilters,
        sort: SearchSort,
        mode: MatchMode | None,
        after: Sequence[Any] | None,
        now: datetime,
        as_of: datetime,
        limit: int,
    ) -> SearchPage:
        """One page in one round trip. `mode=None` (a first page with a text query) lets the
        database choose between full text and the trigram fallback; later pages pass the mode
        their cursor carries. `after` is the sort key of the previous page's last row."""
        if text_query is None:
            modes: tuple[MatchMode, ...] = (MatchMode.everything,)
        elif mode is not None:
            modes = (mode,)
        elif text_query.fuzzy is None:
            modes = (MatchMode.fulltext,)
        else:
            modes = (MatchMode.fulltext, MatchMode.fuzzy)
        fuzzy = MatchMode.fuzzy in modes and text_query is not None
        shape = _Shape(
            sort=sort,
            modes=modes,
            fuzzy_words=len(text_query.fuzzy_words) if fuzzy and text_query else 0,
            excluded=bool(fuzzy and text_query and text_query.excluded),
            city=filters.city is not None,
            category=filters.category is not None,
            tags=bool(filters.tags),
            starts_from=filters.starts_from is not None,
            starts_before=filters.starts_before is not None,
            min_price=filters.min_price is not None,
            max_price=filters.max_price is not None,
            free=filters.free,
            after=after is not None,
        )
        values: dict[str, Any] = {
            "now": now,
            "as_of": as_of,
            "limit": limit + 1,
            "first_limit": max(limit + 1, FUZZY_BELOW),
        }
        if text_query is not None:
            values.update(
                q=text_query.query,
                excluded=text_query.excluded or "",
                fuzzy=text_query.fuzzy or "",
                fuzzy_words=list(text_query.fuzzy_words),
            )
        optional = {
            "city": filters.city,
            "category": filters.category,
            "tags": list(filters.tags) or None,
            "starts_from": filters.starts_from,
            "starts_before": filters.starts_before,
            "min_price": filters.min_price,
            "max_price": filters.max_price,
        }
        values.update({name: value for name, value in optional.items() if value is not None})
        for i, part in enumerate(after or ()):
            values[f"after_{i}"] = part

        result = await self.session.execute(_statement(shape), values)
        rows = list(result.all())
        chosen = modes[0]
        if len(modes) > 1 and any(row.mode == MatchMode.fuzzy.value for row in rows):
            chosen = MatchMode.fuzzy
        rows = [row for row in rows if row.mode == chosen.value]
        return SearchPage(rows=rows[:limit], mode=chosen, has_more=len(rows) > limit)


_NOW = bindparam("now", type_=DateTime(timezone=True))
_AS_OF = bindparam("as_of", type_=DateTime(timezone=True))


@lru_cache(maxsize=1024)
def _statement(shape: _Shape) -> Select[Any]:
    """The page statement of a shape: the inner page(s), then categories and tier totals."""
    query = _search_query() if shape.modes != (MatchMode.everything,) else None
    if len(shape.modes) == 1:
        page = _page(shape, shape.modes[0], query, limit="limit").subquery("page")
    else:
        fulltext = _page(shape, MatchMode.fulltext, query, limit="first_limit").cte("fulltext_page")
        fuzzy = _page(shape, MatchMode.fuzzy, query, limit="limit").subquery("fuzzy_page")
        found = select(func.count()).select_from(fulltext).scalar_subquery()
        page = union_all(
            select(fulltext),
            select(fuzzy).where(found < FUZZY_BELOW),
        ).subquery("page")

    totals = _tier_totals(page)
    return (
        select(page, CATEGORIES.c.slug.label("category"), totals.c.min_price, totals.c.available)
        .join(CATEGORIES, CATEGORIES.c.id == page.c.category_id)
        .join(totals, true())
        .order_by(*_order(shape.sort, [page.c[name] for name in KEY_COLUMNS[shape.sort]]))
    )


KEY_COLUMNS: dict[SearchSort, tuple[str, ...]] = {
    SearchSort.relevance: ("key_rank", "key_id"),
    SearchSort.date: ("key_starts_at", "key_id"),
    SearchSort.price: ("key_price", "key_starts_at", "key_id"),
}


def _order(sort: SearchSort, key: Sequence[ColumnElement[Any]]) -> list[ColumnElement[Any]]:
    return [k.desc() if sort is SearchSort.relevance else k.asc() for k in key]


def _page(shape: _Shape, mode: MatchMode, query: CTE | None, *, limit: str) -> Select[Any]:
    """The inner, sorted and limited SELECT of one match mode."""
    conditions: list[ColumnElement[bool]] = [
        # Literal, not a parameter: every plan knows which rows qualify (partial plans and
        # statistics), whatever the plan cache does with the parameters.
        EVENTS.c.status == literal_column(f"'{EventStatus.published.value}'"),
        EVENTS.c.ends_at > _NOW,
    ]
    columns: list[Any] = [*_PAGE_COLUMNS, literal_column(f"'{mode.value}'", Text).label("mode")]
    froms: list[FromClause] = [EVENTS]

    if mode is not MatchMode.everything:
        assert query is not None
        froms.append(query)
        fulltext = EVENTS.c.search_vector.bool_op("@@")(query.c.tsq)
        if mode is MatchMode.fulltext:
            conditions.append(fulltext)
        else:
            # Every wanted word has a look-alike (strict word similarity >= 0.5, pg_trgm's
            # default threshold) in title, venue or city; each is a GIN trigram index scan.
            # `text %>> word` is `word <<% text` written the way the index is, so the planner
            # sees the same clause in the index condition and the filter, and checks it once.
            lookalikes = [
                EVENTS.c.search_text.bool_op("%>>")(query.c.fuzzy_words[n])
                for n in range(1, shape.fuzzy_words + 1)
            ]
            if shape.excluded:
                lookalikes.append(~EVENTS.c.search_vector.bool_op("@@")(query.c.excluded))
            conditions.append(or_(fulltext, and_(*lookalikes)))

    if shape.city:
        city = bindparam("city", type_=Text)
        conditions.append(EVENTS.c.city_key == _value(func.tiketi_city_key(city)))
    if shape.category:
        slug = bindparam("category", type_=Text)
        conditions.append(
            EVENTS.c.category_id
            == select(CATEGORIES.c.id).where(CATEGORIES.c.slug == slug).scalar_subquery()
        )
    if shape.tags:
        conditions.append(EVENTS.c.tags.contains(bindparam("tags", type_=EVENTS.c.tags.type)))
    if shape.starts_from:
        conditions.append(EVENTS.c.starts_at >= bindparam("starts_from", type_=_NOW.type))
    if shape.starts_before:
        conditions.append(EVENTS.c.starts_at < bindparam("starts_before", type_=_NOW.type))

    price: ColumnElement[int] | None = None
    if shape.on_price:
        on_sale = _on_sale_price(_AS_OF)
        froms.append(on_sale)
        price = on_sale.c.price
        if shape.free:
            conditions.append(price == literal_column("0"))
        if shape.min_price:
            conditions.append(price >= bindparam("min_price", type_=Integer))
        if shape.max_price:
            conditions.append(price <= bindparam("max_price", type_=Integer))

    key = _key(shape.sort, mode, query, price)
    columns.extend(key)
    if shape.after:
        after = [bindparam(f"after_{i}", type_=part.type) for i, part in enumerate(key)]
        if shape.sort is SearchSort.relevance:
            conditions.append(tuple_(*key) < tuple_(*after))
        else:
            conditions.append(tuple_(*key) > tuple_(*after))

    stmt = select(*columns).select_from(EVENTS)
    for extra in froms[1:]:
        stmt = stmt.join(extra, true())
    return (
        stmt.where(and_(*conditions))
        .order_by(*_order(shape.sort, key))
        .limit(bindparam(limit, type_=Integer))
    )


def _key(
    sort: SearchSort, mode: MatchMode, query: CTE | None, price: ColumnElement[int] | None
) -> list[ColumnElement[Any]]:
    """The sort key, labelled as the columns the outer query and the cursor use."""
    if sort is SearchSort.date:
        starts_at: ColumnElement[datetime] = EVENTS.c.starts_at
        if mode is not MatchMode.everything:
            # A fence: ordering by an expression, not the column, keeps the planner from
            # walking ix_events_status_starts_at and testing the text match row by row. It
            # cannot know how many events a query matches (the tsquery is computed in the
            # statement), and when few do, that walk reads the whole table. Driven by the GIN
            # index instead, the cost is bounded by the number of matches.
            starts_at = type_coerce(
                EVENTS.c.starts_at + literal_column("interval '0'"), EVENTS.c.starts_at.type
            )
        return [starts_at.label("key_starts_at"), EVENTS.c.id.label("key_id")]
    if sort is SearchSort.price:
        assert price is not None
        return [
            func.coalesce(price, literal_column(str(NO_PRICE)), type_=Integer).label("key_price"),
            EVENTS.c.starts_at.label("key_starts_at"),
            EVENTS.c.id.label("key_id"),
        ]
    return [_relevance(mode, query).label("key_rank"), EVENTS.c.id.label("key_id")]


def _relevance(mode: MatchMode, query: CTE | None) -> ColumnElement[float]:
    """ts_rank_cd (title A > tags, category B > venue, city C > description D; adjacent words
    score higher than scattered ones) times a small boost for events starting soon. The
    fallback ranks full-text matches first, then by trigram similarity.

    Plain float8 arithmetic on values that do not change between pages (the boost is relative
    to the cursor's `as_of`, not to now), so a rank sent in a cursor and recomputed in the next
    page's WHERE are the same bits."""
    if query is None:
        return _float8(0.0)
    fulltext = EVENTS.c.search_vector.bool_op("@@")(query.c.tsq)
    if mode is MatchMode.fuzzy:
        score = case((fulltext, _float8(1.0)), else_=_float8(0.0)) + func.strict_word_similarity(
            query.c.fuzzy, EVENTS.c.search_text
        ).cast(Float)
    else:
        score = func.ts_rank_cd(EVENTS.c.search_vector, query.c.tsq).cast(Float)
    seconds_away = func.greatest(
        func.date_part("epoch", EVENTS.c.starts_at - _AS_OF, type_=Float),
        _float8(0.0),
        type_=Float,
    )
    boost = _float8(1.0) + _float8(SOON_BOOST) / (
        _float8(1.0) + seconds_away / _float8(SOON_SCALE_SECONDS)
    )
    return cast("ColumnElement[float]", score * boost)
