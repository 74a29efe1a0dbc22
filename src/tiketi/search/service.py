"""Search use case: normalise the query, pick the order, and keep paging stable via the cursor."""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, cast

from tiketi.core.database import DriverConnection
from tiketi.core.pagination import InvalidCursor, decode_cursor, encode_cursor
from tiketi.events.service import utcnow
from tiketi.search.models import NO_PRICE
from tiketi.search.repository import (
    KEY_COLUMNS,
    MatchMode,
    SearchFilters,
    SearchRepository,
    SearchText,
)
from tiketi.search.schemas import ITEM_FIELDS, SearchItem, SearchParams, SearchSort, day_start

CURSOR_VERSION = "s2"
# A word of the trigram fallback needs three letters (shorter ones resemble too much) and a
# query at most six such words (each is one more trigram index condition).
MIN_FUZZY_LETTERS = 3
MAX_FUZZY_WORDS = 6

_KEY_TYPES: dict[SearchSort, tuple[type, ...]] = {
    # rank, id, then where the ranked window of matches ends (start, id; both null: nowhere)
    SearchSort.relevance: (float, uuid.UUID, datetime, uuid.UUID),
    SearchSort.date: (datetime, uuid.UUID),
    SearchSort.price: (int, datetime, uuid.UUID),
}
# `-word` (an exclusion in web-search syntax) and a lone `or`.
_EXCLUSION = re.compile(r"(?:^|(?<=\s))-(\S*)")
_OPERATORS = re.compile(r"(?:^|(?<=\s))or(?=\s|$)", re.IGNORECASE)


@lru_cache(maxsize=1024)  # popular queries repeat; the result is immutable
def search_text(query: str) -> SearchText:
    """The query for full text as typed, and what the trigram fallback compares: the wanted
    words without web-search operators (an excluded word must not *attract* look-alikes).
    A quoted phrase asks for exact words, so it gets no fallback; neither does a query with
    fewer than three letters to compare (it would resemble half the catalogue)."""
    if '"' in query:
        return SearchText(query=query)
    wanted = _OPERATORS.sub(" ", _EXCLUSION.sub(" ", query)).split()
    words = tuple(w for w in wanted if sum(ch.isalnum() for ch in w) >= MIN_FUZZY_LETTERS)
    if not words:
        return SearchText(query=query)
    excluded = [m.group(1) for m in _EXCLUSION.finditer(query) if m.group(1)]
    return SearchText(
        query=query,
        fuzzy=" ".join(wanted),
        fuzzy_words=words[:MAX_FUZZY_WORDS],
        excluded=" or ".join(excluded) or None,
    )


def _start_bound(value: datetime | date | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return day_start(value)


def _end_bound(value: datetime | date | None) -> datetime | None:
    """Exclusive upper bound: a date includes its whole day; a date-time is itself included
    (timestamps have microsecond resolution)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value + timedelta(microseconds=1)
    return day_start(value + timedelta(days=1))


class SearchService:
    def __init__(self, connection: DriverConnection) -> None:
        self.repository = SearchRepository(connection)

    async def search(self, params: SearchParams) -> tuple[list[SearchItem], str | None]:
        """Published events that have not ended, matching the query and every filter.

        Sorted by relevance when there is a query (date otherwise, and `relevance` without a
        query also means date); relevance ranks the soonest matches (RANK_WINDOW of them). The
        cursor carries the match mode, the moment of the first page and, for relevance, where
        that window ends, so later pages rank, price and match exactly as the first did: each
        event shows up once across pages while events are added.
        """
        text_query = search_text(params.q) if params.q else None
        sort = params.sort or (SearchSort.relevance if text_query else SearchSort.date)
        if sort is SearchSort.relevance and text_query is None:
            sort = SearchSort.date
        filters = SearchFilters(
            city=params.city,
            category=params.category,
            tags=tuple(params.tags or ()),
            starts_from=_start_bound(params.date_from),
            starts_before=_end_bound(params.date_to),
            min_price=params.min_price,
            max_price=params.max_price,
            free=params.free,
        )
        fingerprint = _fingerprint(text_query, filters, sort)

        now = utcnow()
        as_of, mode, after, window_end = now, None, None, None
        if params.cursor is not None:
            as_of, mode, after, window_end = _read_cursor(
                params.cursor, sort=sort, fingerprint=fingerprint, text_query=text_query
            )
        page = await self.repository.search(
            text_query=text_query,
            filters=filters,
            sort=sort,
            mode=mode,
            after=after,
            window_end=window_end,
            now=now,
            as_of=as_of,
            limit=params.limit,
        )
        next_cursor = None
        if page.has_more:
            last = page.rows[-1]
            key = [last[name] for name in KEY_COLUMNS[sort]]
            if sort is SearchSort.relevance:
                # The window of matches the first page ranked, carried by every later page.
                window_end = window_end if after is not None else page.window_end
                key += list(window_end or (None, None))
            next_cursor = encode_cursor([CURSOR_VERSION, fingerprint, page.mode.value, as_of, *key])
        # The row starts with the item's columns, in order (SearchPage): zip stops after them.
        items = [cast("SearchItem", dict(zip(ITEM_FIELDS, row, strict=False))) for row in page.rows]
        return items, next_cursor


def _fingerprint(text_query: SearchText | None, filters: SearchFilters, sort: SearchSort) -> str:
    """Ties a cursor to the search that issued it: reusing it with other parameters is a 422
    rather than a silently wrong page."""
    material = json.dumps(
        [text_query.query if text_query else None, repr(filters), sort.value],
        separators=(",", ":"),
    )
    return hashlib.blake2b(material.encode(), digest_size=8).hexdigest()


def _read_cursor(
    cursor: str, *, sort: SearchSort, fingerprint: str, text_query: SearchText | None
) -> tuple[datetime, MatchMode, Sequence[Any], tuple[datetime, uuid.UUID] | None]:
    """The cursor's moment, match mode, sort key and (relevance) the end of the ranked window,
    after checking that this search issued it and that every value can be bound as it will be
    (a forged cursor is a 422)."""
    malformed = "The cursor is malformed; use next_cursor from a previous page"
    values = decode_cursor(cursor, types=(str, str, str, datetime, *_KEY_TYPES[sort]))
    window_end: tuple[datetime, uuid.UUID] | None = None
    if sort is SearchSort.relevance:
        *values, window_starts_at, window_id = values
        if (window_starts_at is None) is not (window_id is None):
            raise InvalidCursor(malformed)
        if window_starts_at is not None:
            window_end = (window_starts_at, window_id)
    if any(value is None for value in values):
        raise InvalidCursor(malformed)
    version, issued_for, raw_mode, as_of, *key = values
    if version != CURSOR_VERSION or issued_for != fingerprint:
        raise InvalidCursor("This cursor belongs to another search; start again without it")
    try:
        mode = MatchMode(raw_mode)
    except ValueError:
        raise InvalidCursor(malformed) from None
    possible = (
        {MatchMode.everything}
        if text_query is None
        else {MatchMode.fulltext, MatchMode.fuzzy}
        if text_query.fuzzy is not None
        else {MatchMode.fulltext}
    )
    if mode not in possible or not all(_bindable(part) for part in key):
        raise InvalidCursor(malformed)
    return as_of, mode, key, window_end


def _bindable(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int):
        return 0 <= value <= NO_PRICE  # the price key is an int4
    return True
