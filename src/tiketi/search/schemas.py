"""The `GET /search` query: every parameter validated here, so bad input is a 422, never SQL."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime, time
from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    model_validator,
)
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from tiketi.core.pagination import DEFAULT_LIMIT, MAX_LIMIT
from tiketi.core.schemas import refuse_numbers
from tiketi.events.schemas import MAX_PRICE

EAST_AFRICA = ZoneInfo("Africa/Nairobi")
MAX_QUERY_LENGTH = 200
MAX_TAGS = 10
MAX_TAG_LENGTH = 40

# C0/C1 control characters (NUL above all, which PostgreSQL text cannot hold) become spaces.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class SearchSort(StrEnum):
    relevance = "relevance"
    date = "date"
    price = "price"


def _clean_text(value: object) -> object:
    """Trim and collapse whitespace; control characters count as whitespace; blank is absent."""
    if isinstance(value, str):
        value = " ".join(_CONTROL.sub(" ", value).split())
        return value or None
    return value


def _empty_is_absent(value: object) -> object:
    return None if value == "" else value


def _split_tags(value: object) -> object:
    """`tags=a,b` (or repeated `tags=`): lower-case, trimmed, de-duplicated, like stored tags."""
    if value is None:
        return None
    parts = value if isinstance(value, list) else [value]
    tags: list[str] = []
    for part in parts:
        if not isinstance(part, str):
            return value  # let pydantic report the type error
        for raw in part.split(","):
            tag = " ".join(_CONTROL.sub(" ", raw).lower().split())
            if tag and tag not in tags:
                tags.append(tag)
    return tags


def _check_tags(tags: list[str] | None) -> list[str] | None:
    if tags is None:
        return None
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    if any(len(tag) > MAX_TAG_LENGTH for tag in tags):
        raise ValueError(f"a tag has at most {MAX_TAG_LENGTH} characters")
    return tags or None


SearchText = Annotated[str | None, BeforeValidator(_clean_text)]
DateOrInstant = Annotated[
    Annotated[AwareDatetime | date | None, Field(union_mode="left_to_right")],
    BeforeValidator(refuse_numbers),  # "0.5" would otherwise be a Unix time
    Field(
        description=(
            "A date (`2026-12-24`, a whole day in East Africa Time) or a date-time with its "
            "offset (`2026-12-24T18:00:00+03:00`); a date-time without offset is refused."
        ),
    ),
]
PriceBound = Annotated[int | None, Field(ge=0, le=MAX_PRICE)]


class SearchParams(BaseModel):
    """Query parameters of `GET /search`; unknown parameters are refused (422)."""

    model_config = ConfigDict(extra="forbid")

    q: SearchText = Field(
        default=None,
        max_length=MAX_QUERY_LENGTH,
        description=(
            "Full-text query over title, tags, category, venue, city and description. "
            'Web-search syntax: `"exact phrase"`, `-exclude`, `a or b`. Case, accents and small '
            "typos are tolerated."
        ),
    )
    city: SearchText = Field(
        default=None, max_length=100, description="City, ignoring case and accents"
    )
    category: Annotated[str | None, BeforeValidator(_empty_is_absent)] = Field(
        default=None,
        max_length=50,
        # An empty value (`?category=`, what a form sends for "any") means no filter; anything
        # else must be a slug as it is, which is exactly what the document says.
        pattern=r"^$|^[a-z0-9]+(-[a-z0-9]+)*$",
        description="Category slug, e.g. `music`; empty means any category",
    )
    tags: Annotated[list[str] | None, BeforeValidator(_split_tags), AfterValidator(_check_tags)] = (
        Field(
            default=None,
            description=f"Comma-separated tags; events must carry all of them (at most {MAX_TAGS})",
        )
    )
    date_from: DateOrInstant = None
    date_to: DateOrInstant = None
    min_price: PriceBound = Field(
        default=None, description="KES; compared with the cheapest ticket on sale"
    )
    max_price: PriceBound = Field(
        default=None, description="KES; compared with the cheapest ticket on sale"
    )
    free: bool = Field(default=False, description="Only events with a free ticket on sale")
    sort: SearchSort | None = Field(
        default=None,
        description="`relevance` (the default with `q`), `date` (the default without), `price`",
    )
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Page size")
    cursor: str | None = Field(
        default=None,
        max_length=1024,
        description="Opaque cursor: `next_cursor` of the previous page (same parameters)",
    )

    @model_validator(mode="after")
    def _ranges(self) -> SearchParams:
        if (
            self.min_price is not None
            and self.max_price is not None
            and self.min_price > self.max_price
        ):
            raise ValueError("min_price must not exceed max_price")
        if self.date_from is not None and self.date_to is not None:
            start, end = _as_datetime(self.date_from), _as_datetime(self.date_to)
            if start > end:
                raise ValueError("date_from must not be after date_to")
        return self


def day_start(day: date) -> datetime:
    """A bare date means that day in East Africa Time, where the events are."""
    return datetime.combine(day, time.min, tzinfo=EAST_AFRICA)


def _as_datetime(value: datetime | date) -> datetime:
    return value if isinstance(value, datetime) else day_start(value)


class SearchItem(TypedDict):
    """One item of a page: `EventSummary`'s fields, types and order (the route documents
    `Page[EventSummary]`; tests/search/test_encoding.py keeps the two equal, field for field
    and byte for byte). A dict made from the row, encoded without a model: building an
    `EventSummary` per row and reading the row by column name cost more than the encoding."""

    id: uuid.UUID
    title: str
    category: str
    tags: list[str]
    venue: str
    city: str
    starts_at: datetime
    ends_at: datetime
    image_url: str | None
    status: str
    min_price: int | None
    available: int


# The columns a page's rows start with, in this order (SearchRepository selects them so).
ITEM_FIELDS: tuple[str, ...] = tuple(SearchItem.__annotations__)


class _SearchPage(TypedDict):
    items: list[SearchItem]
    next_cursor: str | None


_SEARCH_PAGE = TypeAdapter(_SearchPage)


def encode_page(items: list[SearchItem], next_cursor: str | None) -> bytes:
    """The JSON of `Page[EventSummary]` (same keys, order and formats), from the items as dicts."""
    return _SEARCH_PAGE.dump_json({"items": items, "next_cursor": next_cursor})
