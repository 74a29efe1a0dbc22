from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from tiketi.core.schemas import Input, Uuid
from tiketi.tickets.schemas import TicketRead

MAX_LINES = 10


class OrderLine(Input):
    ticket_type_id: Uuid
    quantity: Annotated[int, Field(ge=1, le=100)]


class OrderCreate(Input):
    event_id: Uuid
    items: Annotated[list[OrderLine], Field(min_length=1, max_length=MAX_LINES)]

    @model_validator(mode="after")
    def _distinct_tiers(self) -> OrderCreate:
        ids = [line.ticket_type_id for line in self.items]
        if len(set(ids)) != len(ids):
            raise ValueError("each ticket type may appear once; add up the quantities instead")
        return self


class OrderItemRead(BaseModel):
    ticket_type_id: uuid.UUID
    name: str
    quantity: int
    unit_price: int


class OrderRead(BaseModel):
    id: uuid.UUID
    event_id: uuid.UUID
    status: str
    items: list[OrderItemRead]
    total: int
    currency: Literal["KES"] = "KES"
    expires_at: datetime = Field(description="The hold lasts until then (pending orders)")
    created_at: datetime
    paid_at: datetime | None
    tickets: list[TicketRead]
