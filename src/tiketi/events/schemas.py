from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    HttpUrl,
    StringConstraints,
    model_validator,
)

from tiketi.core.schemas import Input, IsoDatetime

MAX_PRICE = 1_000_000
MAX_QUANTITY = 1_000_000


def _valid_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("timezone must be an IANA name such as Africa/Nairobi") from None
    return value


def _clean_tags(tags: list[str]) -> list[str]:
    seen: list[str] = []
    for tag in tags:
        cleaned = " ".join(tag.lower().split())
        if cleaned and cleaned not in seen:
            seen.append(cleaned)
    return seen


def _web_url(url: HttpUrl) -> str:
    return str(url)


Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=10_000)]
Slug = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        to_lower=True,
        min_length=1,
        max_length=50,
        pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$",
    ),
]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
Tags = Annotated[list[Tag], Field(max_length=20), AfterValidator(_clean_tags)]
Venue = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
City = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Address = Annotated[str, StringConstraints(strip_whitespace=True, max_length=300)]
Timezone = Annotated[str, Field(max_length=64), AfterValidator(_valid_timezone)]
ImageUrl = Annotated[HttpUrl, Field(max_length=2048), AfterValidator(_web_url)]
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]
TierName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
TierDescription = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)]
Price = Annotated[int, Field(ge=0, le=MAX_PRICE, description="Whole KES; 0 is a free ticket")]
Quantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY)]
MaxPerOrder = Annotated[int, Field(ge=1, le=100)]


class EventCreate(Input):
    title: Title
    description: Description = ""
    category: Slug = Field(description="Category slug, e.g. `music`")
    tags: Tags = Field(default_factory=list)
    venue: Venue
    city: City
    address: Address | None = None
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    starts_at: IsoDatetime
    ends_at: IsoDatetime
    timezone: Timezone = "Africa/Nairobi"
    image_url: ImageUrl | None = None

    @model_validator(mode="after")
    def _ends_after_start(self) -> EventCreate:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class EventUpdate(Input):
    title: Title | None = None
    description: Description | None = None
    category: Slug | None = None
    tags: Tags | None = None
    venue: Venue | None = None
    city: City | None = None
    address: Address | None = None
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    starts_at: IsoDatetime | None = None
    ends_at: IsoDatetime | None = None
    timezone: Timezone | None = None
    image_url: ImageUrl | None = None

    @model_validator(mode="after")
    def _ends_after_start(self) -> EventUpdate:
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class TicketTypeCreate(Input):
    name: TierName
    description: TierDescription | None = None
    price: Price
    quantity: Quantity
    sales_start: IsoDatetime | None = None
    sales_end: IsoDatetime | None = None
    max_per_order: MaxPerOrder = 10
    sort_order: int | None = Field(
        default=None, ge=0, le=1000, description="Display order; defaults to after the others"
    )

    @model_validator(mode="after")
    def _window(self) -> TicketTypeCreate:
        if self.sales_start and self.sales_end and self.sales_end <= self.sales_start:
            raise ValueError("sales_end must be after sales_start")
        return self


class TicketTypeUpdate(Input):
    name: TierName | None = None
    description: TierDescription | None = None
    price: Price | None = None
    quantity: Quantity | None = None
    sales_start: IsoDatetime | None = None
    sales_end: IsoDatetime | None = None
    max_per_order: MaxPerOrder | None = None
    sort_order: int | None = Field(default=None, ge=0, le=1000)


class CategoryCreate(Input):
    slug: Slug
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class CategoryRead(BaseModel):
    id: uuid.UUID
    slug: str
    name: str


class TicketTypeRead(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    price: int
    quantity: int
    available: int
    sales_start: datetime | None
    sales_end: datetime | None
    max_per_order: int
    on_sale: bool


class EventRead(BaseModel):
    id: uuid.UUID
    organizer_id: uuid.UUID
    title: str
    description: str
    category: str
    tags: list[str]
    venue: str
    city: str
    address: str | None
    latitude: float | None
    longitude: float | None
    starts_at: datetime
    ends_at: datetime
    timezone: str
    image_url: str | None
    status: str
    ticket_types: list[TicketTypeRead]
    published_at: datetime | None
    created_at: datetime
    updated_at: datetime


class EventSummary(BaseModel):
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
    min_price: int | None = Field(description="Cheapest ticket (KES); null without tiers")
    available: int = Field(description="Tickets still available across all tiers")


class Availability(BaseModel):
    ticket_type_id: uuid.UUID
    name: str
    price: int
    quantity: int
    available: int
    on_sale: bool


class TierSales(BaseModel):
    ticket_type_id: uuid.UUID
    name: str
    price: int
    quantity: int
    sold: int
    held: int
    available: int
    revenue: int = Field(description="KES from paid orders (refunds due are not counted)")
    checked_in: int


class SalesTotals(BaseModel):
    quantity: int
    sold: int
    held: int
    available: int
    revenue: int
    checked_in: int
    paid_orders: int
    refund_pending_orders: int


class SalesReport(BaseModel):
    event_id: uuid.UUID
    currency: Literal["KES"] = "KES"
    ticket_types: list[TierSales]
    totals: SalesTotals


class Attendee(BaseModel):
    ticket_id: uuid.UUID
    code_suffix: str = Field(description="The last characters of the ticket code")
    ticket_type: str
    holder_name: str
    holder_email: str
    status: str
    checked_in_at: datetime | None
