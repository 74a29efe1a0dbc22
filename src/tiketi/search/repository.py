"""The search query: one statement per page, Core rows, every filter on an index.

Shape of a page (see docs/search.md for the plans on 100,000 events):

    WITH search_query AS MATERIALIZED (tsquery, unaccented fuzzy text)   -- once per statement
    SELECT page.*, category slug, tier totals                            -- LATERAL, page only
    FROM (SELECT <event columns>, <sort key>
          FROM events [JOIN event_sale_prices valid at as_of]        -- sort=price (else _priced)
          WHERE published AND not ended AND <filters> AND <after cursor>
          ORDER BY <sort key> LIMIT n + 1) AS page

With text sorted by date or relevance, the matches are first found in start order by a bounded
walk, the text index ANDed with a range of starts, or every match, whichever the walk shows to
be enough (`_date_ordered_matches`); relevance then ranks the RANK_WINDOW soonest of them.

`min_price`/`available` are computed for the page's rows only, after the LIMIT. On a first
page with a text query the full-text page and the trigram page are one UNION ALL; the trigram
branch runs only when the full-text branch found fewer than `FUZZY_BELOW` events (a one-time
filter on an InitPlan), so deciding on the fallback costs no extra round trip.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    CTE,
    ColumnElement,
    CompoundSelect,
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
    false,
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
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.util import ClauseAdapter

from tiketi.core.database import DriverConnection
from tiketi.events.models import Category, Event, EventStatus, TicketType
from tiketi.search.models import NO_PRICE, SALE_PRICES
from tiketi.search.schemas import ITEM_FIELDS, SearchSort

EVENTS = cast("Table", Event.__table__)
TIERS = cast("Table", TicketType.__table__)
CATEGORIES = cast("Table", Category.__table__)

# Fewer full-text matches than this (with the filters applied) and the search also accepts
# trigram look-alikes of title, venue and city: "nairobbi jaz festval" finds the festival.
FUZZY_BELOW = 3
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


# Where a page's row holds its match mode; before it, the item's columns (ITEM_FIELDS).
MODE_AT = len(ITEM_FIELDS)


@dataclass(frozen=True)
class SearchPage:
    # Each row: the item's columns (ITEM_FIELDS, in that order), the match mode (MODE_AT),
    # then the sort key columns (KEY_COLUMNS) and, on a first relevance page, the window.
    rows: list[Any]  # asyncpg Records
    mode: MatchMode
    has_more: bool
    # Relevance: where the ranked window of matches ends (start, id), None when it holds every
    # match. A first page finds it; later pages get it back through their cursor.
    window_end: tuple[datetime, uuid.UUID] | None = None


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


def _on_sale(as_of: ColumnElement[datetime]) -> tuple[FromClause, ColumnElement[bool]]:
    """The event's step of `event_sale_prices` at `as_of` (its cheapest tier on sale then, or
    NO_PRICE), and the join condition. Exactly one step is valid until the event ends."""
    steps = SALE_PRICES.alias("on_sale")
    return steps, and_(
        steps.c.event_id == EVENTS.c.id,
        steps.c.valid_from <= as_of,
        steps.c.valid_until > as_of,
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
    """Everything that changes the SQL text of a page; values are bound at execution. Each
    shape's statement is built and compiled once (`_statement`, `_compiled`): a search costs
    little more in Python than the same SQL sent by hand."""

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
    window: bool = False  # a later relevance page, ranking the matches up to the window's end

    @property
    def on_price(self) -> bool:
        return self.free or self.min_price or self.max_price or self.sort is SearchSort.price


class SearchRepository:
    """Runs on the driver's connection (the route's): a page is one statement."""

    def __init__(self, connection: DriverConnection) -> None:
        self.connection = connection

    async def search(
        self,
        *,
        text_query: SearchText | None,
        filters: SearchFilters,
        sort: SearchSort,
        mode: MatchMode | None,
        after: Sequence[Any] | None,
        window_end: tuple[datetime, uuid.UUID] | None = None,
        now: datetime,
        as_of: datetime,
        limit: int,
    ) -> SearchPage:
        """One page in one round trip. `mode=None` (a first page with a text query) lets the
        database choose between full text and the trigram fallback; later pages pass the mode
        their cursor carries. `after` is the sort key of the previous page's last row, and
        `window_end` (relevance) the end of the window of matches the first page ranked."""
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
            window=after is not None and window_end is not None,
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
        if shape.window and window_end is not None:
            values["window_starts_at"], values["window_id"] = window_end

        compiled = _compiled(shape, self.connection.dialect)
        rows = await self.connection.fetch(compiled.sql, compiled.arguments(values))
        chosen = modes[0]
        if len(modes) > 1:
            # By position, the cheapest read of a row.
            if any(row[MODE_AT] == MatchMode.fuzzy.value for row in rows):
                chosen = MatchMode.fuzzy
            rows = [row for row in rows if row[MODE_AT] == chosen.value]
        if sort is SearchSort.relevance and after is None:
            window_end = None
            if rows and rows[0]["window_size"] >= _rank_window(chosen):
                window_end = (rows[0]["window_starts_at"], rows[0]["window_id"])
        return SearchPage(
            rows=rows[:limit], mode=chosen, has_more=len(rows) > limit, window_end=window_end
        )


@dataclass(frozen=True)
class _Compiled:
    """A shape's statement as the driver receives it: the SQL text with `$n` placeholders and
    how to fill them. Executing this (`DriverConnection.fetch`) rather than the statement object
    spares every search SQLAlchemy's per-execution work on a statement this big: hashing its
    cache key for the compiled-statement cache, collecting the bound values from the whole
    tree, and converting result columns one by one (together ~10% of a search's CPU)."""

    sql: str
    names: tuple[str, ...]  # the value of `$n` is the one named names[n - 1]
    constants: dict[str, Any]  # values fixed in the statement itself (literals of the SQL)
    processors: dict[str, Callable[[Any], Any]]  # the dialect's conversions of bound values

    def arguments(self, values: dict[str, Any]) -> tuple[Any, ...]:
        arguments = []
        for name in self.names:
            value = values[name] if name in values else self.constants[name]
            processor = self.processors.get(name)
            arguments.append(value if processor is None else processor(value))
        return tuple(arguments)


@lru_cache(maxsize=1024)
def _compiled(shape: _Shape, dialect: Dialect) -> _Compiled:
    compiled = _statement(shape).compile(dialect=dialect)
    if compiled.positiontup is None:  # pragma: no cover - asyncpg's style is positional
        raise RuntimeError(f"{dialect.name} does not bind by position")
    # Every bound value a search passes is required (the request's, by name); the others are
    # the statement's own literals.
    required = {name for bind, name in compiled.bind_names.items() if bind.required}
    return _Compiled(
        sql=compiled.string,
        names=tuple(compiled.positiontup),
        constants={
            name: value
            for name, value in compiled.construct_params(_check=False).items()
            if name not in required
        },
        processors=_processors(compiled),
    )


def _processors(compiled: SQLCompiler) -> dict[str, Callable[[Any], Any]]:
    processors: dict[str, Callable[[Any], Any]] = {}
    for name, processor in compiled._bind_processors.items():
        if processor is None:
            continue
        if not callable(processor):  # pragma: no cover - tuple values (IN) are not bound here
            raise RuntimeError(f"{name}: a processor per element is not supported")
        processors[name] = processor
    return processors


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
    joined = {
        "category": CATEGORIES.c.slug.label("category"),
        "min_price": totals.c.min_price,
        "available": totals.c.available,
    }
    # The item's columns first, in ITEM_FIELDS order, then the match mode at MODE_AT, then
    # the sort key (and a first relevance page's window): see SearchPage.
    items = [joined[name] if name in joined else page.c[name] for name in ITEM_FIELDS]
    rest = [c for c in page.c if c.name not in (*ITEM_FIELDS, "mode", "category_id")]
    return (
        select(*items, page.c.mode, *rest)
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
    # By price, the filters are checked on the copies in event_sale_prices, inside the index
    # that gives the order; otherwise on `events`, whose indexes give the date order, and the
    # price filters, if any, are a lookup per event (_priced).
    by_price = shape.sort is SearchSort.price
    on_sale = _on_sale(_AS_OF) if by_price else None
    conditions = _filters(shape, on_sale[0] if on_sale is not None else EVENTS)
    if on_sale is not None:
        conditions.extend(_price_filters(shape, on_sale[0].c.price))
    elif shape.on_price:
        conditions.append(_priced(shape))
    page_limit = bindparam(limit, type_=Integer)
    if mode is MatchMode.everything or shape.sort is SearchSort.price:
        match = _match(shape, mode, query)
        return _sorted_page(
            shape, mode, query, [*conditions, *match], on_sale, page_limit=page_limit
        )
    assert query is not None
    if shape.sort is SearchSort.date:
        return _date_page(shape, mode, query, conditions, on_sale, page_limit=page_limit)
    return _ranked_page(shape, mode, query, conditions, on_sale, page_limit=page_limit)


def _filters(shape: _Shape, source: FromClause) -> list[ColumnElement[bool]]:
    """Published, not ended, and every filter but the price ones, on the columns of `source`
    (`events`, or its copies in event_sale_prices; tags are only on `events`)."""
    conditions: list[ColumnElement[bool]] = [
        # Literal, not a parameter: every plan knows which rows qualify (partial plans and
        # statistics), whatever the plan cache does with the parameters.
        source.c.status == literal_column(f"'{EventStatus.published.value}'"),
        source.c.ends_at > _NOW,
    ]
    if shape.city:
        city = bindparam("city", type_=Text)
        conditions.append(source.c.city_key == _value(func.tiketi_city_key(city)))
    if shape.category:
        slug = bindparam("category", type_=Text)
        conditions.append(
            source.c.category_id
            == select(CATEGORIES.c.id).where(CATEGORIES.c.slug == slug).scalar_subquery()
        )
    if shape.tags:
        tags = EVENTS.c.tags.contains(bindparam("tags", type_=EVENTS.c.tags.type))
        if shape.modes != (MatchMode.everything,) and shape.sort is not SearchSort.price:
            # With text by date or relevance, the walk or the text's index finds the
            # candidates; the tags are checked on them. Fenced (coalesce: the same rows, tags
            # is never null): a generic plan estimates `tags @> $n` at 0.5% whatever the tags
            # are, and drove from ix_events_tags (q=jazz&tags=outdoor 24 -> 59 ms; _priced).
            tags = func.coalesce(tags, false())
        conditions.append(tags)
    if shape.starts_from:
        conditions.append(source.c.starts_at >= bindparam("starts_from", type_=_NOW.type))
    if shape.starts_before:
        conditions.append(source.c.starts_at < bindparam("starts_before", type_=_NOW.type))
    return conditions


def _priced(shape: _Shape) -> ColumnElement[bool]:
    """The price filters of a page sorted by date or relevance: the event's step of
    event_sale_prices at `as_of` (one primary-key probe per candidate) is in the range.

    A scalar subquery, not a join, so that no plan starts from the price index. Statements
    are prepared by name (SQLAlchemy's asyncpg dialect), and after five runs on a connection
    PostgreSQL may switch to a generic plan, which knows no parameter value: it estimates
    `price >= $a AND price <= $b` at 0.5% of the rows, whatever the range, and drove the walk
    and the near matches from ix_event_sale_prices_price_starts_at_event_id, reading every
    event in the range (500..2000 KES: 37,000) — 0.3-1.7 s per search instead of 12-56 ms.
    The planner estimates this condition at 50% with or without the values, so custom and
    generic plans agree: the walk in start order (or the text's index) drives, as without
    price filters. Measured in docs/search.md ("Generic plans")."""
    steps = SALE_PRICES.alias("on_sale")
    return (
        select(true())
        .where(
            steps.c.event_id == EVENTS.c.id,
            steps.c.valid_from <= _AS_OF,
            steps.c.valid_until > _AS_OF,
            *_price_filters(shape, steps.c.price),
        )
        .limit(1)  # one step is valid at a time; never an error if that were ever broken
        .scalar_subquery()
    )


def _price_filters(shape: _Shape, price: ColumnElement[int]) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if shape.free:
        conditions.append(price == literal_column("0"))
    if shape.min_price:
        conditions.append(price >= bindparam("min_price", type_=Integer))
        if not shape.max_price:
            conditions.append(price < literal_column(str(NO_PRICE)))
    if shape.max_price:
        conditions.append(price <= bindparam("max_price", type_=Integer))
    return conditions


def _match(shape: _Shape, mode: MatchMode, query: CTE | None) -> list[ColumnElement[bool]]:
    """The text condition of a match mode, on `events` and the search_query CTE."""
    if mode is MatchMode.everything:
        return []
    assert query is not None
    fulltext = EVENTS.c.search_vector.bool_op("@@")(query.c.tsq)
    if mode is MatchMode.fulltext:
        return [fulltext]
    # Every wanted word has a look-alike (strict word similarity >= 0.5, pg_trgm's default
    # threshold) in title, venue or city; each is a GIN trigram index scan. `text %>> word` is
    # `word <<% text` written the way the index is, so the planner sees the same clause in the
    # index condition and the filter, and checks it once.
    lookalikes = [
        EVENTS.c.search_text.bool_op("%>>")(query.c.fuzzy_words[n])
        for n in range(1, shape.fuzzy_words + 1)
    ]
    if shape.excluded:
        lookalikes.append(~EVENTS.c.search_vector.bool_op("@@")(query.c.excluded))
    return [or_(fulltext, and_(*lookalikes))]


_OnSale = tuple[FromClause, ColumnElement[bool]]


def _from(columns: Sequence[Any], query: CTE | None, on_sale: _OnSale | None) -> Select[Any]:
    stmt = select(*columns).select_from(EVENTS)
    if query is not None:
        stmt = stmt.join(query, true())
    if on_sale is not None:
        stmt = stmt.join(*on_sale)
    return stmt


def _sorted_page(
    shape: _Shape,
    mode: MatchMode,
    query: CTE | None,
    conditions: list[ColumnElement[bool]],
    on_sale: _OnSale | None,
    *,
    page_limit: ColumnElement[int],
) -> Select[Any]:
    """One SELECT, sorted by the key and limited: no text (an index on the sort key is walked
    and stops at the LIMIT), or a text query sorted by price."""
    key = _key(shape.sort, mode, query, on_sale[0] if on_sale else None)
    if shape.after:
        conditions = [*conditions, _after(shape.sort, key)]
    columns = [*_PAGE_COLUMNS, _mode(mode), *key]
    return (
        _from(columns, query if mode is not MatchMode.everything else None, on_sale)
        .where(and_(*conditions))
        .order_by(*_order(shape.sort, key))
        .limit(page_limit)
    )


def _after(sort: SearchSort, key: Sequence[ColumnElement[Any]]) -> ColumnElement[bool]:
    after = [bindparam(f"after_{i}", type_=part.type) for i, part in enumerate(key)]
    if sort is SearchSort.relevance:
        return tuple_(*key) < tuple_(*after)
    return tuple_(*key) > tuple_(*after)


def _mode(mode: MatchMode) -> ColumnElement[str]:
    return literal_column(f"'{mode.value}'", Text).label("mode")


# How many events, in start order, a relevance search reads before it turns to the text
# indexes; a date page reads WALK_PER_ROW per event it shows.
WALK_ROWS = 200
# The fallback's walk tests every look-alike word on each event (a trigram similarity each).
FUZZY_WALK_ROWS = 150
WALK_PER_ROW = 4
# Relevance ranks the RANK_WINDOW soonest matches (with the filters): all of them when fewer
# match. Ranking costs a heap visit and a ts_rank_cd per event ranked, so ranking every match of
# a common word ("nairobi": 40% of the catalogue) cost hundreds of milliseconds.
RANK_WINDOW = 100
# The fallback's window: look-alikes are scored with a trigram similarity each, and a word
# like a city's name resembles a third of the catalogue.
FUZZY_RANK_WINDOW = 50
# The near matches are looked for in a range of starts this many times longer than needed at the
# density the walk saw: enough to absorb the walk's sampling error, few extra heap visits.
STRETCH = 2.5
# Fewer matches than this in the walk say too little about the density (and that there are
# few matches at all): step 3 directly.
NEAR_FROM = 6
_TEXT_COLUMNS = (EVENTS.c.search_vector, EVENTS.c.search_text)


def _date_ordered_matches(
    name: str,
    query: CTE,
    conditions: list[ColumnElement[bool]],
    match: list[ColumnElement[bool]],
    on_sale: _OnSale | None,
    *,
    wanted: ColumnElement[int] | None,
    walk_rows: ColumnElement[int],
) -> CompoundSelect[Any]:
    """The first `wanted` matching events in (starts_at, id) order (every match when `wanted`
    is None), found whichever way is cheap for this query, decided in the statement:

    1. the walk: the `walk_rows` first events in start order (an index on starts_at, with the
       filters), the text tested on each. Enough when the words are common: it found `wanted`
       matches, or it read every event the filters allow;
    2. the near matches: the text index (GIN) ANDed with a range of starts_at long enough to
       hold `wanted` matches at the density the walk saw (4x over), then sorted by start;
    3. every match (GIN), sorted by start: the walk saw fewer than NEAR_FROM (so they are
       few), or the range was not enough.

    All give the same events; only the cost differs. The planner cannot choose between them
    itself: the tsquery is computed in the statement, so it cannot know how many events match.
    Heap visits, the cost that grows, stay near `wanted` (1, 2) or the number of matches,
    which the walk has shown to be small (3)."""
    columns = [*_PAGE_COLUMNS, *_TEXT_COLUMNS]
    walk = (
        _from(columns, None, on_sale)
        .where(and_(*conditions))
        .order_by(EVENTS.c.starts_at, EVENTS.c.id)
        .limit(walk_rows)
        .cte(f"{name}_walk")
    )
    adapt = ClauseAdapter(walk).traverse
    tested = (
        select(walk)
        .join(query, true())
        .where(and_(*[adapt(m) for m in match]))
        .order_by(walk.c.starts_at, walk.c.id)
    )
    if wanted is not None:
        tested = tested.limit(wanted)
    found = tested.cte(f"{name}_found")
    walked = select(func.count()).select_from(walk).scalar_subquery()
    complete: ColumnElement[bool] = walked < walk_rows
    indexed = _from(columns, query, on_sale).where(and_(*conditions, *match))
    if wanted is None:
        return union_all(select(found).where(complete), indexed.where(~complete))

    found_count = select(func.count()).select_from(found).scalar_subquery()
    complete = or_(complete, found_count >= wanted)
    # Where `wanted` matches should lie: the walk's span of starts, stretched by how many
    # more matches are wanted than it found (none found: no range, step 3).
    first, last = func.min(walk.c.starts_at), func.max(walk.c.starts_at)
    stretch = _float8(STRETCH) * wanted / func.nullif(found_count, 0)
    span = (
        select(
            func.to_timestamp(
                func.date_part("epoch", first, type_=Float)
                + func.date_part("epoch", last - first, type_=Float) * stretch,
                type_=DateTime(timezone=True),
            )
        )
        .select_from(walk)
        .scalar_subquery()
    )
    by_start = [_fenced(EVENTS.c.starts_at), EVENTS.c.id]
    near = (indexed.where(EVENTS.c.starts_at < span).order_by(*by_start).limit(wanted)).cte(
        f"{name}_near"
    )
    near_enough = select(func.count()).select_from(near).scalar_subquery() >= wanted
    # CASE, not AND: each step is looked at only when the previous one was not enough (and
    # the near matches not at all when the walk found too few matches to extrapolate from).
    return union_all(
        select(found).where(complete),
        select(near).where(
            case((complete, false()), (found_count < NEAR_FROM, false()), else_=near_enough)
        ),
        indexed.order_by(*by_start)
        .limit(wanted)
        .where(case((complete, false()), (found_count < NEAR_FROM, true()), else_=~near_enough)),
    )


def _date_page(
    shape: _Shape,
    mode: MatchMode,
    query: CTE,
    conditions: list[ColumnElement[bool]],
    on_sale: _OnSale | None,
    *,
    page_limit: ColumnElement[int],
) -> Select[Any]:
    """A text query by date: the next matches after the cursor, in start order."""
    if shape.after:
        key = [EVENTS.c.starts_at, EVENTS.c.id]
        # The row comparison, and the bound on starts_at alone that an index scan can use.
        conditions = [
            *conditions,
            _after(SearchSort.date, key),
            EVENTS.c.starts_at >= bindparam("after_0", type_=_NOW.type),
        ]
    page = _date_ordered_matches(
        f"{mode.value}_by_date",
        query,
        conditions,
        _match(shape, mode, query),
        on_sale,
        wanted=page_limit,
        walk_rows=literal_column(str(WALK_PER_ROW), Integer) * page_limit,
    ).subquery(f"{mode.value}_by_date")
    return select(
        *[page.c[c.name] for c in _PAGE_COLUMNS],
        _mode(mode),
        page.c.starts_at.label("key_starts_at"),
        page.c.id.label("key_id"),
    )


def _ranked_page(
    shape: _Shape,
    mode: MatchMode,
    query: CTE,
    conditions: list[ColumnElement[bool]],
    on_sale: _OnSale | None,
    *,
    page_limit: ColumnElement[int],
) -> Select[Any]:
    """A text query by relevance: the RANK_WINDOW soonest matches, ranked.

    A first page finds the window and reports where it ends (`window_size`, and the start and
    id of its last event); later pages rank the matches up to that end, so events added
    meanwhile slot in before or after the cursor, and none is shown twice or skipped."""
    if shape.window:
        end = [
            bindparam("window_starts_at", type_=_NOW.type),
            bindparam("window_id", type_=EVENTS.c.id.type),
        ]
        # The row comparison, and the bound on starts_at alone that an index scan can use.
        conditions = [
            *conditions,
            tuple_(EVENTS.c.starts_at, EVENTS.c.id) <= tuple_(*end),
            EVENTS.c.starts_at <= end[0],
        ]
    wanted = None if shape.after else literal_column(str(_rank_window(mode)), Integer)
    name = f"{mode.value}_candidates"
    candidates = _date_ordered_matches(
        name,
        query,
        conditions,
        _match(shape, mode, query),
        on_sale,
        wanted=wanted,
        walk_rows=literal_column(
            str(FUZZY_WALK_ROWS if mode is MatchMode.fuzzy else WALK_ROWS), Integer
        ),
    ).cte(name)
    adapt = ClauseAdapter(candidates).traverse
    key = [adapt(_relevance(mode, query)).label("key_rank"), candidates.c.id.label("key_id")]
    columns: list[Any] = [*[candidates.c[c.name] for c in _PAGE_COLUMNS], _mode(mode), *key]
    if not shape.after:
        last = (
            select(candidates)
            .order_by(candidates.c.starts_at.desc(), candidates.c.id.desc())
            .limit(1)
            .subquery()
        )
        columns += [
            select(func.count()).select_from(candidates).scalar_subquery().label("window_size"),
            select(last.c.starts_at).scalar_subquery().label("window_starts_at"),
            select(last.c.id).scalar_subquery().label("window_id"),
        ]
    stmt = select(*columns).select_from(candidates).join(query, true())
    if shape.after:
        stmt = stmt.where(_after(SearchSort.relevance, key))
    return stmt.order_by(*_order(SearchSort.relevance, key)).limit(page_limit)


def _rank_window(mode: MatchMode) -> int:
    return FUZZY_RANK_WINDOW if mode is MatchMode.fuzzy else RANK_WINDOW


def _fenced(starts_at: ColumnElement[datetime]) -> ColumnElement[datetime]:
    """A fence: ordering by an expression, not the column, keeps the planner from walking
    ix_events_status_starts_at and testing the text match row by row (the walk above does
    that, bounded). Driven by the GIN index instead, the cost is bounded by the number of
    matches."""
    return type_coerce(starts_at + literal_column("interval '0'"), starts_at.type)


def _key(
    sort: SearchSort, mode: MatchMode, query: CTE | None, on_sale: FromClause | None
) -> list[ColumnElement[Any]]:
    """The sort key, labelled as the columns the outer query and the cursor use."""
    if sort is SearchSort.date:  # without text (with text: _date_page)
        return [EVENTS.c.starts_at.label("key_starts_at"), EVENTS.c.id.label("key_id")]
    if sort is SearchSort.price:
        # The columns of ix_event_sale_prices_price_starts_at_event_id, in its order: without
        # a text query the page is a walk of that index that stops at the LIMIT.
        assert on_sale is not None
        return [
            on_sale.c.price.label("key_price"),
            on_sale.c.starts_at.label("key_starts_at"),
            on_sale.c.event_id.label("key_id"),
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
